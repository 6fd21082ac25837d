"""The shared warehouse: one PostgreSQL database, one schema per account, fed Arrow batches through COPY.

Layout: account `acme`'s tables are in the schema `acct_acme` (an account name that is not plain lower-case
letters, digits and underscores gets a hash suffix instead: `acct_<cleaned>_<8 hex>`); every connection runs with
`search_path` set to it, so unqualified names in `query()`, `read()`, transforms and exports are the account's
tables. A run's staging tables are in a schema of their own, `<account schema>__run_<16 hex of the run key>`,
which carries the run key as its comment (`staged_runs`) and is dropped whole (`drop_staging`); a replacing load
moves a staging table into place (`ALTER TABLE ... SET SCHEMA`) instead of copying it. Load records and high
watermarks are in the schema `_runyard` (`loads`, `state`, keyed by account), which no account can read.

Reading: `read()` (the SQL Explorer), `count_rows()` and `export()` run as the account's reader role
(`SET LOCAL ROLE ry_<10 hex of sha256(database + account)>_reader`: USAGE on the account's schema and SELECT on
its tables, nothing else) in a READ ONLY transaction; user SQL is always sent with the extended query protocol,
which admits one statement, so no text can end the transaction and drop the role.

Loading: `stage()` writes each Arrow batch as CSV (pyarrow) into one `COPY ... FROM STDIN`; `load()` runs every
table, the high watermarks and the load record in one transaction, under a transaction-level advisory lock per
account (loads of an account are serialised across processes, as DuckDB's are within one).

Connections: a small pool of autocommit connections (each call takes one, runs its own explicit transaction and
gives it back); a connection a cancel was sent on, or that is not idle, is closed instead of kept. Connection
failures, serialization failures, deadlocks and shutdowns raise WarehouseUnavailable, a TransientError: a task
waits them out and tries again (runyard.engine.executors). The URL's password appears in no message.

Every name that comes from a user or a source (tables, columns, keys) reaches SQL only as a quoted identifier;
every value only as a parameter.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runyard.faults import crash_point
from runyard.settings import POSTGRES_SCHEMES
from runyard.sqltext import WORD, tokens
from runyard.sqltext import statements as sql_statements
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
    WarehouseError,
    WarehouseUnavailable,
)
from runyard.warehouse.checks import (
    check_name,
    check_request,
    check_run_key,
    export_filter,
    first_line,
)
from runyard.warehouse.watchdog import Watchdog

if TYPE_CHECKING:
    import pyarrow as pa

META_SCHEMA = "_runyard"
ACCOUNT_PREFIX = "acct_"
RUN_SCHEMA_INFIX = "__run_"
# Staging order, added to every staging table: "the last staged row of a key wins" needs it.
ROW_COLUMN = "_runyard_row"
POOL_SIZE = 4
CONNECT_TIMEOUT_SECONDS = 10
CANCEL_RETRY_SECONDS = 0.05
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_PLAIN_ACCOUNT = re.compile(r"[a-z0-9_]{1,35}")
_SCHEMES = POSTGRES_SCHEMES
_LOCK_PREPARE = 0x52590001  # advisory lock key: preparing the bookkeeping schema and accounts
# SQLSTATEs after which the same work may succeed later (class 08: the connection itself).
_TRANSIENT_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300", "55006"})

_METADATA_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
        account TEXT NOT NULL,
        run_key TEXT NOT NULL,
        operation_id BIGINT NOT NULL,
        loaded_at TIMESTAMP NOT NULL,  -- UTC
        tables JSONB NOT NULL,
        PRIMARY KEY (account, run_key)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.state (
        account TEXT NOT NULL,
        operation_id BIGINT NOT NULL,
        table_name TEXT NOT NULL,
        cursor_field TEXT,
        high_watermark TEXT,
        updated_at TIMESTAMP NOT NULL,  -- UTC
        PRIMARY KEY (account, operation_id, table_name)
    )""",
)


# DuckDB's epoch_us(timestamp), in each account's schema: api-to-table's watermark check reads a table's largest
# cursor value with it. Only runyard's own names and type names are formatted in.
_EPOCH_US = (
    "CREATE OR REPLACE FUNCTION {schema}.epoch_us({kind}) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "AS $$ SELECT (extract(epoch FROM $1) * 1000000)::bigint $$"
)
_RECORDED_LOAD = f"SELECT tables FROM {META_SCHEMA}.loads WHERE account = %s AND run_key = %s"  # noqa: S608
_SAVE_HIGH_WATERMARK = (
    "INSERT INTO _runyard.state (account, operation_id, table_name, cursor_field, high_watermark, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (account, operation_id, table_name) DO UPDATE SET "
    "cursor_field = excluded.cursor_field, high_watermark = excluded.high_watermark, updated_at = excluded.updated_at"
)
_RECORD_LOAD = (
    "INSERT INTO _runyard.loads (account, run_key, operation_id, loaded_at, tables) VALUES (%s, %s, %s, %s, %s::jsonb)"
)
_HIGH_WATERMARK = (
    f"SELECT high_watermark FROM {META_SCHEMA}.state WHERE account = %s AND operation_id = %s AND table_name = %s"  # noqa: S608
)


def quote(identifier: str) -> str:
    """`identifier` as a PostgreSQL quoted identifier: whatever it contains, it stays one name."""
    return '"' + identifier.replace('"', '""') + '"'


def _hex(*parts: str, length: int) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def account_schema(account: str) -> str:
    """The schema (unquoted) holding an account's tables: `acct_<account>`, or `acct_<cleaned>_<hash>` when the
    name is not plain lower-case letters, digits and underscores (two accounts never share one)."""
    if _PLAIN_ACCOUNT.fullmatch(account):
        return ACCOUNT_PREFIX + account
    cleaned = re.sub(r"[^a-z0-9_]", "_", account.lower())[:26]
    return f"{ACCOUNT_PREFIX}{cleaned}_{_hex(account, length=8)}"


def reader_role(database: str, account: str) -> str:
    """The role the account's reads run as; roles are cluster-wide, so it names the database too."""
    return f"ry_{_hex(database + account, length=10)}_reader"


def run_schema(schema: str, run_key: str) -> str:
    """The schema (unquoted) holding a run's staging tables for the account whose schema is `schema`."""
    return f"{schema}{RUN_SCHEMA_INFIX}{_hex(run_key, length=16)}"


def _message(error: BaseException) -> str:
    """The database's whole message (its LINE and caret included)."""
    return str(error).strip() or type(error).__name__


def _is_transient(error: BaseException) -> bool:
    if not isinstance(error, psycopg.Error):
        return False
    state = error.sqlstate
    if state is None:
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return state.startswith("08") or state in _TRANSIENT_STATES


