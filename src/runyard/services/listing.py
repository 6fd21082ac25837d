"""The API Runs, API Run Details and Data Loads lists: filtered, searched, sorted and paged in SQL.

Spec 000: the API Runs page filters runs by data source (operation), status and type and sorts them by any
column; the API Run Details page searches a run's tasks (runyard.domain.search) and sorts and pages them.

Only allow-listed sort keys reach SQL, and every value a person types is a bound parameter. Text sorts
compare lowercased text byte by byte on both backends; nulls sort last whichever the order; ties are
broken by id in the same direction as the order, so that `desc` is `asc` reversed (apart from the nulls).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from runyard.domain.search import LIKE_ESCAPE, contains_pattern, normalize_query, prefix_pattern, statuses_starting_with
from runyard.domain.statuses import RunStatus, RunType, TaskStatus, Trigger
from runyard.errors import InvalidInput, NotFound
from runyard.services.views import RunView, TaskMessage, TaskView
from runyard.store.tables import (
    SecondsBetween,
    data_loads,
    operations,
    run_counts,
    runs,
    task_messages,
    task_tables,
    tasks,
)

T = TypeVar("T")
Order = Literal["asc", "desc"]

RUN_PAGE_SIZE_MAX = 200
TASK_PAGE_SIZE_MAX = 500
LOAD_PAGE_SIZE_MAX = 200


# --- SQL building blocks that differ between SQLite and PostgreSQL ---------------------------------------------


class TextSortKey(FunctionElement[str]):
    """lower(text), compared byte by byte: PostgreSQL's locale collation would otherwise order differently."""

    type = sa.String()
    name = "text_sort_key"
    inherit_cache = True


