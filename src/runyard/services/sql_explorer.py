"""The SQL Explorer: one read-only query of a user on their account's warehouse, and the queries running now.

Every way in (the API, the web UI, the CLI through the API) comes here. `SqlExplorer.run` picks the caller's
account warehouse, applies the row limit and the timeout of the settings (read on every call), registers the
query under its owner and id so that `stop` can interrupt it from another request, and measures how long it
took. Each query counts against its account's RUNYARD_SQL_QUERIES_PER_MINUTE (services.account_limits: past it,
AccountThrottled, and the query does not run). What may run, and what a query can reach, is the warehouse's
rule (`Warehouse.read`: one SELECT, WITH or EXPLAIN, in a transaction that cannot write, on a database that cannot
touch files); every refusal, database error, timeout or stop is a `QueryFailed` carrying the database's message.

The registry is per process (one per app: `explorer_for`), so a stop reaches a query only in the process that
runs it: with RUNYARD_HTTP_PROCESSES > 1 only the first process holds the warehouses, and the others forward these
requests to it (runyard.forwarding); an app without warehouses and without forwarding refuses (`SqlUnavailable`).

`json_value` and `csv_chunks` turn a result's values into JSON-safe ones and CSV text, for every caller alike.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from runyard.errors import Conflict, InvalidInput, RunyardError
from runyard.services.account_limits import reserve, sql_query_limit
from runyard.services.app_context import AppContext
from runyard.warehouse.base import Column, QueryFailed, TableInfo

QUERY_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_QUERY_ID = re.compile(QUERY_ID_PATTERN)
MAX_SQL_CHARS = 100_000
CSV_ROWS_PER_CHUNK = 1_000
NOT_HERE = (
    "the SQL Explorer is not available in this process: it holds no warehouse (with RUNYARD_HTTP_PROCESSES > 1 "
    "only the first process does); try again, or use one HTTP process"
)


class SqlUnavailable(RunyardError):
    """This process holds no warehouse (an extra HTTP process): the API answers 503."""

    def __init__(self) -> None:
        super().__init__(NOT_HERE)


@dataclass(frozen=True)
class SqlAnswer:
    """A query's answer: at most the limit's rows; `truncated` when the query had more."""

    query_id: str
    columns: tuple[Column, ...]
    rows: list[tuple[object, ...]]
    truncated: bool
    elapsed_ms: float
    limit: int

    @property
    def row_count(self) -> int:
        return len(self.rows)


@dataclass
class _Running:
    """A query in flight: its interrupt once the warehouse has started it, and whether a stop was asked."""

    interrupt: Callable[[], None] | None = None
    stop_asked: bool = False


@dataclass
class RunningQueries:
    """The queries running in this process, by (owner user id, query id): only their owner can stop them."""

    _running: dict[tuple[int, str], _Running] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, owner: int, query_id: str) -> _Running:
        with self._lock:
            if (owner, query_id) in self._running:
                raise Conflict(f"a query with id {query_id!r} is already running: choose another id")
            entry = self._running[(owner, query_id)] = _Running()
            return entry

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._running

    def started(self, entry: _Running, interrupt: Callable[[], None]) -> None:
        """The warehouse started the query: remember how to stop it, and stop it now if that was asked already."""
        with self._lock:
            entry.interrupt = interrupt
            asked = entry.stop_asked
        if asked:
            interrupt()

    def remove(self, owner: int, query_id: str) -> None:
        with self._lock:
            self._running.pop((owner, query_id), None)

    def stop(self, owner: int, query_id: str) -> bool:
        """Stop the owner's query `query_id`; False when they have no such query running."""
        with self._lock:
            entry = self._running.get((owner, query_id))
            if entry is None:
                return False
            entry.stop_asked = True
            interrupt = entry.interrupt
        if interrupt is not None:
            interrupt()
        return True

    def running(self, owner: int) -> list[str]:
        """The ids of the owner's queries running now."""
        with self._lock:
            return sorted(query_id for who, query_id in self._running if who == owner)


