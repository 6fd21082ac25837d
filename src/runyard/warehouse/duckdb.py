"""The embedded warehouse: one DuckDB file per account, fed Arrow batches from Python.

Isolation: each file is opened with external access disabled and its configuration locked, so
DuckDB reads and writes nothing but its own database file (no `read_csv`, `COPY`, `ATTACH`,
extension installs), and no SQL can turn that back on. Data arrives as Arrow batches registered
on a cursor: DuckDB scans them in memory, which external access does not restrict.

Threads: one connection per file per process (DuckDB admits one writing process); every call
runs on its own `cursor()` (a connection of its own to the same database); `load()` calls are
serialised. Staging tables live beside the tables, as `_runyard_staging__<run_key>__<table>`, so a
replacing load can rename one into place instead of copying it (DuckDB cannot move a table
between schemas); load records and
high watermarks in `_runyard`.

Processes: DuckDB locks the file for the process that opens it. This one lets it go once no call has used it for
IDLE_RELEASE_SECONDS, and opens it again at the next call, so that several processes on one home (`runyard serve`
and `runyard worker`) take turns at an account's file. Opening a file another process holds raises WarehouseBusy
(a TransientError) naming that process's PID: a task waits it out and tries again (runyard.engine.executors), for
at most RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS.

Every name that comes from a user or a source (tables, columns, keys) reaches SQL only as a
quoted identifier; every value only as a parameter.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from runyard.faults import crash_point
from runyard.warehouse.base import (
    Column,
    ExportQuery,
    LoadRequest,
    LoadResult,
    QueryFailed,
    QueryResult,
    TableInfo,
    TableLoad,
    TableResult,
    WarehouseBusy,
    WarehouseError,
)
from runyard.warehouse.checks import (
    RUN_KEY_SEPARATOR,
    check_name,
    check_request,
    check_run_key,
    export_filter,
    first_line,
)
from runyard.warehouse.watchdog import Watchdog

if TYPE_CHECKING:
    import pyarrow as pa

# How long a process keeps an account's file open after its last call: long enough that the calls of one task or
# page reuse the connection (opening costs ~10-25 ms), short enough that another process waiting for the file
# (its first pause is 0.25 s, runyard.engine.executors) gets it between two tasks of this one.
IDLE_RELEASE_SECONDS = 0.5
CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
    # A bound on DuckDB's buffers: past it, large loads spill to <file>.tmp/ instead of growing the
    # process with the size of the data (the engine's own memory is bounded by its part size).
    "memory_limit": "512MB",
    # A bound on that spill (<file>.tmp/; DuckDB's default is 90% of the free disk): a query or load that needs more
    # fails with DuckDB's message instead of filling the disk the store and staging share (RELIABILITY S10).
    "max_temp_directory_size": "10.0 GiB",  # written as DuckDB prints it back
}
STAGING_SCHEMA = "main"
STAGING_PREFIX = "_runyard_staging__"
META_SCHEMA = "_runyard"
TARGET_SCHEMA = "main"
# Staging order, added to every staging table: "the last staged row of a key wins" needs it, and
# `rowid` cannot be used because a source column named rowid would shadow it.
ROW_COLUMN = "_runyard_row"
_ARROW_VIEW = "_runyard_arrow_input"
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_METADATA_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
        run_key VARCHAR PRIMARY KEY,
        operation_id BIGINT NOT NULL,
        loaded_at TIMESTAMP NOT NULL,  -- UTC
        tables JSON NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.state (
        operation_id BIGINT NOT NULL,
        table_name VARCHAR NOT NULL,
        cursor_field VARCHAR,
        high_watermark VARCHAR,
        updated_at TIMESTAMP NOT NULL,  -- UTC
        PRIMARY KEY (operation_id, table_name)
    )""",
)


def quote(identifier: str) -> str:
    """`identifier` as a DuckDB quoted identifier: whatever it contains, it stays one name."""
    return '"' + identifier.replace('"', '""') + '"'


def staging_name(run_key: str, table: str) -> str:
    """The name (unquoted) of a run's staging table for `table`."""
    return f"{STAGING_PREFIX}{run_key}{RUN_KEY_SEPARATOR}{table}"


def _fold(name: str) -> str:
    # DuckDB matches identifiers case-insensitively for ASCII letters only ("É" != "é").
    return name.translate(_ASCII_FOLD)


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_conflict(path: Path, error: BaseException) -> WarehouseBusy | None:
    """The WarehouseBusy that DuckDB's `error` means when another process holds the file `path` ("Could not set
    lock on file ...: Conflicting lock is held in <program> (PID n)"); None for any other error. The message names
    the file by its folder and name only, and the holder by its program's name and PID."""
    text = str(error)
    if not isinstance(error, duckdb.IOException) or (
        "Could not set lock on file" not in text and "Conflicting lock" not in text
    ):
        return None
    holder = _LOCK_HOLDER.search(text)
    return WarehouseBusy(
        f"{path.parent.name}/{path.name}",
        pid=int(holder["pid"]) if holder else None,
        program=Path(holder["program"]).name if holder else None,
    )