# -- SQL text: statements, parameters, lines --------------------------------------------------------------------------


def _first_word(statement: str) -> str:
    """The statement's first keyword, upper case ("(" for a parenthesised query; "" when none)."""
    for token in tokens(statement):
        if token.kind in ("space", "comment"):
            continue
        return token.text.upper() if token.kind == "code" and WORD.match(token.text) else token.text[:1]
    return ""


_QUERY_WORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "("})
_KIND_NAMES = {"BEGIN": "TRANSACTION", "START": "TRANSACTION", "COMMIT": "TRANSACTION", "ROLLBACK": "TRANSACTION"}


def _kind(statement: str) -> str:
    word = _first_word(statement)
    return _KIND_NAMES.get(word, word or "empty")


def _check_select(sql: str) -> None:
    """One statement, a query (the messages are DuckDB's, see runyard.warehouse.duckdb)."""
    statements = sql_statements(sql)
    if len(statements) != 1:
        raise QueryFailed(f"a step is one SELECT, and this SQL holds {len(statements)} statements")
    if _first_word(statements[0]) not in _QUERY_WORDS:
        raise QueryFailed(
            f"a step is one SELECT that builds its table, and this SQL is a {_kind(statements[0])} statement"
        )


def _check_read(sql: str) -> None:
    """Exactly one statement, a query (SELECT, WITH, VALUES, TABLE) or EXPLAIN of one. The transaction it then runs
    in cannot write whatever the text says, and its role reads the account's schema alone."""
    statements = sql_statements(sql)
    if not statements:
        raise QueryFailed("there is no query to run")
    if len(statements) != 1:
        raise QueryFailed(f"run one query at a time: this text holds {len(statements)} statements")
    if _first_word(statements[0]) not in {*_QUERY_WORDS, "EXPLAIN"}:
        kind = _kind(statements[0])
        article = "an" if kind[:1] in "AEIOU" else "a"
        raise QueryFailed(
            f"only queries that read can run here (SELECT, WITH, EXPLAIN): this is {article} {kind} statement"
        )


def _qmark_sql(sql: str) -> tuple[str, str]:
    """A text with `?` parameters (DuckDB's style, runyard's) as psycopg wants it (`%s`, `%` doubled), and as the
    server sees it (`$1`, `$2`...), for the line of an error position."""
    driver: list[str] = []
    server: list[str] = []
    count = 0
    for token in tokens(sql):
        if token.kind == "code" and token.text == "?":
            count += 1
            driver.append("%s")
            server.append(f"${count}")
        else:
            driver.append(token.text.replace("%", "%%"))
            server.append(token.text)
    return "".join(driver), "".join(server)


def _driver_sql(sql: str, params: Sequence[object]) -> tuple[str, list[object] | None]:
    """`sql` and `params` for psycopg: without parameters the text goes as it is."""
    if not params:
        return sql, None
    return _qmark_sql(sql)[0], list(params)


def _error_line(error: BaseException, sent: str) -> int | None:
    """The line (1-based) of `sent`, the text the server parsed, that PostgreSQL's error points at; None if none."""
    diag = getattr(error, "diag", None)
    position = getattr(diag, "statement_position", None)
    if not position:
        return None
    try:
        offset = int(position) - 1
    except ValueError:
        return None
    return sent[:offset].count("\n") + 1


class _OneStatementCursor(psycopg.Cursor[Any]):
    """A cursor that always uses the extended query protocol, which runs exactly one statement per call: user SQL
    cannot smuggle a `COMMIT; RESET ROLE; ...` past the checks."""

    def _execute_send(self, query: Any, *, force_extended: bool = False, binary: bool | None = None) -> None:
        super()._execute_send(query, force_extended=True, binary=binary)


# -- Arrow to PostgreSQL -------------------------------------------------------------------------------------------


# pg_type's short names as format_type() (and so `columns`) spells them.
_FORMAT_TYPE_SPELLING = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
}


def postgres_type_name(kind: pa.DataType) -> str:
    """pg_type as format_type() spells it, which is how `columns` reports a table's types."""
    spelled = pg_type(kind)
    return _FORMAT_TYPE_SPELLING.get(spelled, spelled)


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL type a staged column of this Arrow type gets (nested types as jsonb, unknown ones as text)."""
    import pyarrow as pa

    t = pa.types
    if pa.types.is_dictionary(arrow_type):
        return pg_type(arrow_type.value_type)
    checks: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (
        (t.is_boolean, "boolean"),
        (lambda x: t.is_int8(x) or t.is_int16(x) or t.is_uint8(x), "smallint"),
        (lambda x: t.is_int32(x) or t.is_uint16(x), "integer"),
        (lambda x: t.is_int64(x) or t.is_uint32(x), "bigint"),
        (t.is_uint64, "numeric(20,0)"),
        (lambda x: t.is_float16(x) or t.is_float32(x), "real"),
        (t.is_float64, "double precision"),
        (lambda x: t.is_string(x) or t.is_large_string(x) or t.is_null(x), "text"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x), "bytea"),
        (t.is_date, "date"),
        (t.is_time, "time"),
        (t.is_duration, "interval"),
        (t.is_nested, "jsonb"),
    )
    if t.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    if t.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if getattr(t, "is_string_view", lambda _: False)(arrow_type):
        return "text"
    if getattr(t, "is_binary_view", lambda _: False)(arrow_type):
        return "bytea"
    for check, name in checks:
        if check(arrow_type):
            return name
    return "text"


_DURATION_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _csv_column(column: pa.Array) -> pa.Array:
    """A column as pyarrow's CSV writer can write it and COPY read it back into its `pg_type`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        return _csv_column(column.dictionary_decode())
    if pa.types.is_nested(kind):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.large_string()
        )
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string())
    if pa.types.is_duration(kind):
        unit = kind.unit
        values = pc.cast(column, pa.int64())
        if unit == "ns":
            values, unit = pc.divide(values, 1000), "us"
        return pa.array(
            [None if v is None else f"{v} {_DURATION_UNITS[unit]}" for v in values.to_pylist()], pa.string()
        )
    if pa.types.is_date64(kind):
        return pc.cast(column, pa.date32())
    if pa.types.is_float16(kind):
        return pc.cast(column, pa.float32())
    view = getattr(pa.types, "is_string_view", lambda _: False)(kind)
    if view:
        return pc.cast(column, pa.large_string())
    return column


