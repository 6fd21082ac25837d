"""What every warehouse backend checks and builds alike: names, run keys, load requests, an export's filter.

The backends differ in how they fold names (DuckDB: ASCII letters only; PostgreSQL: `lower()`) and in their
parameter marks (`?`, `%s`): both are passed in.
"""

from __future__ import annotations

from collections.abc import Callable

from runyard.warehouse.base import LOAD_MODES, ExportQuery, LoadRequest, QueryFailed, WarehouseError

# Staging tables are named `<prefix><run_key>__<table>`: a run's tables are found by the prefix `<run_key>__`, so a run
# key must not hold the separator.
RUN_KEY_SEPARATOR = "__"


def first_line(error: BaseException) -> str:
    """The error's first line, or its class name when it says nothing."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def check_name(kind: str, name: str) -> None:
    if not name or "\x00" in name:
        raise WarehouseError(f"{kind} {name!r} is not a valid name")


def check_run_key(run_key: str) -> None:
    check_name("run key", run_key)
    if RUN_KEY_SEPARATOR in run_key:
        raise WarehouseError(f"run key {run_key!r} must not contain {RUN_KEY_SEPARATOR!r}")


def check_request(request: LoadRequest, fold: Callable[[str], str]) -> None:
    """Valid names and modes, and no table loaded twice under names the backend folds alike."""
    check_run_key(request.run_key)
    seen: dict[str, str] = {}
    for table in request.tables:
        check_name("table", table.name)
        if table.mode not in LOAD_MODES:
            raise WarehouseError(f"table {table.name!r}: load mode {table.mode!r} is not one of {LOAD_MODES}")
        folded = fold(table.name)
        if folded in seen:
            raise WarehouseError(
                f"run {request.run_key}: table {table.name!r} is loaded twice (as {seen[folded]!r} too)"
            )
        seen[folded] = table.name


def export_filter(
    query: ExportQuery, quote: Callable[[str], str], mark: str, *, ordered: bool
) -> tuple[str, list[object]]:
    """What follows `SELECT * FROM <source>` in an export: its time window (`mark` is the backend's parameter
    mark) and, when `ordered`, its order; with the parameters. QueryFailed when a window has no time column."""
    conditions: list[str] = []
    params: list[object] = []
    if query.time_column is not None:
        column = quote(query.time_column)
        if query.from_time is not None:
            conditions.append(f"{column} >= {mark}")
            params.append(query.from_time)
        if query.to_time is not None:
            conditions.append(f"{column} < {mark}")
            params.append(query.to_time)
    elif query.from_time is not None or query.to_time is not None:
        raise QueryFailed(f"{query.source!r} has no time column: fromDate and toDate cannot apply to it")
    tail = " WHERE " + " AND ".join(conditions) if conditions else ""
    if ordered and query.time_column is not None:
        tail += f" ORDER BY {quote(query.time_column)} NULLS FIRST"
    return tail, params