@contextmanager
def _errors(context: str) -> Iterator[None]:
    """DuckDB errors become WarehouseError, prefixed with what was being done."""
    try:
        yield
    except duckdb.Error as error:
        raise WarehouseError(f"{context}: {first_line(error)}") from error


def _check_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryFailed(first_line(error), _error_line(error)) from error
    if len(statements) != 1:
        raise QueryFailed(f"a step is one SELECT, and this SQL holds {len(statements)} statements")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name.replace("_", " ")
        raise QueryFailed(f"a step is one SELECT that builds its table, and this SQL is a {kind} statement")


_READ_KINDS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def _check_read(sql: str) -> None:
    """Exactly one statement, a query (SELECT, WITH, VALUES, FROM, DESCRIBE...) or EXPLAIN of one, as DuckDB's
    own parser sees it. The transaction it then runs in cannot write whatever the text says."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryFailed(_message(error), _error_line(error)) from error
    if not statements:
        raise QueryFailed("there is no query to run")
    if len(statements) != 1:
        raise QueryFailed(f"run one query at a time: this text holds {len(statements)} statements")
    if statements[0].type not in _READ_KINDS:
        kind = statements[0].type.name.replace("_", " ")
        article = "an" if kind[:1] in "AEIOU" else "a"
        raise QueryFailed(
            f"only queries that read can run here (SELECT, WITH, EXPLAIN): this is {article} {kind} statement"
        )


def _message(error: BaseException) -> str:
    """The database's whole message (its hints and the line it points at included)."""
    return str(error).strip() or type(error).__name__


_ERROR_LINE = re.compile(r"^LINE (\d+):", re.MULTILINE)


def _error_line(error: BaseException) -> int | None:
    """The line DuckDB's message points at (`LINE 3: ...`), None when it points at none."""
    found = _ERROR_LINE.search(str(error))
    return int(found.group(1)) if found else None


# How DuckDB writes infinite dates (int32 days) and timestamps (int64 ticks) into Arrow.
_INFINITE = {2**31 - 1: "infinity", -(2**31 - 1): "-infinity", 2**63 - 1: "infinity", -(2**63 - 1): "-infinity"}


def _python_values(column: pa.ChunkedArray) -> list[object]:
    """A result column as Python values. Values Python's types cannot hold (TIMESTAMP_NS, infinite or BC dates and
    timestamps) become text: 'infinity', '-infinity', or Arrow's rendering of the value."""
    try:
        converted: list[object] = column.to_pylist()
    except (ValueError, OverflowError):
        pass
    else:
        return converted
    values: list[object] = []
    for chunk in column.chunks:
        for index in range(len(chunk)):
            try:
                values.append(chunk[index].as_py())
            except (ValueError, OverflowError):
                values.append(_as_text(chunk.slice(index, 1)))
    return values


def _as_text(single: pa.Array) -> str:
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = getattr(single[0], "value", None)
    if isinstance(raw, int) and raw in _INFINITE:
        return _INFINITE[raw]
    try:
        text = pc.cast(single, pa.string())[0].as_py()
    except (pa.ArrowException, ValueError, OverflowError):
        text = None
    return str(text) if text is not None else f"<a {single.type} value Python cannot represent>"


def _utc_now() -> datetime:
    # Naive UTC: fetching a TIMESTAMPTZ back into Python would need pytz.
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class _Column:
    name: str
    type: str