def _csv(batch: pa.RecordBatch) -> bytes:
    """One batch as CSV rows (no header): NULL unquoted and empty, strings quoted, as COPY's csv format reads."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = [_csv_column(column) for column in batch.columns]
    table = pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))])
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


# -- PostgreSQL to Arrow (exports) ---------------------------------------------------------------------------------


def _arrow_type(type_name: str, precision: int | None, scale: int | None) -> pa.DataType:
    import pyarrow as pa

    fixed: dict[str, pa.DataType] = {
        "bool": pa.bool_(),
        "int2": pa.int16(),
        "int4": pa.int32(),
        "int8": pa.int64(),
        "oid": pa.int64(),
        "float4": pa.float32(),
        "float8": pa.float64(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "interval": pa.duration("us"),
        "bytea": pa.binary(),
    }
    if type_name in fixed:
        return fixed[type_name]
    if type_name == "numeric":
        if precision is not None and 0 < precision <= 38:
            return pa.decimal128(precision, scale or 0)
        return pa.float64()
    return pa.string()


def _arrow_values(values: list[object], kind: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if pa.types.is_string(kind):
        return pa.array([_text(v) for v in values], pa.string())
    if pa.types.is_floating(kind):
        values = [None if v is None else float(v) for v in values]  # type: ignore[arg-type]
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _arrow_page(rows: list[tuple[Any, ...]], names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
    import pyarrow as pa

    arrays = [_arrow_values([row[i] for row in rows], kind) for i, kind in enumerate(types)]
    return pa.Table.from_arrays(arrays, names=list(names))


# -- connections -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a PostgreSQL warehouse is: what psycopg connects with, and how messages name it (no password)."""

    conninfo: str
    database: str
    where: str
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Target:
        for scheme in _SCHEMES:
            if url.lower().startswith(scheme):
                url = "postgresql://" + url[len(scheme) :]
                break
        try:
            parts = conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise WarehouseError("the PostgreSQL warehouse URL cannot be read (RUNYARD_WAREHOUSE_URL)") from error
        host = str(parts.get("host") or "localhost")
        port = str(parts.get("port") or "5432")
        database = str(parts.get("dbname") or parts.get("user") or "postgres")
        password = parts.get("password")
        return cls(make_conninfo(url), database, f"{host}:{port}/{database}", str(password) if password else None)

    def scrub(self, text: str) -> str:
        """`text` without the password, should a driver message ever carry it."""
        return text.replace(self.password, "***") if self.password else text


