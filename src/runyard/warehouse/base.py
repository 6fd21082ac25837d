"""The warehouse interface: what the Data Load needs from DuckDB today and PostgreSQL later.

A load happens in two steps. `stage()` copies one table's Arrow batches into a staging table
owned by the run (any number of times, from any thread). `load()` then moves every staged table
into its target, advances the high watermarks and writes a load record, all in one transaction:
either the whole run is in the warehouse, with its record, or none of it is. A run whose record
exists is never loaded again, which makes a retried Data Load a no-op (exactly once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from runyard.errors import RunyardError, TransientError

if TYPE_CHECKING:
    import pyarrow as pa

LoadMode = Literal["replace", "merge"]
LOAD_MODES: tuple[LoadMode, ...] = ("replace", "merge")
# When each row was loaded (UTC): operation types that load tables stamp their rows with it, so that an export
# can page out what was loaded between two dates (as dlt adds `_dlt_load_id`).
LOADED_AT_COLUMN = "_runyard_loaded_at"


class WarehouseError(RunyardError):
    """The warehouse refused or failed an operation; the message names the table or run."""


class WarehouseBusy(WarehouseError, TransientError):
    """Another process holds the warehouse's file (DuckDB admits one process per file): nothing was done, and
    opening it may work once that process lets it go. `file` names it without the folders above runyard's home
    (`warehouse/<account>.duckdb`); `program` and `pid` are the holder's, when the database says."""

    advice = "Stop that process, or let one process alone run the tasks that use this warehouse"

    def __init__(self, file: str, *, pid: int | None = None, program: str | None = None) -> None:
        self.file = file
        self.pid = pid
        self.program = program
        holder = ", ".join(part for part in (program, f"PID {pid}" if pid is not None else None) if part)
        super().__init__(f"the warehouse file {file} is in use by another process" + (f" ({holder})" if holder else ""))


class WarehouseUnavailable(WarehouseError, TransientError):
    """A shared warehouse (PostgreSQL) could not be reached or gave up on a transaction it may accept later (a lost
    or refused connection, a serialization failure, a deadlock, a shutdown): nothing was committed, and the same
    work may succeed later. `where` names it without credentials (`host:port/database`)."""

    advice = (
        "Check that the warehouse's PostgreSQL server is up and accepts connections from this worker "
        "(RUNYARD_WAREHOUSE_URL), then retry the run"
    )

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"the warehouse at {where} is unavailable: {reason}")