class DuckDBWarehouse:
    """One account's warehouse in one DuckDB file; see the module docstring for the rules.

    `release_after`: seconds without a call after which the file is let go (None: held until `close`)."""

    def __init__(self, path: Path, *, release_after: float | None = IDLE_RELEASE_SECONDS) -> None:
        self.path = path
        self._release_after = release_after
        self._cursor_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._closed = False
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0  # cursors in use: the file is let go only when none is
        self._release_timer: threading.Timer | None = None
        self._last_used = time.monotonic()
        with self._cursor():  # opened and prepared now: a held or broken file fails here, not at the first call
            pass

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(str(self.path), config=CONFIG)
        except duckdb.Error as error:
            busy = lock_conflict(self.path, error)
            if busy is not None:
                raise busy from error
            raise WarehouseError(f"cannot open warehouse {self.path}: {first_line(error)}") from error
        try:
            with _errors(f"cannot prepare warehouse {self.path}"):
                for statement in _METADATA_DDL:
                    con.execute(statement)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _cursor(self, *, touch: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the file's connection, opening the file if this process had let it go. `touch=False`: this
        use does not keep the file open longer (the periodic sweep's calls, which would otherwise hold it for ever)."""
        with self._cursor_lock:
            if self._closed:
                raise WarehouseError(f"warehouse {self.path} is closed")
            if self._con is None:
                self._con = self._connect()
                self._last_used = time.monotonic()
            cur = self._con.cursor()
            self._users += 1
        try:
            yield cur
        finally:
            cur.close()
            with self._cursor_lock:
                self._users -= 1
                if touch:
                    self._last_used = time.monotonic()
                self._arm_release()

    def _arm_release(self) -> None:
        """Start the timer that lets the file go `release_after` seconds after its last use (under _cursor_lock)."""
        if self._release_after is None or self._closed or self._con is None or self._release_timer is not None:
            return
        delay = max(0.0, self._last_used + self._release_after - time.monotonic())
        self._release_timer = threading.Timer(delay, self._release_if_idle)
        self._release_timer.daemon = True
        self._release_timer.start()

    @property
    def holds_file(self) -> bool:
        """Whether this process has the file open now (False once let go when idle, or closed)."""
        with self._cursor_lock:
            return self._con is not None

    def _release_if_idle(self) -> None:
        """Let the file go (another process may open it) if it has not been used for `release_after` seconds."""
        with self._cursor_lock:
            self._release_timer = None
            if self._con is None or self._closed or self._users > 0:
                return  # closed, or in use: the use's end arms the timer again
            assert self._release_after is not None
            if time.monotonic() - self._last_used < self._release_after:
                self._arm_release()  # used since the timer started: wait out the rest
                return
            self._con.close()
            self._con = None

    def close(self) -> None:
        """Close the file's connection (and every cursor); later calls raise WarehouseError."""
        with self._cursor_lock:
            if self._closed:
                return
            self._closed = True
            if self._release_timer is not None:
                self._release_timer.cancel()
                self._release_timer = None
            if self._con is not None:
                self._con.close()
                self._con = None

    # -- staging --------------------------------------------------------------------------

    def stage(self, run_key: str, table: str, reader: pa.RecordBatchReader) -> int:
        """(Re)create the run's staging table for `table` from Arrow batches; return its row count.

        The batches are scanned by DuckDB in memory (a view registered on this call's cursor);
        a column `_runyard_row` records their order.
        """
        check_run_key(run_key)
        check_name("table", table)
        names = list(reader.schema.names)
        if not names:
            raise WarehouseError(f"run {run_key}: table {table!r} has no columns: nothing to stage")
        if any(_fold(name) == ROW_COLUMN for name in names):
            raise WarehouseError(f"run {run_key}: table {table!r} has a column named {ROW_COLUMN!r}, which is reserved")
        staging = f"{STAGING_SCHEMA}.{quote(staging_name(run_key, table))}"
        with self._cursor() as cur, _errors(f"run {run_key}: cannot stage table {table!r}"):
            cur.register(_ARROW_VIEW, reader)
            # row_number() OVER () is computed by DuckDB's order-preserving streaming window.
            numbered = f"SELECT *, row_number() OVER () AS {quote(ROW_COLUMN)} FROM {_ARROW_VIEW}"  # noqa: S608
            cur.execute(f"CREATE OR REPLACE TABLE {staging} AS {numbered}")
            cur.unregister(_ARROW_VIEW)
            return _count(cur, staging)

    def drop_staging(self, run_key: str) -> None:
        """Drop every staging table of the run (after its load, or once the run has ended without one)."""
        check_run_key(run_key)
        with self._cursor(touch=False) as cur, _errors(f"run {run_key}: cannot drop its staging tables"):
            rows = cur.execute(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name = ? AND starts_with(table_name, ?)",
                [STAGING_SCHEMA, STAGING_PREFIX + run_key + RUN_KEY_SEPARATOR],
            ).fetchall()
            for (name,) in rows:
                cur.execute(f"DROP TABLE IF EXISTS {STAGING_SCHEMA}.{quote(name)}")

    @contextmanager
    def transform(self, run_key: str, inputs: Sequence[str]) -> Iterator[DuckDBTransform]:
        """A cursor on which each name in `inputs` is a temporary view of the run's staging table for it.

        DuckDB resolves temporary objects first (even `main.<name>`), so a step's SQL reads what its upstream
        steps built in this run; the views end with the cursor.
        """
        check_run_key(run_key)
        for name in inputs:
            check_name("table", name)
        with self._cursor() as cur:
            with _errors(f"run {run_key}: cannot read the tables built by this run"):
                built = {
                    str(name)
                    for (name,) in cur.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                        "AND schema_name = ? AND list_contains(?, table_name)",
                        [STAGING_SCHEMA, [staging_name(run_key, name) for name in inputs]],
                    ).fetchall()
                }
                for name in inputs:
                    staged = staging_name(run_key, name)
                    if staged not in built:
                        raise WarehouseError(f"run {run_key}: the table {name!r} was not built by this run")
                    cur.execute(f"CREATE TEMP VIEW {quote(name)} AS SELECT * FROM {STAGING_SCHEMA}.{quote(staged)}")  # noqa: S608
            yield DuckDBTransform(cur, run_key)

    def staged_runs(self) -> set[str]:
        """The run keys that have staging tables (their names are `_runyard_staging__<run_key>__<table>`)."""
        with self._cursor(touch=False) as cur, _errors("cannot list the staging tables"):
            rows = cur.execute(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name = ? AND starts_with(table_name, ?)",
                [STAGING_SCHEMA, STAGING_PREFIX],
            ).fetchall()
        return {name[len(STAGING_PREFIX) :].split(RUN_KEY_SEPARATOR, 1)[0] for (name,) in rows}

    # -- the load -------------------------------------------------------------------------

    def load(self, request: LoadRequest) -> LoadResult:
        """Load every staged table, the high watermarks and a load record in one transaction.

        A run already loaded is not loaded again: the result repeats the recorded one with
        `already_loaded=True`. Any error rolls everything back and raises WarehouseError.
        """
        check_request(request, _fold)
        with self._load_lock, self._cursor() as cur:
            with _errors(f"run {request.run_key}: cannot begin the load"):
                cur.execute("BEGIN TRANSACTION")
            try:
                result = self._load_in_transaction(cur, request)
                if result.already_loaded:
                    cur.execute("ROLLBACK")
                    return result
                crash_point("load.before_commit")
                with _errors(f"run {request.run_key}: cannot commit the load"):
                    cur.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise
        return result

    def _load_in_transaction(self, cur: duckdb.DuckDBPyConnection, request: LoadRequest) -> LoadResult:
        recorded = _recorded_load(cur, request.run_key)
        if recorded is not None:
            return LoadResult(already_loaded=True, tables=recorded)
        results = []
        now = _utc_now()
        for table in request.tables:
            with _errors(f"run {request.run_key}: cannot load table {table.name!r}"):
                results.append(self._load_table(cur, request.run_key, table, now))
                if table.high_watermark is not None:
                    _save_high_watermark(cur, request.operation_id, table, now)
        with _errors(f"run {request.run_key}: cannot record the load"):
            _record_load(cur, request, tuple(results), now)
        return LoadResult(already_loaded=False, tables=tuple(results))

    def _load_table(self, cur: duckdb.DuckDBPyConnection, run_key: str, table: TableLoad, now: datetime) -> TableResult:
        staging_columns = _columns(cur, STAGING_SCHEMA, staging_name(run_key, table.name))
        if staging_columns is None:
            raise WarehouseError(f"run {run_key}: table {table.name!r} was not staged")
        staging = f"{STAGING_SCHEMA}.{quote(staging_name(run_key, table.name))}"
        if table.loaded_at_column is not None:
            _stamp(cur, staging, staging_columns, table.loaded_at_column, now)
            staging_columns = _columns(cur, STAGING_SCHEMA, staging_name(run_key, table.name)) or staging_columns
        target = f"{TARGET_SCHEMA}.{quote(table.name)}"
        staged = _count(cur, staging)
        if table.deleted_column is not None and _fold(table.deleted_column) not in staging_columns:
            raise WarehouseError(
                f"run {run_key}: table {table.name!r}: the deletion flag column {table.deleted_column!r} was not staged"
            )
        if table.mode == "replace" and table.deleted_column is None and _keys_unique(cur, staging, table.primary_key):
            # The staged table becomes the table: a rename, not a copy of every row.
            cur.execute(f"DROP TABLE IF EXISTS {target}")
            if ROW_COLUMN in staging_columns:  # tables built by SQL steps have no staging order
                cur.execute(f"ALTER TABLE {staging} DROP COLUMN {quote(ROW_COLUMN)}")
            cur.execute(f"ALTER TABLE {staging} RENAME TO {quote(table.name)}")
            return TableResult(name=table.name, rows=staged, staged=staged)
        if table.mode == "replace":
            kept = _without_deleted(_select_staged(staging, table.primary_key), table.deleted_column)
            cur.execute(f"CREATE OR REPLACE TABLE {target} AS {kept}")
        else:
            self._merge(cur, run_key, table, staging, _data_columns(staging_columns))
        return TableResult(name=table.name, rows=_count(cur, target), staged=staged)

    def _merge(
        self,
        cur: duckdb.DuckDBPyConnection,
        run_key: str,
        table: TableLoad,
        staging: str,
        staging_columns: Mapping[str, _Column],
    ) -> None:
        missing = [key for key in table.primary_key if _fold(key) not in staging_columns]
        if missing:
            raise WarehouseError(
                f"run {run_key}: table {table.name!r}: primary key column(s) {', '.join(map(repr, missing))} "
                f"are not among the staged columns"
            )
        target = f"{TARGET_SCHEMA}.{quote(table.name)}"
        target_columns = _columns(cur, TARGET_SCHEMA, table.name)
        unique = _keys_unique(cur, staging, table.primary_key)
        kept = _without_deleted(_select_staged(staging, table.primary_key, unique), table.deleted_column)
        if target_columns is None:
            cur.execute(f"CREATE TABLE {target} AS {kept}")
            return
        if table.deleted_column is not None:  # a flag, not a column of the table
            staging_columns = {f: c for f, c in staging_columns.items() if f != _fold(table.deleted_column)}
        target_columns = self._evolve(cur, target, staging, target_columns, staging_columns)
        if table.primary_key:
            # Every staged key, deleted ones included: a deleted key's row goes, and is not inserted again.
            cur.execute(_delete_matching_keys(target, staging, table.primary_key, target_columns))
        cur.execute(f"INSERT INTO {target} BY NAME {kept}")

    def _evolve(
        self,
        cur: duckdb.DuckDBPyConnection,
        target: str,
        staging: str,
        target_columns: Mapping[str, _Column],
        staging_columns: Mapping[str, _Column],
    ) -> dict[str, _Column]:
        """Add the staged columns the target lacks and widen the ones whose staged type is wider.

        Type text comes from DuckDB's own catalog, which quotes struct field names; it is never
        built from user input.
        """
        evolved = dict(target_columns)
        for folded, column in staging_columns.items():
            current = evolved.get(folded)
            if current is None:
                cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote(column.name)} {column.type}")
                evolved[folded] = column
                continue
            wider = self._wider_type(target, staging, current, column)
            if wider is not None:
                cur.execute(f"ALTER TABLE {target} ALTER COLUMN {quote(current.name)} SET DATA TYPE {wider}")
                evolved[folded] = _Column(current.name, wider)
        return evolved

    def _wider_type(self, target: str, staging: str, current: _Column, staged: _Column) -> str | None:
        """The type `current` must widen to so it holds the staged values, None to keep it."""
        if current.type == staged.type or current.type == "VARCHAR":
            return None
        if staged.type == "VARCHAR":
            return "VARCHAR"
        # DuckDB's own supertype of the two columns. Probed on a separate cursor (committed
        # state; only load() changes targets, one at a time) because inside the load's
        # transaction a failing probe (no common type) would abort it.
        left = f"SELECT {quote(current.name)} AS c FROM {target}"  # noqa: S608
        right = f"SELECT {quote(staged.name)} AS c FROM {staging}"  # noqa: S608
        probe = f"DESCRIBE ({left} UNION ALL BY NAME {right})"
        try:
            with self._cursor() as side:
                rows = side.execute(probe).fetchall()
        except duckdb.Error:
            return None  # no common type: the insert casts, or fails with a clear error
        supertype = str(rows[0][1])
        return None if supertype == current.type else supertype

    # -- reads ----------------------------------------------------------------------------

    def has_load(self, run_key: str) -> bool:
        """Whether the run's load committed."""
        with self._cursor() as cur, _errors(f"run {run_key}: cannot read the load record"):
            return _recorded_load(cur, run_key) is not None

    def high_watermark(self, operation_id: int, table: str) -> str | None:
        """The last committed high watermark of (operation, table), None if there is none."""
        with self._cursor() as cur, _errors(f"cannot read the high watermark of table {table!r}"):
            row = cur.execute(
                "SELECT high_watermark FROM _runyard.state WHERE operation_id = ? AND table_name = ?",
                [operation_id, table],
            ).fetchone()
        return None if row is None else row[0]

    def columns(self, table: str) -> dict[str, str] | None:
        """Column name -> DuckDB type of a warehouse table, in order; None if it does not exist."""
        check_name("table", table)
        with self._cursor() as cur, _errors(f"cannot read the columns of table {table!r}"):
            found = _columns(cur, TARGET_SCHEMA, table)
        return None if found is None else {column.name: column.type for column in found.values()}

    def type_name(self, kind: pa.DataType) -> str | None:
        return duckdb_type(kind)

    def count(self, table: str) -> int:
        """Rows in a warehouse table; WarehouseError if it does not exist."""
        check_name("table", table)
        with self._cursor() as cur, _errors(f"cannot count table {table!r}"):
            return _count(cur, f"{TARGET_SCHEMA}.{quote(table)}")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement, return its rows. For tests and tools: this is no read-only gate."""
        with self._cursor() as cur, _errors("query failed"):
            return [tuple(row) for row in cur.execute(sql, list(params)).fetchall()]

    # -- read-only access (SQL Explorer, exports) ------------------------------------------

    def tables(self) -> list[TableInfo]:
        """The account's tables and views with their columns, by name; staging tables and `_runyard` left out."""
        with self._cursor() as cur, _errors("cannot list the tables"):
            kinds = dict(
                cur.execute(
                    "SELECT table_name, 'table' FROM duckdb_tables() WHERE database_name = current_database() "
                    "AND schema_name = ? AND NOT starts_with(table_name, ?) "
                    "UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE database_name = current_database() "
                    "AND schema_name = ? AND NOT internal",
                    [TARGET_SCHEMA, STAGING_PREFIX, TARGET_SCHEMA],
                ).fetchall()
            )
            columns: dict[str, list[Column]] = {name: [] for name in kinds}
            for table, column, data_type in cur.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? ORDER BY table_name, column_index",
                [TARGET_SCHEMA],
            ).fetchall():
                if table in columns:
                    columns[table].append(Column(column, data_type))
        return [TableInfo(name, kinds[name], tuple(columns[name])) for name in sorted(kinds, key=str.lower)]

    def read(
        self,
        sql: str,
        *,
        limit: int,
        timeout_seconds: float,
        on_start: Callable[[Callable[[], None]], None] | None = None,
    ) -> QueryResult:
        """One query in a READ ONLY transaction on its own cursor, at most `limit` rows (see Warehouse.read).

        The column names and types are read while the cursor is open: a relation outlives its cursor only as a
        handle that fails ("Connection has already been closed")."""
        _check_read(sql)
        is_query = duckdb.extract_statements(sql)[0].type == duckdb.StatementType.SELECT
        with self._cursor() as cur:
            try:
                with _Stopper(cur, timeout_seconds) as stopper:
                    if on_start is not None:
                        on_start(stopper.interrupt)
                    cur.execute("BEGIN TRANSACTION READ ONLY")
                    relation = cur.sql(sql)
                    names = tuple(relation.columns)
                    types = tuple(str(kind) for kind in relation.types)
                    table = (relation.limit(limit + 1) if is_query else relation).to_arrow_table()
                stopper.check()
            except duckdb.InterruptException as error:
                raise stopper.failure() from error
            except duckdb.Error as error:
                raise QueryFailed(_message(error), _error_line(error)) from error
            finally:
                with suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
        values = [_python_values(column) for column in table.columns]
        rows = [tuple(row) for row in zip(*values, strict=True)] if values else []
        return QueryResult(
            columns=tuple(Column(name, kind) for name, kind in zip(names, types, strict=True)),
            rows=rows[:limit],
            truncated=len(rows) > limit,
        )

    def count_rows(self, query: ExportQuery) -> int:
        """The rows an export of `query` gives."""
        with self._cursor() as cur:
            try:
                cur.execute("BEGIN TRANSACTION READ ONLY")
                select, params = _export_select(cur, query, ordered=False)
                row = cur.execute(f"SELECT count(*) FROM ({select})", params).fetchone()  # noqa: S608
            except duckdb.Error as error:
                raise QueryFailed(_message(error)) from error
            finally:
                with suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
        return int(row[0]) if row else 0

    @contextmanager
    def export(self, query: ExportQuery) -> Iterator[DuckDBExport]:
        """A READ ONLY transaction on its own cursor, reading the rows of `query` in order."""
        with self._cursor() as cur:
            try:
                cur.execute("BEGIN TRANSACTION READ ONLY")
                select, params = _export_select(cur, query, ordered=True)
                relation = cur.sql(select, params=params)
                columns = tuple(Column(n, str(t)) for n, t in zip(relation.columns, relation.types, strict=True))
            except duckdb.Error as error:
                with suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise QueryFailed(_message(error)) from error
            try:
                yield DuckDBExport(cur, relation, columns)
            finally:
                with suppress(duckdb.Error):
                    cur.execute("ROLLBACK")