class _Pool:
    """A few autocommit connections of one account, reused; see the module docstring."""

    def __init__(self, target: Target, schema: str, size: int = POOL_SIZE) -> None:
        self._target = target
        self._schema = schema
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._spoiled: set[int] = set()
        self.closed = False

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._target.conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="runyard-warehouse",
                options=f"-c search_path={self._schema} -c TimeZone=UTC",
            )
        except psycopg.Error as error:
            raise self.unavailable(error) from None
        conn.prepare_threshold = None
        return conn

    def unavailable(self, error: BaseException) -> WarehouseUnavailable:
        return WarehouseUnavailable(self._target.where, self._target.scrub(first_line(error)))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self.closed:
                raise WarehouseError(f"warehouse {self._target.where} ({self._schema}) is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def spoil(self, conn: psycopg.Connection[Any]) -> None:
        """Never reuse `conn` (a cancel may still be on its way to it)."""
        with self._lock:
            self._spoiled.add(id(conn))

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            spoiled = id(conn) in self._spoiled
            self._spoiled.discard(id(conn))
            keep = (
                not self.closed
                and not spoiled
                and not conn.closed
                and conn.info.transaction_status == pq.TransactionStatus.IDLE
                and len(self._idle) < self._size
            )
            if keep:
                self._idle.append(conn)
                return
        with suppress(psycopg.Error):
            conn.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(psycopg.Error):
                conn.close()


class _Canceller(Watchdog):
    """Cancels a connection's statement when asked from another thread (runyard.warehouse.watchdog). Once asked, the
    connection is spoiled (closed, not pooled), so that no late cancel reaches another call's statement."""

    def __init__(self, pool: _Pool, conn: psycopg.Connection[Any]) -> None:
        super().__init__(partial(_cancel, conn), retry_seconds=CANCEL_RETRY_SECONDS, on_first=partial(pool.spoil, conn))

    def __enter__(self) -> _Canceller:
        super().__enter__()
        return self


def _cancel(conn: psycopg.Connection[Any]) -> None:
    with suppress(psycopg.Error):
        conn.cancel_safe(timeout=5)


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if conn.closed or conn.info.transaction_status == pq.TransactionStatus.IDLE:
        return
    with suppress(psycopg.Error):
        conn.execute("ROLLBACK")


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class _Column:
    name: str
    type: str


# -- checks ------------------------------------------------------------------------------------------------------


def _fold(name: str) -> str:
    return name.lower()


class PostgresWarehouse:
    """One account's warehouse: a schema of a PostgreSQL database; see the module docstring for the rules."""

    def __init__(self, target: Target, account: str) -> None:
        self.account = account
        self.schema = account_schema(account)
        self.role = reader_role(target.database, account)
        self._target = target
        self._pool = _Pool(target, self.schema)
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    # -- connections and errors -------------------------------------------------------------------

    @contextmanager
    def _errors(self, context: str) -> Iterator[None]:
        """psycopg errors become WarehouseUnavailable (transient ones) or WarehouseError, prefixed with `context`."""
        try:
            yield
        except psycopg.Error as error:
            if _is_transient(error):
                raise self._pool.unavailable(error) from error
            raise WarehouseError(f"{context}: {self._target.scrub(first_line(error))}") from error

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on a pooled connection, in autocommit."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in a transaction of its own, committed when the block ends, rolled back when it raises."""
        with self._pool.connection() as conn:
            try:
                conn.execute(begin)
                with conn.cursor() as cur:
                    yield cur
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    def close(self) -> None:
        """Close the pooled connections; later calls raise WarehouseError."""
        self._pool.close()

    def _prepare(self) -> None:
        """The bookkeeping schema, the account's schema, its reader role and grants: idempotent, serialised by an
        advisory lock (two processes opening the account at once), tolerant of a role another database's process
        created meanwhile."""
        schema, role = quote(self.schema), quote(self.role)
        context = f"cannot prepare the warehouse schema of account {self.account!r}"
        with self._errors(context), self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_PREPARE])
            for statement in _METADATA_DDL:
                cur.execute(statement)
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._create_role(cur)
            cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
            cur.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}")
            for kind in ("timestamptz", "timestamp"):  # DuckDB's epoch_us, which runyard's own SQL uses
                cur.execute(_EPOCH_US.format(schema=schema, kind=kind))

    def _create_role(self, cur: psycopg.Cursor[Any]) -> None:
        role = quote(self.role)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.role])
        if cur.fetchone() is None:
            cur.execute("SAVEPOINT create_role")
            try:
                cur.execute(f"CREATE ROLE {role} NOLOGIN")
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                cur.execute("ROLLBACK TO SAVEPOINT create_role")  # created by another process meanwhile
            else:
                cur.execute("RELEASE SAVEPOINT create_role")
        cur.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [self.role])
        member = cur.fetchone()
        if not (member and member[0]):
            cur.execute(f"GRANT {role} TO CURRENT_USER")

    def _run_schema(self, run_key: str) -> str:
        return run_schema(self.schema, run_key)

    def _ensure_run_schema(self, run_key: str) -> str:
        """The run's staging schema, created (with its run key as comment) if needed; its name."""
        name = self._run_schema(run_key)
        with self._errors(f"run {run_key}: cannot create its staging schema"), self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(f"CREATE SCHEMA {quote(name)}")
                cur.execute(f"COMMENT ON SCHEMA {quote(name)} IS {_literal(run_key)}")
        return name

    # -- staging ----------------------------------------------------------------------------------

    def stage(self, run_key: str, table: str, reader: pa.RecordBatchReader) -> int:
        """(Re)create the run's staging table for `table` from Arrow batches; return its row count.

        Each batch is written as CSV by pyarrow into one `COPY ... FROM STDIN (FORMAT csv)`; an identity column
        `_runyard_row` records the order.
        """
        check_run_key(run_key)
        check_name("table", table)
        fields = list(reader.schema)
        if not fields:
            raise WarehouseError(f"run {run_key}: table {table!r} has no columns: nothing to stage")
        if any(_fold(field.name) == ROW_COLUMN for field in fields):
            raise WarehouseError(f"run {run_key}: table {table!r} has a column named {ROW_COLUMN!r}, which is reserved")
        staging = f"{quote(self._ensure_run_schema(run_key))}.{quote(table)}"
        definitions = ", ".join(f"{quote(field.name)} {pg_type(field.type)}" for field in fields)
        names = ", ".join(quote(field.name) for field in fields)
        rows = 0
        with self._errors(f"run {run_key}: cannot stage table {table!r}"), self._transaction() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {staging}")
            cur.execute(
                f"CREATE TABLE {staging} ({definitions}, {quote(ROW_COLUMN)} BIGINT GENERATED ALWAYS AS IDENTITY)"
            )
            with cur.copy(f"COPY {staging} ({names}) FROM STDIN (FORMAT csv)") as copy:
                for batch in reader:
                    if batch.num_rows:
                        copy.write(_csv(batch))
                        rows += batch.num_rows
        return rows

    def drop_staging(self, run_key: str) -> None:
        """Drop the run's staging schema and every table in it."""
        check_run_key(run_key)
        with self._errors(f"run {run_key}: cannot drop its staging tables"), self._pool.connection() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {quote(self._run_schema(run_key))} CASCADE")

    def staged_runs(self) -> set[str]:
        """The run keys that have a staging schema (read from the schemas' comments)."""
        with self._errors("cannot list the staging tables"), self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE starts_with(nspname::text, %s)",
                [self.schema + RUN_SCHEMA_INFIX],
            ).fetchall()
        return {str(key) for (key,) in rows if key}

    @contextmanager
    def transform(self, run_key: str, inputs: Sequence[str]) -> Iterator[PostgresTransform]:
        """A connection on which each name in `inputs` is a temporary view of the run's staging table for it.

        PostgreSQL looks temporary relations up first, so a step's SQL reads what its upstream steps built in this
        run; the views are dropped when the session ends.
        """
        check_run_key(run_key)
        for name in inputs:
            check_name("table", name)
        staging = self._run_schema(run_key)
        with self._pool.connection() as conn:
            with self._errors(f"run {run_key}: cannot read the tables built by this run"):
                built = {
                    str(name)
                    for (name,) in conn.execute(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = ANY(%s)",
                        [staging, list(inputs)],
                    ).fetchall()
                }
                for name in inputs:
                    if name not in built:
                        raise WarehouseError(f"run {run_key}: the table {name!r} was not built by this run")
                    conn.execute(f"CREATE TEMP VIEW {quote(name)} AS SELECT * FROM {quote(staging)}.{quote(name)}")  # noqa: S608
            try:
                with _Canceller(self._pool, conn) as canceller:
                    yield PostgresTransform(self, conn, run_key, canceller)
            finally:
                _rollback(conn)
                with suppress(psycopg.Error):
                    conn.execute("DISCARD TEMP")

    # -- the load ---------------------------------------------------------------------------------

    def load(self, request: LoadRequest) -> LoadResult:
        """Load every staged table, the high watermarks and a load record in one transaction.

        A run already loaded is not loaded again: the result repeats the recorded one with `already_loaded=True`.
        Any error rolls everything back and raises WarehouseError (WarehouseUnavailable when it may pass).
        """
        check_request(request, _fold)
        with self._pool.connection() as conn:
            try:
                with self._errors(f"run {request.run_key}: cannot begin the load"):
                    conn.execute("BEGIN")
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.schema])
                with conn.cursor() as cur:
                    result = self._load_in_transaction(cur, request)
                if result.already_loaded:
                    _rollback(conn)
                    return result
                crash_point("load.before_commit")
                with self._errors(f"run {request.run_key}: cannot commit the load"):
                    conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return result

    def _load_in_transaction(self, cur: psycopg.Cursor[Any], request: LoadRequest) -> LoadResult:
        with self._errors(f"run {request.run_key}: cannot read the load record"):
            recorded = self._recorded_load(cur, request.run_key)
        if recorded is not None:
            return LoadResult(already_loaded=True, tables=recorded)
        results = []
        now = _utc_now()
        for table in request.tables:
            with self._errors(f"run {request.run_key}: cannot load table {table.name!r}"):
                results.append(self._load_table(cur, request.run_key, table, now))
                if table.high_watermark is not None:
                    self._save_high_watermark(cur, request.operation_id, table, now)
        with self._errors(f"run {request.run_key}: cannot record the load"):
            self._record_load(cur, request, tuple(results), now)
        return LoadResult(already_loaded=False, tables=tuple(results))

    def _load_table(self, cur: psycopg.Cursor[Any], run_key: str, table: TableLoad, now: datetime) -> TableResult:
        staging_schema = self._run_schema(run_key)
        staging_columns = _columns(cur, staging_schema, table.name, exact=True)
        if staging_columns is None:
            raise WarehouseError(f"run {run_key}: table {table.name!r} was not staged")
        staging = f"{quote(staging_schema)}.{quote(table.name)}"
        if table.loaded_at_column is not None:
            _stamp(cur, staging, staging_columns, table.loaded_at_column, now)
            staging_columns = _columns(cur, staging_schema, table.name, exact=True) or staging_columns
        name = _resolve(cur, self.schema, table.name)
        target = f"{quote(self.schema)}.{quote(name)}"
        staged = _count(cur, staging)
        if table.deleted_column is not None and _fold(table.deleted_column) not in staging_columns:
            raise WarehouseError(
                f"run {run_key}: table {table.name!r}: the deletion flag column {table.deleted_column!r} was not staged"
            )
        if table.mode == "replace" and table.deleted_column is None and _keys_unique(cur, staging, table.primary_key):
            # The staged table becomes the table: a move between schemas, not a copy of every row.
            cur.execute(f"DROP TABLE IF EXISTS {target}")
            if ROW_COLUMN in staging_columns:  # tables built by SQL steps have no staging order
                cur.execute(f"ALTER TABLE {staging} DROP COLUMN {quote(ROW_COLUMN)}")
            if name != table.name:
                cur.execute(f"ALTER TABLE {staging} RENAME TO {quote(name)}")
                staging = f"{quote(staging_schema)}.{quote(name)}"
            cur.execute(f"ALTER TABLE {staging} SET SCHEMA {quote(self.schema)}")
            cur.execute(f"GRANT SELECT ON {target} TO {quote(self.role)}")
            return TableResult(name=table.name, rows=staged, staged=staged)
        data = _data_columns(staging_columns)
        ordered = ROW_COLUMN in staging_columns
        if table.mode == "replace":
            kept = _without_deleted(
                _select_staged(staging, data, table.primary_key, ordered=ordered), data, table.deleted_column
            )
            cur.execute(f"DROP TABLE IF EXISTS {target}")
            cur.execute(f"CREATE TABLE {target} AS {kept}")
            cur.execute(f"GRANT SELECT ON {target} TO {quote(self.role)}")
        else:
            self._merge(cur, run_key, table, name, staging, data, ordered=ordered)
        return TableResult(name=table.name, rows=_count(cur, target), staged=staged)

    def _merge(
        self,
        cur: psycopg.Cursor[Any],
        run_key: str,
        table: TableLoad,
        name: str,
        staging: str,
        staging_columns: Mapping[str, _Column],
        *,
        ordered: bool,
    ) -> None:
        """Delete the target rows whose key is staged, then insert the kept staged rows (the last of each key, not
        flagged deleted). The same as an upsert on the key, NULL keys matching NULL keys, with no unique index
        needed; a plain index on the key keeps it fast."""
        missing = [key for key in table.primary_key if _fold(key) not in staging_columns]
        if missing:
            raise WarehouseError(
                f"run {run_key}: table {table.name!r}: primary key column(s) {', '.join(map(repr, missing))} "
                f"are not among the staged columns"
            )
        target = f"{quote(self.schema)}.{quote(name)}"
        target_columns = _columns(cur, self.schema, name, exact=True)
        unique = _keys_unique(cur, staging, table.primary_key)
        kept = _without_deleted(
            _select_staged(staging, staging_columns, table.primary_key, unique, ordered=ordered),
            staging_columns,
            table.deleted_column,
        )
        if target_columns is None:
            cur.execute(f"CREATE TABLE {target} AS {kept}")
            cur.execute(f"GRANT SELECT ON {target} TO {quote(self.role)}")
            _index_keys(cur, self.schema, name, table.primary_key)
            return
        if table.deleted_column is not None:  # a flag, not a column of the table
            staging_columns = {f: c for f, c in staging_columns.items() if f != _fold(table.deleted_column)}
        target_columns = _evolve(cur, target, target_columns, staging_columns)
        if table.primary_key:
            _index_keys(cur, self.schema, name, table.primary_key)
            # Every staged key, deleted ones included: a deleted key's row goes, and is not inserted again.
            for statement in _delete_matching_keys(target, staging, table.primary_key, target_columns):
                cur.execute(statement)
        names = ", ".join(quote(target_columns[folded].name) for folded in staging_columns)
        cur.execute(f"INSERT INTO {target} ({names}) {kept}")

    def _recorded_load(self, cur: psycopg.Cursor[Any], run_key: str) -> tuple[TableResult, ...] | None:
        cur.execute(_RECORDED_LOAD, [self.account, run_key])
        row = cur.fetchone()
        if row is None:
            return None
        tables = row[0] if isinstance(row[0], list) else json.loads(row[0])
        return tuple(TableResult(name=t["name"], rows=t["rows"], staged=t["staged"]) for t in tables)

    def _save_high_watermark(
        self, cur: psycopg.Cursor[Any], operation_id: int, table: TableLoad, now: datetime
    ) -> None:
        values = [self.account, operation_id, table.name, table.cursor_field, table.high_watermark, now]
        cur.execute(_SAVE_HIGH_WATERMARK, values)

    def _record_load(
        self, cur: psycopg.Cursor[Any], request: LoadRequest, results: tuple[TableResult, ...], now: datetime
    ) -> None:
        modes = {table.name: table.mode for table in request.tables}
        tables = [{"name": r.name, "mode": modes[r.name], "rows": r.rows, "staged": r.staged} for r in results]
        cur.execute(_RECORD_LOAD, [self.account, request.run_key, request.operation_id, now, json.dumps(tables)])

    # -- reads ------------------------------------------------------------------------------------

    def has_load(self, run_key: str) -> bool:
        """Whether the run's load committed."""
        with self._errors(f"run {run_key}: cannot read the load record"), self._cursor() as cur:
            return self._recorded_load(cur, run_key) is not None

    def high_watermark(self, operation_id: int, table: str) -> str | None:
        """The last committed high watermark of (operation, table), None if there is none."""
        with self._errors(f"cannot read the high watermark of table {table!r}"), self._pool.connection() as conn:
            row = conn.execute(_HIGH_WATERMARK, [self.account, operation_id, table]).fetchone()
        return None if row is None else row[0]

    def columns(self, table: str) -> dict[str, str] | None:
        """Column name -> PostgreSQL type of a warehouse table, in order; None if it does not exist."""
        check_name("table", table)
        with self._errors(f"cannot read the columns of table {table!r}"), self._cursor() as cur:
            found = _columns(cur, self.schema, table)
        return None if found is None else {column.name: column.type for column in found.values()}

    def type_name(self, kind: pa.DataType) -> str | None:
        return postgres_type_name(kind)

    def count(self, table: str) -> int:
        """Rows in a warehouse table; WarehouseError if it does not exist."""
        check_name("table", table)
        with self._errors(f"cannot count table {table!r}"), self._cursor() as cur:
            return _count(cur, f"{quote(self.schema)}.{quote(_resolve(cur, self.schema, table))}")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement (`?` parameters, as on DuckDB), return its rows. For tests and tools: no read-only gate."""
        text, values = _driver_sql(sql, params)
        with self._errors("query failed"), self._cursor() as cur:
            cur.execute(text, values)
            return [tuple(row) for row in cur.fetchall()] if cur.description is not None else []

    # -- read-only access (SQL Explorer, exports) ---------------------------------------------------

    def tables(self) -> list[TableInfo]:
        """The account's tables and views with their columns, by name (staging and `_runyard` are elsewhere)."""
        with self._errors("cannot list the tables"), self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT c.relname, c.relkind IN ('v', 'm'), a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname, a.attnum",
                [self.schema],
            ).fetchall()
        kinds: dict[str, bool] = {}
        columns: dict[str, list[Column]] = {}
        for table, is_view, column, data_type in rows:
            kinds[table] = bool(is_view)
            columns.setdefault(table, [])
            if column is not None:
                columns[table].append(Column(column, data_type))
        return [
            TableInfo(name, "view" if kinds[name] else "table", tuple(columns[name]))
            for name in sorted(kinds, key=str.lower)
        ]

    def read(
        self,
        sql: str,
        *,
        limit: int,
        timeout_seconds: float,
        on_start: Callable[[Callable[[], None]], None] | None = None,
    ) -> QueryResult:
        """One query as the account's reader role in a READ ONLY transaction, at most `limit` rows (see
        Warehouse.read); `statement_timeout` bounds it, `conn.cancel()` stops it."""
        _check_read(sql)
        with self._pool.connection() as conn, _Canceller(self._pool, conn) as canceller:
            if on_start is not None:
                on_start(canceller.interrupt)
            try:
                self._begin_reading(conn, "READ ONLY", timeout_seconds)
                with _OneStatementCursor(conn) as cur:
                    cur.execute(sql)
                    description = cur.description or []
                    rows = [tuple(row) for row in cur.fetchmany(limit + 1)] if cur.description else []
                if canceller.stopped:
                    raise QueryFailed("the query was stopped", interrupted=True)
            except psycopg.errors.QueryCanceled as error:
                raise _canceled(canceller, timeout_seconds, error) from error
            except psycopg.Error as error:
                if _is_transient(error):
                    raise self._pool.unavailable(error) from error
                raise QueryFailed(self._target.scrub(_message(error)), _error_line(error, sql)) from error
            finally:
                _rollback(conn)
        return QueryResult(
            columns=tuple(Column(column.name, column.type_display) for column in description),
            rows=rows[:limit],
            truncated=len(rows) > limit,
        )

    def _begin_reading(self, conn: psycopg.Connection[Any], mode: str, timeout_seconds: float | None) -> None:
        conn.execute(f"BEGIN {mode}")
        conn.execute(f"SET LOCAL ROLE {quote(self.role)}")
        if timeout_seconds is not None:
            milliseconds = max(1, round(timeout_seconds * 1000))
            conn.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])

    def count_rows(self, query: ExportQuery) -> int:
        """The rows an export of `query` gives."""
        with self._pool.connection() as conn:
            try:
                self._begin_reading(conn, "READ ONLY", None)
                with _OneStatementCursor(conn) as cur:
                    select, params = _export_select(cur, self.schema, query, ordered=False)
                    cur.execute(f"SELECT count(*) FROM ({select}) AS _runyard_export", params)  # noqa: S608
                    row = cur.fetchone()
            except psycopg.Error as error:
                if _is_transient(error):
                    raise self._pool.unavailable(error) from error
                raise QueryFailed(self._target.scrub(_message(error))) from error
            finally:
                _rollback(conn)
        return int(row[0]) if row else 0

    @contextmanager
    def export(self, query: ExportQuery) -> Iterator[PostgresExport]:
        """A REPEATABLE READ, READ ONLY transaction as the reader role, reading the rows of `query` in order through
        a server-side cursor."""
        with self._pool.connection() as conn:
            cur = conn.cursor(name="runyard_export")
            try:
                self._begin_reading(conn, "ISOLATION LEVEL REPEATABLE READ READ ONLY", None)
                with conn.cursor() as probe:
                    select, params = _export_select(probe, self.schema, query, ordered=True)
                cur.execute(select, params)
                description = cur.description or []
            except BaseException as error:
                _rollback(conn)
                with suppress(psycopg.Error):
                    cur.close()
                if not isinstance(error, psycopg.Error):
                    raise
                if _is_transient(error):
                    raise self._pool.unavailable(error) from error
                raise QueryFailed(self._target.scrub(_message(error))) from error
            types = [_arrow_type(_type_name(conn, c.type_code), c.precision, c.scale) for c in description]
            columns = tuple(Column(c.name, c.type_display) for c in description)
            exporter = PostgresExport(self._pool, conn, cur, columns, types)
            try:
                yield exporter
            finally:
                with suppress(psycopg.Error):
                    cur.close()
                _rollback(conn)
                exporter.finish()