@compiles(TextSortKey, "postgresql")
def _text_sort_key_postgresql(element: TextSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'


@compiles(TextSortKey)
def _text_sort_key_default(element: TextSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"  # SQLite compares with BINARY


class NotIndexed(FunctionElement[Any]):
    """The column itself, written `+column` on SQLite so that its planner cannot use an index on it there.

    SQLite documents unary `+` as the way to take a term away from its planner, which, without statistics
    (runyard does not ANALYZE), cannot tell a filter matching one run from one matching most of them.
    """

    name = "not_indexed"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(NotIndexed, "sqlite")
def _not_indexed_sqlite(element: NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


@compiles(NotIndexed)
def _not_indexed_default(element: NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


# --- pages and their requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `total` counts every matching row, not only this page's."""

    items: tuple[T, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages the whole list takes (0 when it is empty)."""
        return math.ceil(self.total / self.page_size)


def _check_paging(page: int, page_size: int, page_size_max: int) -> None:
    if page < 1:
        raise InvalidInput("page", f"must be 1 or more, not {page}")
    if not 1 <= page_size <= page_size_max:
        raise InvalidInput("page_size", f"must be between 1 and {page_size_max}, not {page_size}")


def _check_order(order: str) -> None:
    if order not in ("asc", "desc"):
        raise InvalidInput("order", "must be 'asc' or 'desc'")


def _check_sort(sort: str, allowed: Iterable[str]) -> None:
    names = list(allowed)
    if sort not in names:
        raise InvalidInput("sort", f"cannot sort by {sort[:50]!r}; allowed: {', '.join(names)}")


def _check_aware(field: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise InvalidInput(field, "must include a time zone")


def _offset(page: int, page_size: int) -> int:
    return (page - 1) * page_size


def _ordering(
    key: ColumnElement[Any], tie_break: ColumnElement[Any], order: Order, *, nullable: bool = True
) -> list[ColumnElement[Any]]:
    # NULLS LAST only where nulls can be: on PostgreSQL it stops an index from serving the sort.
    ordered = key.desc() if order == "desc" else key.asc()
    tie = tie_break.desc() if order == "desc" else tie_break.asc()
    return [ordered.nulls_last() if nullable else ordered, tie]


# --- the API Runs page --------------------------------------------------------------------------------------------


#: Sort key (an API Runs page column) -> what it sorts on.
RUN_SORTS: dict[str, ColumnElement[Any]] = {
    "id": runs.c.id,
    "operation": TextSortKey(operations.c.configuration_id),
    "type": runs.c.run_type,
    "status": runs.c.status,
    "started_at": runs.c.started_at,
    "completed_at": runs.c.completed_at,
    "duration": runs.c.duration_seconds,  # completed_at - started_at, stored (or indexed) by the database
    "messages": runs.c.message_count,
    "created_at": runs.c.created_at,
}
NULLABLE_RUN_SORTS = frozenset({"started_at", "completed_at", "duration"})


@dataclass(frozen=True)
class RunQuery:
    """What the API Runs page asks for. Time bounds are inclusive and must be aware datetimes.

    `account_id` None lists every account's runs: only the CLI's direct mode on the local store does that.
    """

    account_id: int | None
    operation_id: int | None = None
    status: RunStatus | None = None
    run_type: RunType | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    completed_from: datetime | None = None
    completed_to: datetime | None = None
    sort: str = "id"
    order: Order = "desc"
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        _check_sort(self.sort, RUN_SORTS)
        _check_order(self.order)
        _check_paging(self.page, self.page_size, RUN_PAGE_SIZE_MAX)
        for name in ("started_from", "started_to", "completed_from", "completed_to"):
            _check_aware(name, getattr(self, name))


@dataclass(frozen=True)
class RunRow(RunView):
    """A run as the API Runs page lists it: the run, with how many task messages it has.

    `duration_seconds` (from RunView) is completed_at - started_at, None until the run has ended.
    """

    message_count: int = 0


def _key_conditions(table: sa.Table, query: RunQuery, weak: Any = None) -> list[ColumnElement[bool]]:
    """`query`'s account, operation, status and type filters on `table` (runs or run_counts: same column names).

    `weak`, when given, wraps a filter that usually keeps more rows when one that keeps fewer is there: an
    operation's runs are fewer than a status's, which are fewer than a type's.
    """
    status, run_type = table.c.status, table.c.run_type
    if weak is not None and query.operation_id is not None:
        status, run_type = weak(status), weak(run_type)
    elif weak is not None and query.status is not None:
        run_type = weak(run_type)
    conditions: list[ColumnElement[bool]] = []
    if query.account_id is not None:
        conditions.append(table.c.account_id == query.account_id)
    if query.operation_id is not None:
        conditions.append(table.c.operation_id == query.operation_id)
    if query.status is not None:
        conditions.append(status == query.status.value)
    if query.run_type is not None:
        conditions.append(run_type == query.run_type.value)
    return conditions


def _has_time_bounds(query: RunQuery) -> bool:
    return any((query.started_from, query.started_to, query.completed_from, query.completed_to))


def _run_conditions(query: RunQuery, backend: str) -> list[ColumnElement[bool]]:
    """The filters of `query` as SQL conditions on runs.

    On SQLite, whose planner has no statistics, a filter that usually keeps more runs cannot pick the index
    when one that keeps fewer is there (`NotIndexed`); it is still checked, within the chosen index when that
    holds the column.
    """
    conditions = _key_conditions(runs, query, NotIndexed if backend == "sqlite" else None)
    bounds = (
        (runs.c.started_at, query.started_from, query.started_to),
        (runs.c.completed_at, query.completed_from, query.completed_to),
    )
    for column, start, end in bounds:
        if start is not None:
            conditions.append(column >= start)
        if end is not None:
            conditions.append(column <= end)
    return conditions


#: What a runs page reads: the run as RunView has it, its operation's identity, its message count (not the
#: columns nobody shows, such as updated_at: fewer values to convert per row).
_RUN_ROW_COLUMNS: tuple[ColumnElement[Any], ...] = (
    runs.c.id,
    runs.c.run_key,
    runs.c.job_name,
    runs.c.account_id,
    runs.c.operation_id,
    operations.c.configuration_id,
    operations.c.configuration_type,
    operations.c.environment,
    runs.c.run_type,
    runs.c.trigger,
    runs.c.status,
    runs.c.retry_of,
    runs.c.blocked_by,
    runs.c.message,
    runs.c.created_at,
    runs.c.started_at,
    runs.c.completed_at,
    runs.c.cancel_requested_at,
    runs.c.message_count,
)


def _run_row(row: Row[Any]) -> RunRow:
    (
        run_id,
        run_key,
        job_name,
        account_id,
        operation_id,
        configuration_id,
        configuration_type,
        environment,
        run_type,
        trigger,
        status,
        retry_of,
        blocked_by,
        message,
        created_at,
        started_at,
        completed_at,
        cancel_requested_at,
        message_count,
    ) = tuple(row)
    return RunRow(
        id=run_id,
        run_key=run_key,
        job_name=job_name,
        account_id=account_id,
        operation_id=operation_id,
        configuration_id=configuration_id,
        configuration_type=configuration_type,
        environment=environment,
        run_type=RunType(run_type),
        trigger=Trigger(trigger),
        status=RunStatus(status),
        retry_of=retry_of,
        blocked_by=blocked_by,
        message=message,
        created_at=created_at,
        started_at=started_at,
        completed_at=completed_at,
        cancel_requested_at=cancel_requested_at,
        message_count=int(message_count),
    )


def _runs_select(conditions: Sequence[ColumnElement[bool]]) -> sa.Select[Any]:
    return sa.select(*_RUN_ROW_COLUMNS).join(operations, operations.c.id == runs.c.operation_id).where(*conditions)


def run_row(conn: Connection, run_id: int, *, account_id: int | None = None) -> RunRow:
    """One run as the lists show it (with its message count); another account's run is NotFound."""
    conditions = [runs.c.id == run_id]
    if account_id is not None:
        conditions.append(runs.c.account_id == account_id)
    row = conn.execute(_runs_select(conditions)).first()
    if row is None:
        raise NotFound("run", run_id)
    return _run_row(row)


def _count_runs(conn: Connection, conditions: Sequence[ColumnElement[bool]]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(runs).where(*conditions)).scalar_one())


def _runs_per_operation(conn: Connection, query: RunQuery, conditions: Sequence[ColumnElement[bool]]) -> dict[int, int]:
    """How many runs of each operation match `query` (operations without any left out): from run_counts, or,
    when the query has time bounds, which only the runs themselves can answer, counted within an index."""
    if _has_time_bounds(query):
        counted = sa.select(runs.c.operation_id, sa.func.count()).where(*conditions).group_by(runs.c.operation_id)
    else:
        counted = (
            sa.select(run_counts.c.operation_id, sa.func.sum(run_counts.c.runs))
            .where(*_key_conditions(run_counts, query))
            .group_by(run_counts.c.operation_id)
        )
    return {operation_id: int(count) for operation_id, count in conn.execute(counted) if count}


def _total_runs(conn: Connection, query: RunQuery, conditions: Sequence[ColumnElement[bool]]) -> int:
    """How many runs match `query`: the sum of a few run_counts rows, or a count within an index (time bounds)."""
    if _has_time_bounds(query):
        return _count_runs(conn, conditions)
    summed = sa.select(sa.func.coalesce(sa.func.sum(run_counts.c.runs), 0)).where(*_key_conditions(run_counts, query))
    return int(conn.execute(summed).scalar_one())


def _runs_nulls_last(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    key: ColumnElement[Any],
    order: Order,
    offset: int,
    limit: int,
) -> list[Row[Any]]:
    """A page of runs sorted by a nullable `key`, nulls last: the runs with a value, then the others by id.

    Two plain sorts instead of one `ORDER BY key NULLS LAST`, so that an index on `key` serves each, in both
    directions and on both backends: PostgreSQL walks a b-tree backwards as `DESC NULLS FIRST`, so it would
    otherwise read and sort every matching run for `DESC NULLS LAST`. The runs without a value are only read
    when the page reaches them (the last pages).
    """
    valued = list(
        conn.execute(
            _runs_select([*conditions, key.is_not(None)])
            .order_by(*_ordering(key, runs.c.id, order, nullable=False))
            .limit(limit)
            .offset(offset)
        )
    )
    if len(valued) == limit:
        return valued
    # This page ends the valued runs: the others start right after them, or `offset - valued runs` into theirs.
    skip = 0 if valued or offset == 0 else offset - _count_runs(conn, [*conditions, key.is_not(None)])
    nulls = conn.execute(
        _runs_select([*conditions, key.is_(None)])
        .order_by(runs.c.id.desc() if order == "desc" else runs.c.id.asc())
        .limit(limit - len(valued))
        .offset(skip)
    )
    return valued + list(nulls)


#: On SQLite, a list of at most this many runs is sorted after its filters find it, not read in the order of an
#: index on the sort key: see list_runs.
SQLITE_SORT_AFTER_FILTER_MAX = 2000


def list_runs(conn: Connection, query: RunQuery) -> Page[RunRow]:
    """The runs of `query.account_id` that pass its filters, sorted and paged.

    The total comes first: the sum of a few run_counts rows, or, when the query has time bounds, a count within
    an index. On SQLite it also chooses the plan, which SQLite's planner,
    without statistics, cannot: it prefers walking the sort key's index and skipping the runs the filters
    reject, which reads the whole index when they keep few (the one running run, sorted by start). So when few
    runs match, the sort key is kept from its index and SQLite finds them by their filters, then sorts them.
    """
    conditions = _run_conditions(query, conn.dialect.name)
    offset, limit = _offset(query.page, query.page_size), query.page_size
    counts = _runs_per_operation(conn, query, conditions) if query.sort == "operation" else None
    total = sum(counts.values()) if counts is not None else _total_runs(conn, query, conditions)
    key = RUN_SORTS[query.sort]
    if conn.dialect.name == "sqlite" and total <= SQLITE_SORT_AFTER_FILTER_MAX:
        key = NotIndexed(key)
    rows: list[Row[Any]]
    if offset >= total:
        rows = []  # past the last page: nothing to read (an index walk would read all of it to find nothing)
    elif counts is not None:
        rows = _runs_by_operation(conn, conditions, counts, query.order, offset, limit)
    elif query.sort in NULLABLE_RUN_SORTS:
        rows = _runs_nulls_last(conn, conditions, key, query.order, offset, limit)
    else:
        rows = list(
            conn.execute(
                _runs_select(conditions)
                .order_by(*_ordering(key, runs.c.id, query.order, nullable=False))
                .limit(limit)
                .offset(offset)
            )
        )
    items = tuple(_run_row(row) for row in rows)
    return Page(items=items, total=total, page=query.page, page_size=query.page_size)


def _runs_by_operation(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    counts: dict[int, int],
    order: Order,
    offset: int,
    limit: int,
) -> list[Row[Any]]:
    """A page of the runs sorted by their operation's configuration id (RUN_SORTS["operation"]), then id.

    No index serves a sort on another table's column: the plain query reads and sorts every matching run. An
    account has few operations, though, so this takes the matching runs of each (`counts`), has the database
    order the operations by the sort key, and reads the page from the operations it falls in, each in id order.
    Operations whose keys are equal are one group: their runs interleave by id.
    """
    key = RUN_SORTS["operation"]
    ordered = conn.execute(
        sa.select(operations.c.id, key)
        .where(operations.c.id.in_(list(counts)))
        .order_by(key.desc() if order == "desc" else key.asc())
    ).all()
    groups: list[list[int]] = []
    previous: object = None
    for operation_id, sort_key in ordered:
        if not groups or sort_key != previous:
            groups.append([])
        groups[-1].append(operation_id)
        previous = sort_key
    page: list[Row[Any]] = []
    skip = offset
    for group in groups:
        size = sum(counts[operation_id] for operation_id in group)
        if skip >= size:
            skip -= size
            continue
        page += conn.execute(
            _runs_select([*conditions, runs.c.operation_id.in_(group)])
            .order_by(runs.c.id.desc() if order == "desc" else runs.c.id.asc())
            .limit(limit - len(page))
            .offset(skip)
        ).all()
        skip = 0
        if len(page) >= limit:
            break
    return page


# --- the API Run Details page -------------------------------------------------------------------------------------


#: Sort key (an API Run Details page column) -> what it sorts on.
TASK_SORTS: dict[str, ColumnElement[Any]] = {
    "position": tasks.c.position,
    "name": TextSortKey(tasks.c.name),
    "status": tasks.c.status,
    "started_at": tasks.c.started_at,
    "duration": SecondsBetween(tasks.c.started_at, tasks.c.completed_at),
    "records": tasks.c.records_processed,
    "messages": tasks.c.message_count,
    "attempt": tasks.c.attempt,
}
NULLABLE_TASK_SORTS = frozenset({"started_at", "duration"})


@dataclass(frozen=True)
class TaskQuery:
    """What the API Run Details page asks for: one run's tasks, optionally searched (runyard.domain.search)."""

    run_id: int
    account_id: int  # the run must belong to this account, or it is not found
    search: str | None = None
    sort: str = "position"
    order: Order = "asc"
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        _check_sort(self.sort, TASK_SORTS)
        _check_order(self.order)
        _check_paging(self.page, self.page_size, TASK_PAGE_SIZE_MAX)


# The search's statements are built once, per sort and order, with the run, the patterns and the statuses as bound
# parameters: building them per request cost more Python time than reading a 50-task page.
_RUN_ID = sa.bindparam("run_id", type_=sa.Integer)
_PREFIX = sa.bindparam("prefix", type_=sa.String)
_CONTAINS = sa.bindparam("contains", type_=sa.String)
_STATUSES = sa.bindparam("statuses", expanding=True, type_=sa.String)
_RUN_OF_ACCOUNT = sa.select(runs.c.id).where(runs.c.id == _RUN_ID, runs.c.account_id == sa.bindparam("account_id"))


def _search_rules() -> ColumnElement[bool]:
    """The union of spec 000's five search rules as one SQL condition on the tasks of run :run_id.

    The status rule is decided in Python, not per row: the labels are a fixed list, so it becomes
    `status IN (:statuses)`, the statuses whose label starts with the text (an empty list matches nothing).
    Table names and messages are looked up among the run's rows only (task_tables.run_id and task_messages.run_id
    are their task's run: runyard writes them so), once per query, instead of once per task.
    """
    return sa.or_(
        tasks.c.initials.like(_PREFIX, escape=LIKE_ESCAPE),
        tasks.c.name_lower.like(_CONTAINS, escape=LIKE_ESCAPE),
        tasks.c.id.in_(
            sa.select(task_tables.c.task_id).where(
                task_tables.c.run_id == _RUN_ID, task_tables.c.table_name_lower.like(_CONTAINS, escape=LIKE_ESCAPE)
            )
        ),
        tasks.c.id.in_(
            sa.select(task_messages.c.task_id).where(
                task_messages.c.run_id == _RUN_ID, task_messages.c.text_lower.like(_CONTAINS, escape=LIKE_ESCAPE)
            )
        ),
        tasks.c.status.in_(_STATUSES),
    )


def _search_parameters(search: str | None) -> dict[str, Any] | None:
    """The bound values of _search_rules for `search`; None when nothing is searched."""
    text = normalize_query(search)
    if not text:
        return None
    return {
        "prefix": prefix_pattern(text),
        "contains": contains_pattern(text),
        "statuses": [status.value for status in statuses_starting_with(text, TaskStatus)],
    }


class _TaskStatements(NamedTuple):
    page: sa.Select[Any]  # a page of the run's tasks
    total: sa.Select[Any]  # how many tasks the run has
    matches: sa.Select[Any]  # the ids of a page of the tasks matching the search, each with their total
    total_matches: sa.Select[Any]  # how many tasks match the search (for a page past the last match)


@cache
def _task_statements(sort: str, order: Order) -> _TaskStatements:
    """A run's task statements for this sort and order, built once. The page statements check the run's
    account themselves (an uncorrelated EXISTS, evaluated once): no round trip of its own for that."""
    in_run = tasks.c.run_id == _RUN_ID
    owned = sa.exists(_RUN_OF_ACCOUNT)
    ordering = _ordering(TASK_SORTS[sort], tasks.c.id, order, nullable=sort in NULLABLE_TASK_SORTS)
    offset, limit = sa.bindparam("offset", type_=sa.Integer), sa.bindparam("limit", type_=sa.Integer)
    searched = _search_rules()
    return _TaskStatements(
        page=sa.select(*_TASK_VIEW_COLUMNS).where(in_run, owned).order_by(*ordering).limit(limit).offset(offset),
        total=sa.select(sa.func.count()).select_from(tasks).where(in_run),
        matches=sa.select(tasks.c.id, sa.func.count().over())
        .where(in_run, owned, searched)
        .order_by(*ordering)
        .limit(limit)
        .offset(offset),
        total_matches=sa.select(sa.func.count()).select_from(tasks).where(in_run, searched),
    )


def _require_run(conn: Connection, run_id: int, account_id: int) -> None:
    if conn.execute(_RUN_OF_ACCOUNT, {"run_id": run_id, "account_id": account_id}).first() is None:
        raise NotFound("run", run_id)


# Built once, with the ids as one expanding parameter: building `IN (...)` from a list coerces every value into a
# bound parameter on each call, which costs more than the lookups themselves for a page of 50 tasks.
_TASK_IDS: sa.BindParameter[int] = sa.bindparam("task_ids", expanding=True)
_TABLES_OF = (
    sa.select(task_tables.c.task_id, task_tables.c.table_name, task_tables.c.record_count)
    .where(task_tables.c.task_id.in_(_TASK_IDS))
    .order_by(task_tables.c.id)
)
_MESSAGES_OF = (
    sa.select(task_messages.c.task_id, task_messages.c.level, task_messages.c.text, task_messages.c.created_at)
    .where(task_messages.c.task_id.in_(_TASK_IDS))
    .order_by(task_messages.c.id)
)


def tables_of(conn: Connection, task_ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    tables: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if task_ids:
        for task_id, table_name, record_count in conn.execute(_TABLES_OF, {"task_ids": list(task_ids)}):
            tables[task_id].append((table_name, int(record_count)))
    return tables


def messages_of(conn: Connection, task_ids: Sequence[int]) -> dict[int, list[TaskMessage]]:
    messages: dict[int, list[TaskMessage]] = defaultdict(list)
    if task_ids:
        for task_id, level, text, created_at in conn.execute(_MESSAGES_OF, {"task_ids": list(task_ids)}):
            messages[task_id].append(TaskMessage(level, text, created_at))
    return messages


def task_view(row: Any, tables: Sequence[tuple[str, int]], messages: Sequence[TaskMessage]) -> TaskView:
    return TaskView(
        id=row.id,
        run_id=row.run_id,
        position=row.position,
        name=row.name,
        stage=row.stage,
        metrics_type=row.metrics_type,
        status=TaskStatus(row.status),
        attempt=row.attempt,
        worker_id=row.worker_id,
        started_at=row.started_at,
        completed_at=row.completed_at,
        records_processed=int(row.records_processed),
        reused_from=row.reused_from,
        bytes_processed=int(row.bytes_processed),
        latency_ms=row.latency_ms_last,
        tables=tuple(tables),
        messages=tuple(messages),
    )


#: What a task page reads: the columns of TaskView (not the params, leases and latency statistics).
_TASK_VIEW_COLUMNS: tuple[ColumnElement[Any], ...] = (
    tasks.c.id,
    tasks.c.run_id,
    tasks.c.position,
    tasks.c.name,
    tasks.c.stage,
    tasks.c.metrics_type,
    tasks.c.status,
    tasks.c.attempt,
    tasks.c.worker_id,
    tasks.c.started_at,
    tasks.c.completed_at,
    tasks.c.records_processed,
    tasks.c.reused_from,
    tasks.c.bytes_processed,
    tasks.c.latency_ms_last,
)


def run_tasks(conn: Connection, run_id: int) -> list[TaskView]:
    """Every task of a run, in plan order, with its tables and messages (no account check: the caller's)."""
    rows = conn.execute(sa.select(*_TASK_VIEW_COLUMNS).where(tasks.c.run_id == run_id).order_by(tasks.c.position)).all()
    ids = [row.id for row in rows]
    tables, messages = tables_of(conn, ids), messages_of(conn, ids)
    return [task_view(row, tables[row.id], messages[row.id]) for row in rows]


def get_task(conn: Connection, run_id: int, task_id: int) -> TaskView | None:
    """Task `task_id` of run `run_id` (the caller has checked the run's account), with its tables and messages."""
    row = conn.execute(sa.select(*_TASK_VIEW_COLUMNS).where(tasks.c.id == task_id, tasks.c.run_id == run_id)).first()
    if row is None:
        return None
    return task_view(row, tables_of(conn, [task_id])[task_id], messages_of(conn, [task_id])[task_id])


def list_tasks(conn: Connection, query: TaskQuery) -> Page[TaskView]:
    """A page of a run's tasks (matching `query.search`), each with its tables and messages.

    Raises NotFound when the run does not exist or belongs to another account.
    """
    statements = _task_statements(query.sort, query.order)
    offset = _offset(query.page, query.page_size)
    parameters: dict[str, Any] = {
        "run_id": query.run_id,
        "account_id": query.account_id,
        "offset": offset,
        "limit": query.page_size,
    }
    searched = _search_parameters(query.search)
    if searched is None:
        rows = conn.execute(statements.page, parameters).all()
        if not rows:
            _require_run(conn, query.run_id, query.account_id)  # nothing: is it the run of another account?
        total = int(conn.execute(statements.total, parameters).scalar_one())
    else:
        # The page's ids and the total in one statement: the database evaluates the five rules once per task of
        # the run and returns only the page (a separate count would evaluate them all again; returning every
        # match costs a round trip per row between Python and the driver, which threads contend for).
        parameters |= searched
        found = conn.execute(statements.matches, parameters).all()
        if found:
            total = int(found[0][1])
        else:
            _require_run(conn, query.run_id, query.account_id)
            total = 0 if offset == 0 else int(conn.execute(statements.total_matches, parameters).scalar_one())
        rows = _tasks_by_id(conn, [task_id for task_id, _ in found])
    ids = [row.id for row in rows]
    tables, messages = tables_of(conn, ids), messages_of(conn, ids)
    items = tuple(task_view(row, tables[row.id], messages[row.id]) for row in rows)
    return Page(items=items, total=total, page=query.page, page_size=query.page_size)


_TASKS_BY_ID = sa.select(*_TASK_VIEW_COLUMNS).where(tasks.c.id.in_(_TASK_IDS))


def _tasks_by_id(conn: Connection, ids: Sequence[int]) -> list[Row[Any]]:
    """The tasks of `ids`, in that order."""
    if not ids:
        return []
    found = {row.id: row for row in conn.execute(_TASKS_BY_ID, {"task_ids": list(ids)})}
    return [found[task_id] for task_id in ids]


# --- the Data Loads page ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRow:
    """A data load: what a run made available in the warehouse, with its run's status and operation."""

    id: int
    run_id: int
    operation_id: int
    configuration_id: str
    run_status: RunStatus
    tables: tuple[tuple[str, int], ...]  # (table name, rows)
    rows: int
    created_at: datetime


def _load_row(row: Any) -> LoadRow:
    return LoadRow(
        id=row.id,
        run_id=row.run_id,
        operation_id=row.operation_id,
        configuration_id=row.configuration_id,
        run_status=RunStatus(row.run_status),
        tables=tuple((str(table["name"]), int(table["rows"])) for table in row.tables),
        rows=int(row.rows),
        created_at=row.created_at,
    )


def list_loads(conn: Connection, account_id: int, page: int = 1, page_size: int = 50) -> Page[LoadRow]:
    """The account's data loads, newest first."""
    _check_paging(page, page_size, LOAD_PAGE_SIZE_MAX)
    condition = data_loads.c.account_id == account_id
    rows = conn.execute(
        sa.select(
            data_loads.c.id,
            data_loads.c.run_id,
            data_loads.c.operation_id,
            operations.c.configuration_id,
            runs.c.status.label("run_status"),
            data_loads.c.tables,
            data_loads.c.rows,
            data_loads.c.created_at,
        )
        .join(runs, runs.c.id == data_loads.c.run_id)
        .join(operations, operations.c.id == data_loads.c.operation_id)
        .where(condition)
        .order_by(data_loads.c.id.desc())
        .limit(page_size)
        .offset(_offset(page, page_size))
    ).all()
    total = conn.execute(sa.select(sa.func.count()).select_from(data_loads).where(condition)).scalar_one()
    return Page(items=tuple(_load_row(row) for row in rows), total=int(total), page=page, page_size=page_size)