class _Stopper(Watchdog):
    """Interrupts a cursor's query after a timeout, or when asked from another thread (runyard.warehouse.watchdog),
    and says which it was."""

    INTERRUPT_RETRY_SECONDS = 0.05

    def __init__(self, cur: duckdb.DuckDBPyConnection, timeout_seconds: float) -> None:
        super().__init__(cur.interrupt, retry_seconds=self.INTERRUPT_RETRY_SECONDS, timeout=timeout_seconds)
        self._timeout_seconds = timeout_seconds

    def __enter__(self) -> _Stopper:
        super().__enter__()
        return self

    def check(self) -> None:
        """Raise if the query was stopped, even when it ended before DuckDB noticed."""
        if self.stopped or self.timed_out:
            raise self.failure()

    def failure(self) -> QueryFailed:
        if self.timed_out and not self.stopped:
            return QueryFailed(
                f"the query ran longer than {self._timeout_seconds:g} s and was stopped", interrupted=True
            )
        return QueryFailed("the query was stopped", interrupted=True)


class DuckDBExport:
    """The rows of one export, read from the snapshot of its READ ONLY transaction (see DuckDBWarehouse.export)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, relation: duckdb.DuckDBPyRelation, columns: tuple[Column, ...]):
        self._cur = cur
        self._relation = relation
        self.columns = columns
        self._stopped = False

    def pages(self, page_rows: int) -> Iterator[pa.Table]:
        """Pages of exactly `page_rows` rows; DuckDB's batches are re-cut (it hands out chunks of its own size)."""
        import pyarrow as pa

        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            reader = self._relation.to_arrow_reader(max(page_rows, 2048))
            for batch in reader:
                if self._stopped:
                    raise QueryFailed("the export was stopped", interrupted=True)
                pending.append(batch)
                held += batch.num_rows
                while held >= page_rows:
                    table = pa.Table.from_batches(pending, schema=reader.schema)
                    yield table.slice(0, page_rows)
                    rest = table.slice(page_rows)
                    pending, held = rest.to_batches(), rest.num_rows
        except duckdb.InterruptException as error:
            raise QueryFailed("the export was stopped", interrupted=True) from error
        except duckdb.Error as error:
            raise QueryFailed(_message(error)) from error
        except OSError as error:  # DuckDB's errors inside pyarrow's reader reach us as pyarrow's OSError
            if self._stopped:
                raise QueryFailed("the export was stopped", interrupted=True) from error
            raise QueryFailed(str(error)) from error
        if held:
            yield pa.Table.from_batches(pending, schema=reader.schema)

    def interrupt(self) -> None:
        self._stopped = True
        self._cur.interrupt()