def _literal(text: str) -> str:
    """A string literal, for the few statements that take no parameters (COMMENT ON)."""
    return "'" + text.replace("'", "''") + "'"


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else ""


def _canceled(canceller: _Canceller, timeout_seconds: float, error: BaseException) -> QueryFailed:
    if not canceller.stopped and "timeout" in str(error):
        return QueryFailed(f"the query ran longer than {timeout_seconds:g} s and was stopped", interrupted=True)
    return QueryFailed("the query was stopped", interrupted=True)


class PostgresExport:
    """The rows of one export, read from the snapshot of its transaction (see PostgresWarehouse.export)."""

    def __init__(
        self,
        pool: _Pool,
        conn: psycopg.Connection[Any],
        cur: psycopg.ServerCursor[Any],
        columns: tuple[Column, ...],
        types: Sequence[pa.DataType],
    ) -> None:
        self._conn = conn
        self._cur = cur
        self.columns = columns
        self._types = list(types)
        self._canceller = _Canceller(pool, conn).__enter__()

    def pages(self, page_rows: int) -> Iterator[pa.Table]:
        """Pages of exactly `page_rows` rows, fetched from the server-side cursor page by page."""
        names = [column.name for column in self.columns]
        while True:
            if self._canceller.stopped:
                raise QueryFailed("the export was stopped", interrupted=True)
            try:
                rows = self._cur.fetchmany(page_rows)
            except psycopg.errors.QueryCanceled as error:
                raise QueryFailed("the export was stopped", interrupted=True) from error
            except psycopg.Error as error:
                if self._canceller.stopped:
                    raise QueryFailed("the export was stopped", interrupted=True) from error
                raise QueryFailed(_message(error)) from error
            if not rows:
                return
            yield _arrow_page(rows, names, self._types)
            if len(rows) < page_rows:
                return

    def interrupt(self) -> None:
        self._canceller.interrupt()

    def finish(self) -> None:
        self._canceller.__exit__(None, None, None)