class QueryFailed(WarehouseError):
    """A step's SQL failed: the database's message, and the line of the SQL it points at (1-based), if any."""

    def __init__(self, reason: str, line: int | None = None, interrupted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.interrupted = interrupted


@dataclass(frozen=True)
class TableLoad:
    """One staged table to load.

    `replace` swaps the target for the staged rows. `merge` upserts on `primary_key` (the last
    staged row of a key wins); without a primary key it appends. `high_watermark`, when given,
    is stored for (operation, table) in the same transaction. `deleted_column`, when given, names a
    staged boolean column: a row whose value is true deletes its key from the target and is not
    inserted (the last staged row of a key decides), and the column itself never reaches the target.
    """

    name: str
    mode: LoadMode
    primary_key: tuple[str, ...] = ()
    cursor_field: str | None = None
    high_watermark: str | None = None
    loaded_at_column: str | None = None  # set: every loaded row gets the load's commit time (UTC) in it
    deleted_column: str | None = None  # set: staged rows flagged true in it are deletes (like dlt's hard_delete)


@dataclass(frozen=True)
class LoadRequest:
    """Everything one run loads, committed together."""

    run_key: str
    operation_id: int
    tables: tuple[TableLoad, ...]


@dataclass(frozen=True)
class TableResult:
    """`rows`: rows in the table after the load; `staged`: rows this run staged."""

    name: str
    rows: int
    staged: int


@dataclass(frozen=True)
class LoadResult:
    """`already_loaded`: the run had been loaded before; `tables` then repeats that load's results."""

    already_loaded: bool
    tables: tuple[TableResult, ...]


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class TableInfo:
    """A table or view of an account's warehouse, as the SQL Explorer's schema browser lists it."""

    name: str
    kind: Literal["table", "view"]
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class QueryResult:
    """A read-only query's answer: at most `limit` rows; `truncated` when the query had more."""

    columns: tuple[Column, ...]
    rows: list[tuple[object, ...]]
    truncated: bool


@dataclass(frozen=True)
class ExportQuery:
    """What an export reads: a table, or a declared view's SELECT (`sql`), ordered by its time column and
    filtered on it to [from_time, to_time) when those are given."""

    source: str
    sql: str | None = None
    time_column: str | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None


class ExportReader(Protocol):
    """An export's rows, read once from one consistent snapshot."""

    @property
    def columns(self) -> tuple[Column, ...]: ...

    def pages(self, page_rows: int) -> Iterator[pa.Table]:
        """Pages of exactly `page_rows` rows (the last one shorter; none when there is no row)."""
        ...

    def interrupt(self) -> None:
        """Stop the reading from another thread; `pages` then raises QueryFailed(interrupted)."""
        ...


class Transform(Protocol):
    """One step of a table-to-table run: a session where the run's own tables hide the published ones."""

    def build(self, table: str, sql: str, params: Sequence[object]) -> int:
        """(Re)create the run's staging table for `table` from one SELECT; return its row count (QueryFailed)."""
        ...

    def interrupt(self) -> None:
        """Stop the statement running now (from another thread); build then raises QueryFailed(interrupted)."""
        ...


class Warehouse(Protocol):
    """One account's warehouse."""

    def transform(self, run_key: str, inputs: Sequence[str]) -> AbstractContextManager[Transform]:
        """A session in which the names in `inputs` read the tables this run built for them, not the published
        ones (WarehouseError if one was not built)."""
        ...

    def stage(self, run_key: str, table: str, reader: pa.RecordBatchReader) -> int:
        """(Re)create the run's staging table for `table` from Arrow batches; return its row count."""
        ...

    def load(self, request: LoadRequest) -> LoadResult:
        """Load every table, the high watermarks and a load record in one transaction, or nothing."""
        ...

    def has_load(self, run_key: str) -> bool:
        """Whether the run's load record exists (its load committed)."""
        ...

    def high_watermark(self, operation_id: int, table: str) -> str | None:
        """The last committed high watermark of (operation, table), None if there is none."""
        ...

    def columns(self, table: str) -> dict[str, str] | None:
        """Column name -> type of a warehouse table, in table order; None if it does not exist."""
        ...

    def type_name(self, kind: pa.DataType) -> str | None:
        """The type a loaded column of this Arrow type gets here, spelled as `columns` reports it (None: unknown)."""
        ...

    def count(self, table: str) -> int:
        """Rows in a warehouse table; WarehouseError if it does not exist."""
        ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run one statement and return its rows (tests and tools; not a read-only gate)."""
        ...

    def tables(self) -> list[TableInfo]:
        """The account's tables and views with their columns, by name (runyard's own tables left out)."""
        ...

    def read(
        self,
        sql: str,
        *,
        limit: int,
        timeout_seconds: float,
        on_start: Callable[[Callable[[], None]], None] | None = None,
    ) -> QueryResult:
        """Run one read-only query (a SELECT, a WITH query, or EXPLAIN of one) in a transaction that cannot write.

        QueryFailed carries the database's message; past `timeout_seconds` the query is interrupted. `on_start`
        receives a function that interrupts it from another thread."""
        ...

    def count_rows(self, query: ExportQuery) -> int:
        """How many rows an export of `query` would give (QueryFailed if the source or time column is unknown)."""
        ...

    def export(self, query: ExportQuery) -> AbstractContextManager[ExportReader]:
        """A read-only snapshot of the rows of `query`, in order (QueryFailed if the source or column is unknown)."""
        ...

    def drop_staging(self, run_key: str) -> None:
        """Drop the run's staging tables (after its load, or once the run has ended without one)."""
        ...

    def staged_runs(self) -> set[str]:
        """The run keys that have staging tables."""
        ...

    def close(self) -> None:
        """Release the warehouse; later calls fail."""
        ...


class WarehouseProvider(Protocol):
    """The warehouses of one process, one per account, opened on first use."""

    def for_account(self, account: str) -> Warehouse: ...

    def opened(self) -> Sequence[Warehouse]:
        """The warehouses this process has open (the ones its tasks may have left staging tables in)."""
        ...

    def sweepable(self) -> Sequence[Warehouse]:
        """The opened warehouses a periodic sweep may look at now, without waiting for or taking them from another
        process (DuckDB: the files this process holds at the moment)."""
        ...

    def close_all(self) -> None: ...