class DuckDBTransform:
    """One step's session on its own cursor (see DuckDBWarehouse.transform)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, run_key: str) -> None:
        self._cur = cur
        self._run_key = run_key

    def build(self, table: str, sql: str, params: Sequence[object]) -> int:
        """CREATE OR REPLACE the run's staging table for `table` AS the SELECT; its row count.

        The CREATE is put before the SELECT on its first line, so the lines DuckDB reports are the SELECT's.
        """
        check_name("table", table)
        _check_select(sql)
        staging = f"{STAGING_SCHEMA}.{quote(staging_name(self._run_key, table))}"
        try:
            row = self._cur.execute(f"CREATE OR REPLACE TABLE {staging} AS {sql}", list(params)).fetchone()
        except duckdb.InterruptException as error:
            raise QueryFailed("the query was interrupted", interrupted=True) from error
        except duckdb.Error as error:
            raise QueryFailed(first_line(error), _error_line(error)) from error
        return int(row[0]) if row else 0

    def interrupt(self) -> None:
        self._cur.interrupt()


class DuckDBWarehouses:
    """The DuckDB warehouses of a process: `<directory>/<account>.duckdb`, one open instance each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._open: dict[str, DuckDBWarehouse] = {}

    def for_account(self, account: str) -> DuckDBWarehouse:
        """The account's warehouse, opened (and created) on first use."""
        if not _ACCOUNT.fullmatch(account):
            raise WarehouseError(f"account name {account!r} cannot name a warehouse file")
        with self._lock:
            warehouse = self._open.get(account)
            if warehouse is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                warehouse = DuckDBWarehouse(self.directory / f"{account}.duckdb")
                self._open[account] = warehouse
            return warehouse

    def opened(self) -> list[DuckDBWarehouse]:
        with self._lock:
            return list(self._open.values())

    def sweepable(self) -> list[DuckDBWarehouse]:
        """The opened warehouses whose file this process holds now: a file let go when idle is not taken back from
        another process's turn by a sweep (which looks again when this process holds it)."""
        return [warehouse for warehouse in self.opened() if warehouse.holds_file]

    def close_all(self) -> None:
        """Close every open warehouse; `for_account` opens them again."""
        with self._lock:
            warehouses, self._open = list(self._open.values()), {}
        for warehouse in warehouses:
            warehouse.close()