class PostgresTransform:
    """One step's session on its own connection (see PostgresWarehouse.transform)."""

    def __init__(
        self, warehouse: PostgresWarehouse, conn: psycopg.Connection[Any], run_key: str, canceller: _Canceller
    ) -> None:
        self._warehouse = warehouse
        self._conn = conn
        self._run_key = run_key
        self._canceller = canceller

    def build(self, table: str, sql: str, params: Sequence[object]) -> int:
        """CREATE the run's staging table for `table` AS the SELECT (its `?` parameters bound); its row count.

        The CREATE is put before the SELECT on its first line, so the lines PostgreSQL reports are the SELECT's.
        """
        check_name("table", table)
        _check_select(sql)
        if self._canceller.stopped:
            raise QueryFailed("the query was interrupted", interrupted=True)
        schema = self._warehouse._ensure_run_schema(self._run_key)
        staging = f"{quote(schema)}.{quote(table)}"
        prefix = f"CREATE TABLE {staging} AS "
        driver, server = _qmark_sql(sql) if params else (sql, sql)
        conn = self._conn
        try:
            conn.execute("BEGIN")
            conn.execute(f"DROP TABLE IF EXISTS {staging}")
            with _OneStatementCursor(conn) as cur:
                cur.execute(prefix + driver, list(params) if params else None)
                rows = cur.rowcount
            conn.execute("COMMIT")
        except psycopg.errors.QueryCanceled as error:
            raise QueryFailed("the query was interrupted", interrupted=True) from error
        except psycopg.Error as error:
            if _is_transient(error):
                raise self._warehouse._pool.unavailable(error) from error
            raise QueryFailed(first_line(error), _error_line(error, prefix + server)) from error
        finally:
            _rollback(conn)
        if self._canceller.stopped:
            raise QueryFailed("the query was interrupted", interrupted=True)
        return max(rows, 0)

    def interrupt(self) -> None:
        self._canceller.interrupt()


