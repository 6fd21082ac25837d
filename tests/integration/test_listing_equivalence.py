"""The index-friendly listing queries answer exactly what the plain single-statement ones answered.

runyard.services.listing pages nullable sorts in two parts (the runs with a value, then the others),
sorts durations by the computed runs.duration_seconds, restricts the task search's table and message
lookups to the run, and counts searched tasks with a window function. Each test here compares those
answers, on both backends, with the straightforward query they replace: one statement, `NULLS LAST`,
completed_at - started_at computed per row, correlated EXISTS, a separate count(*).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.search import LIKE_ESCAPE, contains_pattern, normalize_query, prefix_pattern, statuses_starting_with
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.services import listing
from runyard.services.listing import (
    NULLABLE_TASK_SORTS,
    RUN_SORTS,
    TASK_SORTS,
    RunQuery,
    TaskQuery,
    list_runs,
    list_tasks,
)
from runyard.store.database import Store
from runyard.store.tables import SecondsBetween, operations, runs, task_messages, task_tables, tasks
from tests.integration.test_listing import (
    BASE,
    ORDERS,
    RUN_KEYS,
    World,
    _insert_operation,
    _insert_run,
    _insert_task,
    _task,
    build_world,
    expected_order,
)

#: The sorts as they were before runs.duration_seconds: the duration computed per row.
LEGACY_RUN_SORTS: dict[str, Any] = {
    **RUN_SORTS,
    "duration": SecondsBetween(runs.c.started_at, runs.c.completed_at),
}
LEGACY_NULLABLE_RUN_SORTS = frozenset({"started_at", "completed_at", "duration"})


@pytest.fixture
def world(store: Store) -> World:
    """test_listing's world, plus two operations whose configuration ids differ only by case from "payroll"
    (the Operation sort ties them, so their runs interleave by id with payroll's), with a few runs each."""
    world = build_world(store)
    with store.write() as conn:
        twins = [
            _insert_operation(conn, world.acme, configuration_id, environment)
            for environment, configuration_id in (("prod", "PAYROLL"), ("dev", "payroll"))
        ]
        for i in range(6):
            started = BASE + timedelta(hours=5, minutes=7 * i)
            run: dict[str, Any] = {
                "account_id": world.acme,
                "operation_id": twins[i % 2],
                "run_type": RunType.DESTRUCTIVE if i % 3 else RunType.INCREMENTAL,
                "status": RunStatus.FAILED if i % 2 else RunStatus.COMPLETED,
                "created_at": started,
                "started_at": started,
                "completed_at": started + timedelta(seconds=60 + i),
                "message_count": 0,
            }
            run["id"] = _insert_run(conn, run)
            run["configuration_id"] = ("PAYROLL", "payroll")[i % 2]
            world.runs.append(run)
    return world


#: Both of list_runs's SQLite plans, and PostgreSQL's one (its planner chooses).
EVERY_PLAN = pytest.mark.parametrize(
    ("database_url", "sqlite_plan"),
    [("sqlite", "sort after filter"), ("sqlite", "walk the sort index"), ("postgresql", "the planner's choice")],
    indirect=True,
)


@pytest.fixture
def sqlite_plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The plan under test: this world's lists are small, so SQLite's index walk is forced."""
    if request.param == "walk the sort index":
        monkeypatch.setattr(listing, "SQLITE_SORT_AFTER_FILTER_MAX", -1)
    return str(request.param)


@pytest.fixture
def conn(store: Store) -> Iterator[Connection]:
    with store.read() as connection:
        yield connection


def _legacy_runs(conn: Connection, query: RunQuery, conditions: list[Any]) -> tuple[list[int], int]:
    key = LEGACY_RUN_SORTS[query.sort]
    ordered = key.desc() if query.order == "desc" else key.asc()
    if query.sort in LEGACY_NULLABLE_RUN_SORTS:
        ordered = ordered.nulls_last()
    ids = (
        conn.execute(
            sa.select(runs.c.id)
            .join(operations, operations.c.id == runs.c.operation_id)
            .where(*conditions)
            .order_by(ordered, runs.c.id.desc() if query.order == "desc" else runs.c.id.asc())
            .limit(query.page_size)
            .offset((query.page - 1) * query.page_size)
        )
        .scalars()
        .all()
    )
    total = conn.execute(sa.select(sa.func.count()).select_from(runs).where(*conditions)).scalar_one()
    return list(ids), int(total)


def _filters(world: World) -> list[dict[str, Any]]:
    operation = next(iter(world.operations))
    return [
        {},
        {"status": RunStatus.COMPLETED},
        {"operation_id": operation},
        {"operation_id": operation, "run_type": RunType.INCREMENTAL},
        {"status": RunStatus.RUNNING},
        {"started_from": BASE + timedelta(hours=1), "started_to": BASE + timedelta(hours=3)},
    ]


def _conditions(world: World, filters: dict[str, Any]) -> list[Any]:
    conditions: list[Any] = [runs.c.account_id == world.acme]
    if "operation_id" in filters:
        conditions.append(runs.c.operation_id == filters["operation_id"])
    if "status" in filters:
        conditions.append(runs.c.status == filters["status"].value)
    if "run_type" in filters:
        conditions.append(runs.c.run_type == filters["run_type"].value)
    if "started_from" in filters:
        conditions += [runs.c.started_at >= filters["started_from"], runs.c.started_at <= filters["started_to"]]
    return conditions


@EVERY_PLAN
def test_runs_pages_equal_the_single_statement_ones(conn: Connection, world: World, sqlite_plan: str) -> None:
    for filters in _filters(world):
        conditions = _conditions(world, filters)
        for sort in RUN_SORTS:
            for order in ORDERS:
                for page_size in (2, 7):
                    for page in range(1, len(world.runs) // page_size + 3):
                        query = RunQuery(
                            account_id=world.acme, sort=sort, order=order, page=page, page_size=page_size, **filters
                        )
                        found = list_runs(conn, query)
                        expected_ids, expected_total = _legacy_runs(conn, query, conditions)
                        assert [run.id for run in found.items] == expected_ids, (filters, sort, order, page_size, page)
                        assert found.total == expected_total


@EVERY_PLAN
def test_nullable_sorts_walk_every_run_once_with_nulls_last(conn: Connection, world: World, sqlite_plan: str) -> None:
    for sort in ("started_at", "completed_at", "duration"):
        key = RUN_KEYS[sort]
        assert any(key(row) is None for row in world.runs), sort  # the world has runs without a value
        for order in ORDERS:
            for page_size in (1, 2, 5, 200):
                seen: list[int] = []
                page = 1
                while True:
                    query = RunQuery(account_id=world.acme, sort=sort, order=order, page=page, page_size=page_size)
                    found = list_runs(conn, query)
                    assert found.total == len(world.runs)
                    if not found.items:
                        break
                    seen += [run.id for run in found.items]
                    page += 1
                assert seen == expected_order(world.runs, key, order), (sort, order, page_size)


def test_the_stored_duration_is_the_time_between_start_and_end(store: Store, world: World) -> None:
    computed = SecondsBetween(runs.c.started_at, runs.c.completed_at)
    with store.read() as conn:
        rows = conn.execute(sa.select(runs.c.id, runs.c.duration_seconds, computed)).all()
    assert any(stored is None for _, stored, _ in rows)
    assert any(stored is not None for _, stored, _ in rows)
    for run_id, stored, expected in rows:
        assert stored == expected, run_id
    by_id = {run["id"]: run for run in world.runs}
    for run_id, stored, _ in rows:
        if run_id in by_id:
            run = by_id[run_id]
            if run["started_at"] is None or run["completed_at"] is None:
                assert stored is None
            else:
                assert stored == pytest.approx((run["completed_at"] - run["started_at"]).total_seconds(), abs=1e-3)
    # It follows the times it is computed from.
    running = next(run for run in world.runs if run["status"] is RunStatus.RUNNING)
    with store.write() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.id == running["id"])
            .values(completed_at=running["started_at"] + timedelta(seconds=90.25))
        )
    with store.read() as conn:
        stored = conn.execute(sa.select(runs.c.duration_seconds).where(runs.c.id == running["id"])).scalar_one()
    assert stored == pytest.approx(90.25, abs=1e-3)


# --- tasks --------------------------------------------------------------------------------------------------------


def _legacy_search(search: str | None) -> Any:
    text = normalize_query(search)
    if not text:
        return None
    contains = contains_pattern(text)
    rules: list[Any] = [
        tasks.c.initials.like(prefix_pattern(text), escape=LIKE_ESCAPE),
        sa.func.lower(tasks.c.name).like(contains, escape=LIKE_ESCAPE),
        sa.exists().where(
            task_tables.c.task_id == tasks.c.id,
            sa.func.lower(task_tables.c.table_name).like(contains, escape=LIKE_ESCAPE),
        ),
        sa.exists().where(
            task_messages.c.task_id == tasks.c.id,
            sa.func.lower(task_messages.c.text).like(contains, escape=LIKE_ESCAPE),
        ),
    ]
    statuses = [status.value for status in statuses_starting_with(text, TaskStatus)]
    if statuses:
        rules.append(tasks.c.status.in_(statuses))
    return sa.or_(*rules)


def _legacy_tasks(conn: Connection, query: TaskQuery) -> tuple[list[int], int]:
    conditions: list[Any] = [tasks.c.run_id == query.run_id]
    searched = _legacy_search(query.search)
    if searched is not None:
        conditions.append(searched)
    key = TASK_SORTS[query.sort]
    ordered = key.desc() if query.order == "desc" else key.asc()
    if query.sort in NULLABLE_TASK_SORTS:
        ordered = ordered.nulls_last()
    ids = (
        conn.execute(
            sa.select(tasks.c.id)
            .where(*conditions)
            .order_by(ordered, tasks.c.id.desc() if query.order == "desc" else tasks.c.id.asc())
            .limit(query.page_size)
            .offset((query.page - 1) * query.page_size)
        )
        .scalars()
        .all()
    )
    total = conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*conditions)).scalar_one()
    return list(ids), int(total)


SEARCHES = (None, "", "mc", "pto", "wait", "comp", "endpoint_0", "Quota", "hrx", "rate", "%", "_", "zzz-nothing")


def test_task_pages_equal_the_single_statement_ones(conn: Connection, world: World) -> None:
    for search in SEARCHES:
        for sort in ("position", "name", "duration", "status"):
            for order in ORDERS:
                for page_size in (1, 4, 500):
                    for page in (1, 2, 3, 40):
                        query = TaskQuery(
                            run_id=world.detail_run,
                            account_id=world.acme,
                            search=search,
                            sort=sort,
                            order=order,
                            page=page,
                            page_size=page_size,
                        )
                        found = list_tasks(conn, query)
                        expected_ids, expected_total = _legacy_tasks(conn, query)
                        assert [task.id for task in found.items] == expected_ids, (search, sort, order, page_size, page)
                        assert found.total == expected_total, (search, sort, order, page_size, page)


def test_a_page_past_the_last_match_keeps_the_total(conn: Connection, world: World) -> None:
    first = list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, search="mc", page_size=1))
    assert first.total >= 2
    beyond = TaskQuery(run_id=world.detail_run, account_id=world.acme, search="mc", page=first.total + 5, page_size=1)
    found = list_tasks(conn, beyond)
    assert found.items == ()
    assert found.total == first.total


def test_the_search_reads_only_the_runs_own_tables_and_messages(store: Store, world: World) -> None:
    other_run = world.runs[1]["id"]
    with store.write() as conn:
        _insert_task(
            conn,
            other_run,
            {
                **_task("Other [x]", TaskStatus.COMPLETED, tables=[("zqxj_table", 1)], messages=["zqxj message"]),
                "position": 99,
                "attempt": 1,
                "records": 0,
                "started_at": BASE,
                "completed_at": BASE,
            },
        )
    with store.read() as conn:
        for text in ("zqxj_table", "zqxj message"):
            mine = list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, search=text))
            assert (mine.items, mine.total) == ((), 0)
            theirs = list_tasks(conn, TaskQuery(run_id=other_run, account_id=world.acme, search=text))
            assert [task.name for task in theirs.items] == ["Other [x]"]
            assert theirs.total == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_finds_a_few_runs_by_their_filter_not_by_walking_the_sort_index(store: Store, world: World) -> None:
    statements: list[tuple[str, Any]] = []

    def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT RUNS.ID"):
            statements.append((statement, parameters))

    with store.read() as conn:
        sa.event.listen(conn, "before_cursor_execute", _record)
        query = RunQuery(account_id=world.acme, status=RunStatus.RUNNING, sort="started_at", order="desc")
        found = list_runs(conn, query)
        sa.event.remove(conn, "before_cursor_execute", _record)
        assert [run.status for run in found.items] == [RunStatus.RUNNING]
        assert statements
        for statement, parameters in statements:
            plan = " ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "ix_runs_account_id_started_at" not in plan, plan