# -- SQL helpers (cursor in, no state) ------------------------------------------------------


def _export_select(cur: duckdb.DuckDBPyConnection, query: ExportQuery, *, ordered: bool) -> tuple[str, list[object]]:
    """The SELECT of an export and its parameters: the source, filtered on its time column, in its order."""
    if query.sql is not None:
        _check_read(query.sql)
        # On lines of their own: a final `-- comment` must not swallow the closing parenthesis.
        source = f"(\n{query.sql.strip().rstrip(';')}\n) AS {quote(query.source)}"
    else:
        check_name("table", query.source)
        if _columns(cur, TARGET_SCHEMA, query.source) is None and not _is_view(cur, query.source):
            raise QueryFailed(f"there is no table or view named {query.source!r}")
        source = f"{TARGET_SCHEMA}.{quote(query.source)}"
    tail, params = export_filter(query, quote, "?", ordered=ordered)
    select = f"SELECT * FROM {source}{tail}"  # noqa: S608
    return select, params


def _is_view(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM duckdb_views() WHERE database_name = current_database() AND schema_name = ? "
        "AND lower(view_name) = lower(?) AND NOT internal",
        [TARGET_SCHEMA, name],
    ).fetchone()
    return bool(row and row[0])


def _stamp(
    cur: duckdb.DuckDBPyConnection, staging: str, columns: Mapping[str, _Column], column: str, now: datetime
) -> None:
    """Give every staged row the load time in `column` (replacing a staged column of that name, as a table built
    from a loaded table carries one). A column default fills the rows without rewriting them."""
    existing = columns.get(_fold(column))
    if existing is not None:
        cur.execute(f"ALTER TABLE {staging} DROP COLUMN {quote(existing.name)}")
    stamp = now.isoformat(sep=" ", timespec="microseconds")  # our own datetime: a safe literal
    cur.execute(f"ALTER TABLE {staging} ADD COLUMN {quote(column)} TIMESTAMP DEFAULT TIMESTAMP '{stamp}'")
    cur.execute(f"ALTER TABLE {staging} ALTER COLUMN {quote(column)} DROP DEFAULT")