class SqlExplorer:
    """Runs users' queries on their account's warehouse (see the module docstring)."""

    def __init__(self, context: AppContext, registry: RunningQueries | None = None) -> None:
        self.context = context
        self.registry = registry if registry is not None else RunningQueries()

    @property
    def row_limit(self) -> int:
        return self.context.settings.sql_row_limit

    @property
    def timeout_seconds(self) -> float:
        return self.context.settings.sql_timeout_seconds

    def available(self) -> bool:
        return self.context.warehouses is not None

    def run(
        self,
        account: str,
        owner: int,
        sql: str,
        *,
        account_id: int,
        limit: int | None = None,
        query_id: str | None = None,
    ) -> SqlAnswer:
        """Run `sql` on `account`'s warehouse for user `owner`: at most `limit` rows (default and maximum: the
        row limit setting), stopped past the timeout setting or by `stop(owner, query_id)`.

        QueryFailed (the database's message) for anything the warehouse refuses or that fails; InvalidInput for a
        limit or query id out of bounds; Conflict when the owner already runs a query with that id; AccountThrottled
        (nothing run) when the account (`account_id`) ran RUNYARD_SQL_QUERIES_PER_MINUTE queries in the last
        minute."""
        warehouses = self.context.warehouses
        if warehouses is None:
            raise SqlUnavailable()
        rows_wanted = self._limit(limit)
        if len(sql) > MAX_SQL_CHARS:
            raise InvalidInput("sql", f"at most {MAX_SQL_CHARS:,} characters")
        if query_id is None:
            query_id = uuid.uuid4().hex
        elif not _QUERY_ID.fullmatch(query_id):
            raise InvalidInput("query_id", "use 1 to 64 letters, digits, '-' or '_'")
        timeout = self.timeout_seconds
        if (owner, query_id) in self.registry:
            raise Conflict(f"a query with id {query_id!r} is already running: choose another id")
        reserve(self.context.store, sql_query_limit(self.context.settings.sql_queries_per_minute), account_id, account)
        entry = self.registry.add(owner, query_id)
        try:
            warehouse = warehouses.for_account(account)
            started = time.perf_counter()
            try:
                result = warehouse.read(
                    sql,
                    limit=rows_wanted,
                    timeout_seconds=timeout,
                    on_start=lambda interrupt: self.registry.started(entry, interrupt),
                )
            except QueryFailed as error:
                if error.reason.startswith(OUT_OF_MEMORY):
                    raise _out_of_memory(error) from error
                raise
            elapsed = (time.perf_counter() - started) * 1000
        finally:
            self.registry.remove(owner, query_id)
        return SqlAnswer(
            query_id=query_id,
            columns=result.columns,
            rows=result.rows,
            truncated=result.truncated,
            elapsed_ms=round(elapsed, 1),
            limit=rows_wanted,
        )

    def stop(self, owner: int, query_id: str) -> bool:
        """Stop the owner's running query `query_id` (it then fails with "the query was stopped"); False if none."""
        return self.registry.stop(owner, query_id)

    def tables(self, account: str) -> list[TableInfo]:
        """The account's tables and views with their columns, by name."""
        warehouses = self.context.warehouses
        if warehouses is None:
            raise SqlUnavailable()
        return warehouses.for_account(account).tables()

    def _limit(self, limit: int | None) -> int:
        ceiling = self.row_limit
        if limit is None:
            return ceiling
        if limit < 1 or limit > ceiling:
            raise InvalidInput("limit", f"must be between 1 and {ceiling:,} (RUNYARD_SQL_ROW_LIMIT)")
        return limit


OUT_OF_MEMORY = "Out of Memory Error"


def _out_of_memory(error: QueryFailed) -> QueryFailed:
    """The warehouse's memory limit reached, in words: what happened, and the database's first line (its advice to
    change settings is left out: nobody can change them here)."""
    first_line = error.reason.strip().splitlines()[0]
    return QueryFailed(f"the query needed more memory than the warehouse allows and was stopped ({first_line})")


_EXPLORERS_LOCK = threading.Lock()


def explorer_for(state: Any, context: AppContext) -> SqlExplorer:
    """The app's one SqlExplorer (kept on `state`, the app's `app.state`), made on first use: the API and the UI
    of one process share its registry, so either can stop a query the other started for the same user."""
    with _EXPLORERS_LOCK:
        explorer = getattr(state, "sql_explorer", None)
        if not isinstance(explorer, SqlExplorer) or explorer.context is not context:
            explorer = SqlExplorer(context)
            state.sql_explorer = explorer
        return explorer


# -- values --------------------------------------------------------------------------------------------------


def json_value(value: object) -> object:
    """`value` as JSON can carry it: dates and times ISO 8601, Decimal, UUID and non-finite floats as text ("NaN",
    "Infinity", "-Infinity"), bytes base64, intervals ISO 8601 durations, lists and mappings recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, timedelta):
        return _duration(0, value.days, round(value.seconds * 1e9 + value.microseconds * 1e3))
    months, days, nanoseconds = (getattr(value, name, None) for name in ("months", "days", "nanoseconds"))
    if isinstance(months, int) and isinstance(days, int) and isinstance(nanoseconds, int):  # Arrow's MonthDayNano
        return _duration(months, days, nanoseconds)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(item) for item in value]
    return str(value)


def _duration(months: int, days: int, nanoseconds: int) -> str:
    """An interval as an ISO 8601 duration (`P1Y2M3DT4H5M6.5S`, `PT0S` when empty); negative parts keep their sign."""
    years, months = _split(months, 12)
    hours, rest = _split(nanoseconds, 3_600 * 10**9)
    minutes, rest = _split(rest, 60 * 10**9)
    seconds = f"{Decimal(rest).scaleb(-9).normalize():f}"
    date_part = "".join(f"{number}{unit}" for number, unit in ((years, "Y"), (months, "M"), (days, "D")) if number)
    time_part = "".join(f"{number}{unit}" for number, unit in ((hours, "H"), (minutes, "M")) if number)
    if rest:
        time_part += f"{seconds}S"
    if not date_part and not time_part:
        return "PT0S"
    return f"P{date_part}" + (f"T{time_part}" if time_part else "")


def _split(value: int, unit: int) -> tuple[int, int]:
    """(whole units, rest), both with the sign of `value`."""
    whole, rest = divmod(abs(value), unit)
    return (whole, rest) if value >= 0 else (-whole, -rest)


def json_rows(rows: Iterable[Sequence[object]]) -> list[list[object]]:
    return [[json_value(value) for value in row] for row in rows]


def cell_text(value: object) -> str:
    """One value as text, as a CSV cell or a table cell shows it: NULL is empty, nested values are JSON."""
    converted = json_value(value)
    if converted is None:
        return ""
    if isinstance(converted, bool):
        return "true" if converted else "false"
    if isinstance(converted, list | dict):
        return json.dumps(converted, ensure_ascii=False, separators=(",", ":"))
    return str(converted)


def csv_chunks(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The result as CSV (RFC 4180, CRLF line ends): the header row of column names, then the rows, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([column.name for column in columns])
    for number, row in enumerate(rows, start=1):
        writer.writerow([cell_text(value) for value in row])
        if number % CSV_ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_text(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> str:
    return "".join(csv_chunks(columns, rows))