class PostgresWarehouses:
    """The accounts of one PostgreSQL database, one schema each, opened (and prepared) on first use."""

    def __init__(self, url: str) -> None:
        self.target = Target.parse(url)
        self._lock = threading.Lock()
        self._open: dict[str, PostgresWarehouse] = {}

    def prepare(self) -> str:
        """Create runyard's bookkeeping schema and tables (`runyard db upgrade`); what was prepared, for a person."""
        try:
            conn = psycopg.connect(self.target.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as error:
            raise WarehouseUnavailable(self.target.where, self.target.scrub(first_line(error))) from None
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_PREPARE])
                for statement in _METADATA_DDL:
                    cur.execute(statement)
        except psycopg.Error as error:
            if _is_transient(error):
                raise WarehouseUnavailable(self.target.where, self.target.scrub(first_line(error))) from error
            raise WarehouseError(
                f"cannot prepare the warehouse at {self.target.where}: {self.target.scrub(first_line(error))}"
            ) from error
        finally:
            conn.close()
        return f"PostgreSQL warehouse at {self.target.where} ready (schema {META_SCHEMA})"

    def for_account(self, account: str) -> PostgresWarehouse:
        """The account's warehouse, its schema and reader role created on first use."""
        if not _ACCOUNT.fullmatch(account):
            raise WarehouseError(f"account name {account!r} cannot name a warehouse schema")
        with self._lock:
            warehouse = self._open.get(account)
            if warehouse is None:
                warehouse = PostgresWarehouse(self.target, account)
                self._open[account] = warehouse
            return warehouse

    def opened(self) -> list[PostgresWarehouse]:
        with self._lock:
            return list(self._open.values())

    def sweepable(self) -> list[PostgresWarehouse]:
        """Every opened warehouse: PostgreSQL serves every process at once."""
        return self.opened()

    def close_all(self) -> None:
        """Close every open warehouse; `for_account` opens them again."""
        with self._lock:
            warehouses, self._open = list(self._open.values()), {}
        for warehouse in warehouses:
            warehouse.close()


# -- SQL helpers (cursor in, no state) ------------------------------------------------------------------------------


def _export_select(
    cur: psycopg.Cursor[Any], schema: str, query: ExportQuery, *, ordered: bool
) -> tuple[str, list[object]]:
    """The SELECT of an export (psycopg's `%s` parameters) and its parameters: the source, filtered on its time
    column, in its order."""
    if query.sql is not None:
        _check_read(query.sql)
        # On lines of their own: a final `-- comment` must not swallow the closing parenthesis.
        body = query.sql.strip().rstrip(";").replace("%", "%%")
        source = f"(\n{body}\n) AS {quote(query.source)}"
    else:
        check_name("table", query.source)
        found = _columns(cur, schema, query.source)
        if found is None:
            raise QueryFailed(f"there is no table or view named {query.source!r}")
        source = f"{quote(schema)}.{quote(_resolve(cur, schema, query.source))}"
    tail, params = export_filter(query, quote, "%s", ordered=ordered)
    select = f"SELECT * FROM {source}{tail}"  # noqa: S608
    return select, params


def _stamp(cur: psycopg.Cursor[Any], staging: str, columns: Mapping[str, _Column], column: str, now: datetime) -> None:
    """Give every staged row the load time in `column` (replacing a staged column of that name). A constant column
    default fills the rows without rewriting them."""
    existing = columns.get(_fold(column))
    if existing is not None:
        cur.execute(f"ALTER TABLE {staging} DROP COLUMN {quote(existing.name)}")
    stamp = now.isoformat(sep=" ", timespec="microseconds")  # our own datetime: a safe literal
    cur.execute(f"ALTER TABLE {staging} ADD COLUMN {quote(column)} TIMESTAMP DEFAULT TIMESTAMP '{stamp}'")
    cur.execute(f"ALTER TABLE {staging} ALTER COLUMN {quote(column)} DROP DEFAULT")