def _count(cur: duckdb.DuckDBPyConnection, qualified: str) -> int:
    row = cur.execute(f"SELECT count(*) FROM {qualified}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def duckdb_type(kind: pa.DataType) -> str | None:
    """The DuckDB type a loaded column of this Arrow type gets, as `columns` spells it; None when not one of
    the common ones (the schema-change message then does not compare it)."""
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        return "TIMESTAMP WITH TIME ZONE" if kind.tz else "TIMESTAMP"
    if pa.types.is_list(kind):
        item = duckdb_type(kind.value_type)
        return f"{item}[]" if item else None
    simple = (
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_int64, "BIGINT"),
        (pa.types.is_int32, "INTEGER"),
        (pa.types.is_float64, "DOUBLE"),
        (pa.types.is_string, "VARCHAR"),
        (pa.types.is_large_string, "VARCHAR"),
        (pa.types.is_date32, "DATE"),
    )
    return next((name for test, name in simple if test(kind)), None)


def _columns(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, _Column] | None:
    """A table's columns keyed by folded name, resolved as DuckDB resolves names; None if absent.

    Reads the catalog rather than DESCRIBE because inside a transaction a failed statement
    (an unknown table) would abort it.
    """
    rows = cur.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND lower(table_name) = lower(?) "
        "ORDER BY column_index",
        [schema, table],
    ).fetchall()
    names = {name for name, _, _ in rows if _fold(name) == _fold(table)}
    if not names:
        return None
    chosen = table if table in names else min(names)
    return {_fold(column): _Column(column, data_type) for name, column, data_type in rows if name == chosen}