def _count(cur: psycopg.Cursor[Any], qualified: str) -> int:
    cur.execute(f"SELECT count(*) FROM {qualified}")  # noqa: S608
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _resolve(cur: psycopg.Cursor[Any], schema: str, table: str) -> str:
    """The name of `table` in `schema` as DuckDB resolves it: the exact name, else the one name equal to it but for
    case; `table` itself when neither exists."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND lower(c.relname) = lower(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        [schema, table],
    )
    names = sorted(str(name) for (name,) in cur.fetchall())
    if table in names or not names:
        return table
    return names[0]


def _columns(cur: psycopg.Cursor[Any], schema: str, table: str, *, exact: bool = False) -> dict[str, _Column] | None:
    """A table's columns keyed by folded name, in order; None if absent (`exact`: no case-insensitive match)."""
    name = table if exact else _resolve(cur, schema, table)
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [schema, name],
    )
    rows = cur.fetchall()
    if not rows:
        cur.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relname = %s",
            [schema, name],
        )
        return {} if cur.fetchone() is not None else None
    return {_fold(column): _Column(column, data_type) for column, data_type in rows}


def _data_columns(columns: Mapping[str, _Column]) -> dict[str, _Column]:
    return {folded: column for folded, column in columns.items() if folded != ROW_COLUMN}


def _keys_unique(cur: psycopg.Cursor[Any], staging: str, primary_key: Sequence[str]) -> bool:
    """True when no primary key repeats in the staged rows (the usual case: no de-duplication needed)."""
    if not primary_key:
        return True
    keys = ", ".join(quote(key) for key in primary_key)
    cur.execute(
        f"SELECT (SELECT count(*) FROM {staging}) = (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {staging}) AS d)"  # noqa: S608
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _select_staged(
    staging: str,
    columns: Mapping[str, _Column],
    primary_key: Sequence[str] = (),
    unique: bool = False,
    *,
    ordered: bool = True,
) -> str:
    """The staged data columns in staging order (`ordered`: the table has `_runyard_row`), one row per primary key
    (the last staged) when keys repeat."""
    names = ", ".join(quote(column.name) for column in columns.values())
    row = quote(ROW_COLUMN)
    order = f" ORDER BY {row}" if ordered else ""
    if primary_key and not unique:
        keys = ", ".join(quote(key) for key in primary_key)
        last = f"{row} DESC" if ordered else "1"
        ranked = f"SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {last}) AS _runyard_rank FROM {staging}"  # noqa: S608
        return f"SELECT {names} FROM ({ranked}) AS s WHERE _runyard_rank = 1{order}"  # noqa: S608
    return f"SELECT {names} FROM {staging}{order}"  # noqa: S608


def _without_deleted(select: str, columns: Mapping[str, _Column], deleted_column: str | None) -> str:
    """The rows of `select` whose deletion flag is not true, without the flag; `select` itself without a flag."""
    if deleted_column is None:
        return select
    flag = quote(deleted_column)
    names = ", ".join(quote(c.name) for f, c in columns.items() if f != _fold(deleted_column))
    return f"SELECT {names} FROM ({select}) AS k WHERE {flag} IS NOT TRUE"  # noqa: S608


def _index_keys(cur: psycopg.Cursor[Any], schema: str, table: str, primary_key: Sequence[str]) -> None:
    """A plain btree index on the merge key, so deleting the staged keys is an index lookup per key."""
    if not primary_key:
        return
    name = f"ry_{_hex(table, *primary_key, length=16)}_key"
    keys = ", ".join(quote(key) for key in primary_key)
    cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(schema)}.{quote(table)} ({keys})")


def _delete_matching_keys(
    target: str, staging: str, primary_key: Sequence[str], target_columns: Mapping[str, _Column]
) -> list[str]:
    """DELETEs of the target rows whose key is staged; NULL keys match NULL keys, as the de-duplication does.

    Staged keys are cast to the target's key types. Rows without a NULL key part match with `IN` (hashable, or an
    index lookup); the rare rows with one with IS NOT DISTINCT FROM, restricted to them.
    """
    keys = [quote(target_columns[_fold(key)].name) for key in primary_key]
    staged = [f"CAST(s.{quote(key)} AS {target_columns[_fold(key)].type})" for key in primary_key]
    columns = ", ".join(keys)
    plain = f"DELETE FROM {target} WHERE ({columns}) IN (SELECT {', '.join(staged)} FROM {staging} AS s)"  # noqa: S608
    same = " AND ".join(f"t.{key} IS NOT DISTINCT FROM {cast}" for key, cast in zip(keys, staged, strict=True))
    nulls = (
        f"DELETE FROM {target} AS t WHERE NOT ({' AND '.join('t.' + k + ' IS NOT NULL' for k in keys)}) "  # noqa: S608
        f"AND EXISTS (SELECT 1 FROM {staging} AS s WHERE {same})"
    )
    return [plain, nulls]


_NUMERIC_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
_FLOATS = ("real", "double precision")


def _wider_type(current: str, staged: str) -> str | None:
    """The type a column of type `current` must widen to so it holds values of type `staged`; None to keep it."""
    if current == staged or current == "text" or current.startswith("character varying"):
        return None
    if staged == "text":
        return "text"
    current_base, staged_base = current.split("(")[0], staged.split("(")[0]
    if current_base in _NUMERIC_RANK and staged_base in _NUMERIC_RANK:
        return staged if _NUMERIC_RANK[staged_base] > _NUMERIC_RANK[current_base] else None
    numeric = (*_NUMERIC_RANK, "numeric")
    if current_base in numeric and staged_base in _FLOATS:
        return "double precision"
    if current == "real" and staged == "double precision":
        return "double precision"
    if current_base in _NUMERIC_RANK and staged_base == "numeric":
        return "numeric"
    if current == "date" and staged_base.startswith("timestamp"):
        return staged
    if current == "timestamp without time zone" and staged == "timestamp with time zone":
        return staged
    return None


def _evolve(
    cur: psycopg.Cursor[Any],
    target: str,
    target_columns: Mapping[str, _Column],
    staging_columns: Mapping[str, _Column],
) -> dict[str, _Column]:
    """Add the staged columns the target lacks and widen the ones whose staged type is wider.

    Type text comes from PostgreSQL's own catalog (format_type), never from user input.
    """
    evolved = dict(target_columns)
    for folded, column in staging_columns.items():
        current = evolved.get(folded)
        if current is None:
            cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote(column.name)} {column.type}")
            evolved[folded] = column
            continue
        wider = _wider_type(current.type, column.type)
        if wider is not None:
            name = quote(current.name)
            cur.execute(f"ALTER TABLE {target} ALTER COLUMN {name} SET DATA TYPE {wider} USING {name}::{wider}")
            evolved[folded] = _Column(current.name, wider)
    return evolved