def _data_columns(columns: Mapping[str, _Column]) -> dict[str, _Column]:
    return {folded: column for folded, column in columns.items() if folded != ROW_COLUMN}


def _keys_unique(cur: duckdb.DuckDBPyConnection, staging: str, primary_key: Sequence[str]) -> bool:
    """True when no primary key repeats in the staged rows (the usual case: no de-duplication needed)."""
    if not primary_key:
        return True
    keys = ", ".join(quote(key) for key in primary_key)
    row = cur.execute(
        f"SELECT count(*) = (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {staging})) FROM {staging}"  # noqa: S608
    ).fetchone()
    return bool(row and row[0])


def _select_staged(staging: str, primary_key: Sequence[str] = (), unique: bool = False) -> str:
    """The staged rows in staging order, one per primary key (the last staged) when keys repeat.

    A plain scan keeps the staging order (DuckDB preserves insertion order), so only the
    de-duplication needs the row numbers.
    """
    row = quote(ROW_COLUMN)
    sql = f"SELECT * EXCLUDE ({row}) FROM {staging}"  # noqa: S608
    if primary_key and not unique:
        keys = ", ".join(quote(key) for key in primary_key)
        sql += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {row} DESC) = 1 ORDER BY {row}"
    return sql


def _without_deleted(select: str, deleted_column: str | None) -> str:
    """The rows of `select` whose deletion flag is not true, without the flag; `select` itself without a flag."""
    if deleted_column is None:
        return select
    flag = quote(deleted_column)
    return f"SELECT * EXCLUDE ({flag}) FROM ({select}) WHERE {flag} IS NOT TRUE"  # noqa: S608


def _delete_matching_keys(
    target: str, staging: str, primary_key: Sequence[str], target_columns: Mapping[str, _Column]
) -> str:
    """DELETE the target rows whose key is staged. NULL keys match NULL keys, as the de-duplication does.

    Staged keys are cast to the target's key type: DuckDB would otherwise cast a VARCHAR key to
    the staged (say BIGINT) type and fail on non-numeric values.
    """
    conditions = []
    for key in primary_key:
        column = quote(key)
        staged = f"CAST(s.{column} AS {target_columns[_fold(key)].type})"
        conditions.append(f"t.{column} IS NOT DISTINCT FROM {staged}")
    matches = f"SELECT 1 FROM {staging} AS s WHERE {' AND '.join(conditions)}"  # noqa: S608
    return f"DELETE FROM {target} AS t WHERE EXISTS ({matches})"  # noqa: S608


def _recorded_load(cur: duckdb.DuckDBPyConnection, run_key: str) -> tuple[TableResult, ...] | None:
    row = cur.execute("SELECT tables FROM _runyard.loads WHERE run_key = ?", [run_key]).fetchone()
    if row is None:
        return None
    return tuple(TableResult(name=t["name"], rows=t["rows"], staged=t["staged"]) for t in json.loads(row[0]))


def _save_high_watermark(cur: duckdb.DuckDBPyConnection, operation_id: int, table: TableLoad, now: datetime) -> None:
    cur.execute(
        "INSERT INTO _runyard.state (operation_id, table_name, cursor_field, high_watermark, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (operation_id, table_name) DO UPDATE SET "
        "cursor_field = excluded.cursor_field, high_watermark = excluded.high_watermark, "
        "updated_at = excluded.updated_at",
        [operation_id, table.name, table.cursor_field, table.high_watermark, now],
    )


def _record_load(
    cur: duckdb.DuckDBPyConnection, request: LoadRequest, results: tuple[TableResult, ...], now: datetime
) -> None:
    modes = {table.name: table.mode for table in request.tables}
    tables = [{"name": r.name, "mode": modes[r.name], "rows": r.rows, "staged": r.staged} for r in results]
    cur.execute(
        "INSERT INTO _runyard.loads (run_key, operation_id, loaded_at, tables) VALUES (?, ?, ?, ?::JSON)",
        [request.run_key, request.operation_id, now, json.dumps(tables)],
    )
