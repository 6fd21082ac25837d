"""The API Runs, API Run Details and Data Loads lists on SQLite and PostgreSQL (spec 000).

A world of runs and tasks is inserted directly, then every filter, sort, page and search rule is
compared with the same question answered in Python over the inserted rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.search import initials
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.errors import InvalidInput, NotFound
from runyard.services.history import add_message
from runyard.services.listing import (
    RUN_SORTS,
    TASK_SORTS,
    Order,
    Page,
    RunQuery,
    TaskQuery,
    list_loads,
    list_runs,
    list_tasks,
)
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import accounts, data_loads, operations, runs, task_messages, task_tables, tasks

BASE = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ORDERS: tuple[Order, ...] = ("asc", "desc")
INJECTIONS = ("' OR 1=1 --", "name; DROP TABLE tasks", "'); DELETE FROM tasks; --", '" OR ""="')

Row = dict[str, Any]


@dataclass
class World:
    acme: int = 0
    globex: int = 0
    operations: dict[int, str] = field(default_factory=dict)  # acme's: id -> configuration_id
    runs: list[Row] = field(default_factory=list)  # acme's runs
    globex_run: int = 0
    detail_run: int = 0
    tasks: list[Row] = field(default_factory=list)  # the detail run's tasks
    loads: list[Row] = field(default_factory=list)  # acme's data loads


# --- building the world -------------------------------------------------------------------------------------------


def _insert_account(conn: Connection, name: str) -> int:
    return int(conn.execute(accounts.insert().values(name=name, created_at=BASE).returning(accounts.c.id)).scalar_one())


def _insert_operation(conn: Connection, account_id: int, configuration_id: str, environment: str = "prod") -> int:
    values = {
        "account_id": account_id,
        "environment": environment,
        "configuration_type": "tasks",
        "configuration_id": configuration_id,
        "description": "",
        "spec": {},
        "activated": True,
        "archived": False,
        "created_at": BASE,
        "updated_at": BASE,
    }
    return int(conn.execute(operations.insert().values(**values).returning(operations.c.id)).scalar_one())


def _insert_run(conn: Connection, run: Row) -> int:
    key = f"run-{run['account_id']}-{run['created_at'].timestamp()}-{run['operation_id']}"
    values = {
        "account_id": run["account_id"],
        "operation_id": run["operation_id"],
        "run_key": key,
        "job_name": f"job-{key}",
        "run_type": run["run_type"].value,
        "trigger": "manual",
        "status": run["status"].value,
        "message": "",
        "created_at": run["created_at"],
        "started_at": run["started_at"],
        "completed_at": run["completed_at"],
        "updated_at": run["created_at"],
    }
    return int(conn.execute(runs.insert().values(**values).returning(runs.c.id)).scalar_one())


def _task_values(run_id: int, task: Row) -> Row:
    return {
        "run_id": run_id,
        "position": task["position"],
        "name": task["name"],
        "initials": initials(task["name"]),
        "stage": "extraction",
        "metrics_type": "records",
        "executor": "sleep",
        "params": {},
        "required": True,
        "reusable": False,
        "status": task["status"].value,
        "attempt": task["attempt"],
        "max_attempts": 3,
        "started_at": task["started_at"],
        "completed_at": task["completed_at"],
        "records_processed": task["records"],
        "latency_ms_sum": 0.0,
        "latency_count": 0,
        "updated_at": BASE,
    }


def _insert_task(conn: Connection, run_id: int, task: Row) -> int:
    values = _task_values(run_id, task)
    task_id = int(conn.execute(tasks.insert().values(**values).returning(tasks.c.id)).scalar_one())
    for table_name, count in task["tables"]:
        conn.execute(
            task_tables.insert().values(task_id=task_id, run_id=run_id, table_name=table_name, record_count=count)
        )
    for text in task["messages"]:
        add_message(conn, run_id, task_id, "info", text, BASE)  # keeps the message counts, as runyard does
    return task_id


def _completed_run(conn: Connection, account_name: str, configuration_id: str) -> tuple[int, int]:
    """(account, run): a new account with one operation and one completed run of it, without tasks."""
    account = _insert_account(conn, account_name)
    run = {
        "account_id": account,
        "operation_id": _insert_operation(conn, account, configuration_id),
        "run_type": RunType.INCREMENTAL,
        "status": RunStatus.COMPLETED,
        "created_at": BASE,
        "started_at": BASE,
        "completed_at": BASE,
    }
    return account, _insert_run(conn, run)


def _columns(store: Store, table: str) -> set[str]:
    with store.read() as conn:
        return {column["name"] for column in sa.inspect(conn).get_columns(table)}


def _run_rows(rng: random.Random, operation_ids: list[int], account_id: int) -> list[Row]:
    """24 final runs over three operations, then one active run per operation."""
    final = [
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.COMPLETED_WITH_ERRORS,
        RunStatus.CANCELED,
        RunStatus.REJECTED,
    ]
    active = [RunStatus.RUNNING, RunStatus.WAITING_TO_START, RunStatus.CANCELING]
    rows: list[Row] = []
    for i in range(27):
        status = final[i % len(final)] if i < 24 else active[i - 24]
        created = BASE + timedelta(minutes=10 * i)
        start = created + timedelta(seconds=rng.choice([0, 5, 5, 30]))
        started: datetime | None = start
        completed: datetime | None = start + timedelta(seconds=rng.choice([60, 60, 120, 45.5, 300]))
        if status is RunStatus.REJECTED:
            started, completed = None, created
        elif status is RunStatus.WAITING_TO_START:
            started, completed = None, None
        elif not status.is_final:
            completed = None
        rows.append(
            {
                "account_id": account_id,
                "operation_id": operation_ids[i % len(operation_ids)],
                "run_type": rng.choice(list(RunType)),
                "status": status,
                "created_at": created,
                "started_at": started,
                "completed_at": completed,
                "message_count": 0,
            }
        )
    return rows


def _task(
    name: str, status: TaskStatus, *, tables: list[tuple[str, int]] | None = None, messages: list[str] | None = None
) -> Row:
    return {"name": name, "status": status, "tables": tables or [], "messages": messages or []}


def _detail_tasks(rng: random.Random) -> list[Row]:
    named = [
        _task("Process [employees]", TaskStatus.COMPLETED, tables=[("employees_raw", 120)]),
        _task(
            "Process [time_off]",
            TaskStatus.COMPLETED,
            tables=[("time_off_raw", 40)],
            messages=["Rate limited, retried"],
        ),
        _task("Metadata Consolidation [employees]", TaskStatus.COMPLETED),
        _task("Metadata Consolidation [time_off]", TaskStatus.FAILED, messages=["Quota exceeded on the source API"]),
        _task("Data Consolidation [employees]", TaskStatus.COMPLETED_WITH_ERRORS, tables=[("hr_employees_v2", 120)]),
        _task("Ingest [employees]", TaskStatus.RUNNING),
        _task("Ingest [time_off]", TaskStatus.WAITING_TO_START),
        _task("Data Load", TaskStatus.WAITING_TO_START),
        _task("data load", TaskStatus.SKIPPED),  # the same name but for case: a tie on the name sort
        _task("Load 100% [budget]", TaskStatus.CANCELED, tables=[("budget_100pct", 1)]),
        _task("Load 1000 [budget]", TaskStatus.COMPLETED, tables=[("hrXemployees", 3)], messages=["100 rows in 1s"]),
    ]
    generated = [
        _task(
            f"Process [endpoint_{i:02d}]",
            rng.choice([s for s in TaskStatus if s is not TaskStatus.WAITING_TO_START]),
            tables=[(f"endpoint_{i:02d}", i * 10)] if i % 3 == 0 else [],
            messages=[f"page {n} fetched" for n in range(i % 4)],
        )
        for i in range(25)
    ]
    rows = named + generated
    positions = list(range(len(rows)))
    rng.shuffle(positions)  # plan order differs from insertion (id) order
    for row, position in zip(rows, positions, strict=True):
        _time_task(rng, row)
        row["position"] = position
        row["records"] = rng.choice([0, 10, 10, 500, 1000])
        row["attempt"] = rng.choice([0, 1, 1, 2, 3])
    return rows


def _time_task(rng: random.Random, row: Row) -> None:
    status: TaskStatus = row["status"]
    start = BASE + timedelta(seconds=rng.choice([1, 2, 2, 40, 90]))
    started: datetime | None = start
    completed: datetime | None = start + timedelta(seconds=rng.choice([1.5, 30, 30, 60, 90.25]))
    if status is TaskStatus.WAITING_TO_START:
        started, completed = None, None
    elif status is TaskStatus.RUNNING:
        completed = None
    elif status in (TaskStatus.SKIPPED, TaskStatus.CANCELED) and rng.random() < 0.5:
        started = None  # never ran: no duration
    row["started_at"], row["completed_at"] = started, completed


def build_world(store: Store) -> World:
    rng = random.Random(20261123)
    world = World()
    with store.write() as conn:
        world.acme = _insert_account(conn, "acme")
        world.globex = _insert_account(conn, "globex")
        for configuration_id in ("payroll", "Employees", "absences"):
            world.operations[_insert_operation(conn, world.acme, configuration_id)] = configuration_id
        globex_op = _insert_operation(conn, world.globex, "payroll")
        world.runs = _run_rows(rng, list(world.operations), world.acme)
        for run in world.runs:
            run["id"] = _insert_run(conn, run)
            run["configuration_id"] = world.operations[run["operation_id"]]
        world.detail_run = world.runs[0]["id"]
        world.tasks = _detail_tasks(rng)
        for task in world.tasks:
            task["id"] = _insert_task(conn, world.detail_run, task)
        world.runs[0]["message_count"] = sum(len(task["messages"]) for task in world.tasks)
        for i, run in enumerate(world.runs[1:], start=1):
            messages = [f"note {n}" for n in range(i % 4)]
            _insert_task(conn, run["id"], {**_detail_tasks(random.Random(i))[0], "messages": messages, "tables": []})
            run["message_count"] = len(messages)
        globex_rows = _run_rows(rng, [globex_op], world.globex)[:3]
        for run in globex_rows:
            run["id"] = _insert_run(conn, run)
            _insert_task(conn, run["id"], {**_detail_tasks(rng)[0], "messages": ["theirs"]})
        world.globex_run = globex_rows[0]["id"]
        world.loads = _insert_loads(conn, world, globex_rows[0])
    return world


def _insert_loads(conn: Connection, world: World, globex_run: Row) -> list[Row]:
    loads: list[Row] = []
    done = [run for run in world.runs if run["status"] in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS)]
    for n, run in enumerate(done):
        tables = [{"name": f"table_{n}", "rows": n * 3}, {"name": "employees", "rows": 7}]
        values = {
            "account_id": run["account_id"],
            "operation_id": run["operation_id"],
            "run_id": run["id"],
            "tables": tables,
            "rows": n * 3 + 7,
            "created_at": run["completed_at"],
        }
        load_id = int(conn.execute(data_loads.insert().values(**values).returning(data_loads.c.id)).scalar_one())
        loads.append({"id": load_id, "run": run, "tables": tables, "rows": n * 3 + 7})
    conn.execute(
        data_loads.insert().values(
            account_id=world.globex,
            operation_id=globex_run["operation_id"],
            run_id=globex_run["id"],
            tables=[],
            rows=0,
            created_at=BASE,
        )
    )
    return loads


@pytest.fixture
def world(store: Store) -> World:
    return build_world(store)


@pytest.fixture
def conn(store: Store) -> Iterator[Connection]:
    with store.read() as connection:
        yield connection


# --- Python answers to compare with -------------------------------------------------------------------------------


def expected_order(rows: list[Row], key: Callable[[Row], Any], order: Order) -> list[int]:
    """Sorted by `key`, nulls last in both orders, ties by id in the order's direction."""
    present = [row for row in rows if key(row) is not None]
    missing = [row for row in rows if key(row) is None]
    descending = order == "desc"
    present.sort(key=lambda row: (key(row), row["id"]), reverse=descending)
    missing.sort(key=lambda row: row["id"], reverse=descending)
    return [row["id"] for row in present + missing]


def _seconds(row: Row) -> float | None:
    if row["started_at"] is None or row["completed_at"] is None:
        return None
    return float((row["completed_at"] - row["started_at"]).total_seconds())


RUN_KEYS: dict[str, Callable[[Row], Any]] = {
    "id": lambda row: row["id"],
    "operation": lambda row: row["configuration_id"].lower(),
    "type": lambda row: row["run_type"].value,
    "status": lambda row: row["status"].value,
    "started_at": lambda row: row["started_at"],
    "completed_at": lambda row: row["completed_at"],
    "duration": _seconds,
    "messages": lambda row: row["message_count"],
    "created_at": lambda row: row["created_at"],
}

TASK_KEYS: dict[str, Callable[[Row], Any]] = {
    "position": lambda row: row["position"],
    "name": lambda row: row["name"].lower(),
    "status": lambda row: row["status"].value,
    "started_at": lambda row: row["started_at"],
    "duration": _seconds,
    "records": lambda row: row["records"],
    "messages": lambda row: len(row["messages"]),
    "attempt": lambda row: row["attempt"],
}


def expected_search(rows: list[Row], query: str) -> set[int]:
    """Spec 000's five rules, one by one, in Python."""
    q = query.strip().lower()

    def matches(row: Row) -> bool:
        return (
            initials(row["name"]).startswith(q)
            or q in row["name"].lower()
            or row["status"].label.lower().startswith(q)
            or any(q in table.lower() for table, _ in row["tables"])
            or any(q in text.lower() for text in row["messages"])
        )

    return {row["id"] for row in rows if matches(row)}


def _all_runs(conn: Connection, **filters: Any) -> Page[Any]:
    return list_runs(conn, RunQuery(page_size=200, **filters))


def _all_tasks(conn: Connection, world: World, **options: Any) -> Page[Any]:
    return list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, page_size=500, **options))


def _searched(conn: Connection, world: World, query: str) -> set[int]:
    page = _all_tasks(conn, world, search=query)
    assert page.total == len(page.items)
    return {task.id for task in page.items}


def _names(world: World, ids: set[int]) -> set[str]:
    return {task["name"] for task in world.tasks if task["id"] in ids}


# --- the API Runs page --------------------------------------------------------------------------------------------


def test_the_sort_keys_are_the_page_columns() -> None:
    assert set(RUN_SORTS) == set(RUN_KEYS)
    assert set(TASK_SORTS) == set(TASK_KEYS)


def test_runs_list_every_sort_both_ways(conn: Connection, world: World) -> None:
    for sort, key in RUN_KEYS.items():
        for order in ORDERS:
            page = list_runs(conn, RunQuery(account_id=world.acme, sort=sort, order=order, page_size=200))
            assert [run.id for run in page.items] == expected_order(world.runs, key, order), (sort, order)
            assert page.total == len(world.runs)


def test_runs_rows_carry_message_count_and_duration(conn: Connection, world: World) -> None:
    page = _all_runs(conn, account_id=world.acme)
    by_id = {run["id"]: run for run in world.runs}
    for item in page.items:
        assert item.message_count == by_id[item.id]["message_count"]
        assert item.duration_seconds == _seconds(by_id[item.id])
        assert item.configuration_id == by_id[item.id]["configuration_id"]
    assert sum(item.message_count for item in page.items) > 0


def test_runs_default_to_newest_first(conn: Connection, world: World) -> None:
    page = list_runs(conn, RunQuery(account_id=world.acme))
    assert [run.id for run in page.items] == sorted((run["id"] for run in world.runs), reverse=True)


def test_runs_filters(conn: Connection, world: World) -> None:
    operation_id = next(iter(world.operations))
    middle = BASE + timedelta(minutes=95)
    late = BASE + timedelta(minutes=205)
    cases: list[tuple[dict[str, Any], Callable[[Row], bool]]] = [
        ({"operation_id": operation_id}, lambda r: r["operation_id"] == operation_id),
        ({"status": RunStatus.FAILED}, lambda r: r["status"] is RunStatus.FAILED),
        ({"status": RunStatus.RUNNING}, lambda r: r["status"] is RunStatus.RUNNING),
        ({"run_type": RunType.DESTRUCTIVE}, lambda r: r["run_type"] is RunType.DESTRUCTIVE),
        ({"started_from": middle}, lambda r: r["started_at"] is not None and r["started_at"] >= middle),
        ({"started_to": middle}, lambda r: r["started_at"] is not None and r["started_at"] <= middle),
        ({"completed_from": middle, "completed_to": late}, lambda r: _between(r["completed_at"], middle, late)),
        (
            {"operation_id": operation_id, "run_type": RunType.INCREMENTAL, "started_from": middle},
            lambda r: (
                r["operation_id"] == operation_id
                and r["run_type"] is RunType.INCREMENTAL
                and r["started_at"] is not None
                and r["started_at"] >= middle
            ),
        ),
        ({"status": RunStatus.REJECTED, "started_from": BASE}, lambda r: False),  # rejected runs never start
    ]
    for filters, keep in cases:
        page = _all_runs(conn, account_id=world.acme, **filters)
        expected = expected_order([r for r in world.runs if keep(r)], RUN_KEYS["id"], "desc")
        assert [run.id for run in page.items] == expected, filters
        assert page.total == len(expected)


def _between(value: datetime | None, start: datetime, end: datetime) -> bool:
    return value is not None and start <= value <= end


def test_runs_time_bounds_are_inclusive_and_time_zone_aware(conn: Connection, world: World) -> None:
    run = next(r for r in world.runs if r["started_at"] is not None)
    elsewhere = run["started_at"].astimezone(datetime.now().astimezone().tzinfo)
    page = _all_runs(conn, account_id=world.acme, started_from=elsewhere, started_to=elsewhere)
    assert run["id"] in {item.id for item in page.items}
    with pytest.raises(InvalidInput, match="started_from"):
        RunQuery(account_id=world.acme, started_from=datetime(2026, 1, 1))


def test_runs_of_another_account_never_show(conn: Connection, world: World) -> None:
    mine = {run["id"] for run in world.runs}
    assert {run.id for run in _all_runs(conn, account_id=world.acme).items} == mine
    theirs = _all_runs(conn, account_id=world.globex)
    assert theirs.total == 3
    assert not {run.id for run in theirs.items} & mine
    assert _all_runs(conn, account_id=world.globex, operation_id=next(iter(world.operations))).total == 0


def test_runs_pages_cover_everything_once(conn: Connection, world: World) -> None:
    for page_size, sort in ((1, "started_at"), (4, "messages"), (10, "duration"), (200, "operation")):
        full = expected_order(world.runs, RUN_KEYS[sort], "asc")
        seen: list[int] = []
        page_number = 1
        while True:
            query = RunQuery(account_id=world.acme, sort=sort, order="asc", page=page_number, page_size=page_size)
            page = list_runs(conn, query)
            assert page.total == len(world.runs)
            assert page.pages == -(-len(world.runs) // page_size)
            if not page.items:
                break
            assert len(page.items) <= page_size
            seen += [run.id for run in page.items]
            page_number += 1
        assert seen == full, (page_size, sort)
        assert page_number - 1 == page.pages


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sort": "name; DROP TABLE runs"}, "sort"),
        ({"sort": "' OR 1=1 --"}, "sort"),
        ({"sort": "run_key"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
    ],
)
def test_runs_query_rejects_bad_input(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        RunQuery(account_id=1, **options)
    assert raised.value.field == field


def test_an_unknown_sort_names_the_allowed_columns() -> None:
    with pytest.raises(InvalidInput, match="allowed: id, operation, type, status, started_at, completed_at, duration"):
        RunQuery(account_id=1, sort="nope")


# --- the API Run Details page -------------------------------------------------------------------------------------


def test_tasks_every_sort_both_ways(conn: Connection, world: World) -> None:
    for sort, key in TASK_KEYS.items():
        for order in ORDERS:
            page = _all_tasks(conn, world, sort=sort, order=order)
            assert [task.id for task in page.items] == expected_order(world.tasks, key, order), (sort, order)


def test_tasks_default_to_plan_order(conn: Connection, world: World) -> None:
    page = list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, page_size=500))
    assert [task.position for task in page.items] == sorted(task["position"] for task in world.tasks)


def test_tasks_carry_their_tables_and_messages(conn: Connection, world: World) -> None:
    page = _all_tasks(conn, world)
    by_id = {task["id"]: task for task in world.tasks}
    for item in page.items:
        expected = by_id[item.id]
        assert list(item.tables) == expected["tables"]
        assert [message.text for message in item.messages] == expected["messages"]
        assert item.status is expected["status"]
        assert item.duration_seconds == _seconds(expected)


def test_a_page_of_tasks_is_read_in_four_queries(conn: Connection, world: World) -> None:
    statements: list[str] = []

    def _count(_conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(conn, "before_cursor_execute", _count)
    try:
        for page_size in (5, 500):
            statements.clear()
            list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, page_size=page_size))
            assert len(statements) == 4  # the page (the run's account checked within it), tables, messages, total
    finally:
        sa.event.remove(conn, "before_cursor_execute", _count)


def test_tasks_pages_cover_everything_once(conn: Connection, world: World) -> None:
    cases: list[tuple[int, str, Order]] = [(1, "name", "asc"), (7, "duration", "desc"), (36, "messages", "asc")]
    for page_size, sort, order in [*cases, (500, "started_at", "desc")]:
        full = expected_order(world.tasks, TASK_KEYS[sort], order)
        seen: list[int] = []
        for page_number in range(1, len(world.tasks) // page_size + 3):
            query = TaskQuery(
                run_id=world.detail_run,
                account_id=world.acme,
                sort=sort,
                order=order,
                page=page_number,
                page_size=page_size,
            )
            page = list_tasks(conn, query)
            assert page.total == len(world.tasks)
            seen += [task.id for task in page.items]
        assert seen == full, (page_size, sort, order)


def test_search_by_initials(conn: Connection, world: World) -> None:
    found = _searched(conn, world, "mc")
    assert _names(world, found) == {"Metadata Consolidation [employees]", "Metadata Consolidation [time_off]"}
    assert _names(world, _searched(conn, world, "pto")) == {"Process [time_off]"}
    assert _names(world, _searched(conn, world, "MCE")) == {"Metadata Consolidation [employees]"}
    assert _names(world, _searched(conn, world, "dl")) == {"Data Load", "data load"}


def test_search_by_name(conn: Connection, world: World) -> None:
    found = _names(world, _searched(conn, world, "consolidation"))
    assert found == {
        "Metadata Consolidation [employees]",
        "Metadata Consolidation [time_off]",
        "Data Consolidation [employees]",
    }
    assert _names(world, _searched(conn, world, "ENDPOINT_07")) == {"Process [endpoint_07]"}


def test_search_by_status_prefix(conn: Connection, world: World) -> None:
    waiting = {task["id"] for task in world.tasks if task["status"] is TaskStatus.WAITING_TO_START}
    assert len(waiting) >= 2
    assert _searched(conn, world, "waiting") == waiting
    assert _searched(conn, world, "Waiting to") == waiting
    completed = {
        task["id"] for task in world.tasks if task["status"] in (TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS)
    }
    assert completed <= _searched(conn, world, "comp")


def test_search_by_table_name(conn: Connection, world: World) -> None:
    assert _names(world, _searched(conn, world, "hr_emp")) == {"Data Consolidation [employees]"}  # not hrXemployees
    assert _names(world, _searched(conn, world, "OFF_RAW")) == {"Process [time_off]"}


def test_search_by_message(conn: Connection, world: World) -> None:
    assert _names(world, _searched(conn, world, "quota EXCEEDED")) == {"Metadata Consolidation [time_off]"}
    assert _names(world, _searched(conn, world, "rate limited")) == {"Process [time_off]"}


UNION_QUERIES = ("mc", "pto", "waiting", "hr_emp", "quota", "e", "p", "load", "comp", "c", "100", "100%", "%", "_")


def test_search_is_the_union_of_the_five_rules(conn: Connection, world: World) -> None:
    for query in (*UNION_QUERIES, "\\", "[", "page 2", "  Process  ", "x" * 400, *INJECTIONS):
        assert _searched(conn, world, query) == expected_search(world.tasks, query), query
    assert len(_searched(conn, world, "e")) > len(_searched(conn, world, "mc")) > 0


def test_search_takes_like_wildcards_literally(conn: Connection, world: World) -> None:
    assert _names(world, _searched(conn, world, "100%")) == {"Load 100% [budget]"}
    assert _names(world, _searched(conn, world, "%")) == {"Load 100% [budget]"}
    underscored = _names(world, _searched(conn, world, "_"))
    assert "Load 1000 [budget]" not in underscored
    assert "Process [time_off]" in underscored
    assert _searched(conn, world, "x_y") == set()


def test_an_empty_search_lists_every_task(conn: Connection, world: World) -> None:
    for query in (None, "", "   "):
        assert _searched(conn, world, query) == {task["id"] for task in world.tasks}  # type: ignore[arg-type]


def test_a_search_combines_with_sort_and_pages(conn: Connection, world: World) -> None:
    query = TaskQuery(
        run_id=world.detail_run,
        account_id=world.acme,
        search="process",
        sort="records",
        order="desc",
        page=2,
        page_size=5,
    )
    page = list_tasks(conn, query)
    matching = [task for task in world.tasks if task["id"] in expected_search(world.tasks, "process")]
    assert page.total == len(matching)
    assert [task.id for task in page.items] == expected_order(matching, TASK_KEYS["records"], "desc")[5:10]


def test_injection_in_search_or_sort_changes_nothing(store: Store, world: World) -> None:
    with store.read() as conn:
        before = {table: _count(conn, table) for table in ("runs", "tasks", "task_tables", "task_messages")}
    for injection in INJECTIONS:
        with store.read() as conn:
            list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, search=injection))
            with pytest.raises(InvalidInput, match="sort"):
                TaskQuery(run_id=world.detail_run, account_id=world.acme, sort=injection)
            with pytest.raises(InvalidInput, match="sort"):
                RunQuery(account_id=world.acme, sort=injection)
    with store.read() as conn:
        assert {table: _count(conn, table) for table in before} == before
        assert _all_tasks(conn, world).total == len(world.tasks)
        assert _all_runs(conn, account_id=world.acme).total == len(world.runs)


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sort": "name; DROP TABLE tasks"}, "sort"),
        ({"sort": "records_processed"}, "sort"),
        ({"order": "DESC"}, "order"),
        ({"page": -1}, "page"),
        ({"page_size": 501}, "page_size"),
    ],
)
def test_task_query_rejects_bad_input(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        TaskQuery(run_id=1, account_id=1, **options)
    assert raised.value.field == field


def test_another_accounts_run_is_not_found(conn: Connection, world: World) -> None:
    with pytest.raises(NotFound, match="run"):
        list_tasks(conn, TaskQuery(run_id=world.globex_run, account_id=world.acme))
    with pytest.raises(NotFound):
        list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.globex))
    with pytest.raises(NotFound):
        list_tasks(conn, TaskQuery(run_id=999_999, account_id=world.acme))
    for search in ("e", "no such text"):  # the page would have tasks, or none: another account's run either way
        with pytest.raises(NotFound):
            list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.globex, search=search))
    for page in (1, 99):
        with pytest.raises(NotFound):
            list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.globex, page=page))
    assert list_tasks(conn, TaskQuery(run_id=world.globex_run, account_id=world.globex)).total == 1
    assert list_tasks(conn, TaskQuery(run_id=world.detail_run, account_id=world.acme, search="e")).total > 0


UNICODE_TASKS = [
    _task("Étape [Café]", TaskStatus.COMPLETED),
    _task("Process [staff]", TaskStatus.COMPLETED, tables=[("ÜBERSTUNDEN", 5)]),
    _task("Process [budget]", TaskStatus.FAILED, messages=["Größe ÄNDERTE sich"]),
    _task("Process [plain]", TaskStatus.COMPLETED),
]


def _unicode_run(store: Store) -> tuple[int, int]:
    """(account, run) of a run whose task names, table names and messages have non-ASCII capitals."""
    with store.write() as conn:
        account, run_id = _completed_run(conn, "unicode", "café")
        for position, task in enumerate(UNICODE_TASKS):
            row = {**task, "position": position, "attempt": 1, "records": 0, "started_at": BASE, "completed_at": BASE}
            _insert_task(conn, run_id, row)
    return account, run_id


def test_search_ignores_the_case_of_non_ascii_letters_on_every_backend(store: Store) -> None:
    account, run_id = _unicode_run(store)
    with store.read() as conn:

        def found(query: str) -> list[str]:
            return [task.name for task in list_tasks(conn, TaskQuery(run_id, account, search=query)).items]

        for query in ("étape", "ÉTAPE", "café", "CAFÉ"):  # the name
            assert found(query) == ["Étape [Café]"], query
        for query in ("überstunden", "Überstunden", "ÜBER"):  # a table name
            assert found(query) == ["Process [staff]"], query
        for query in ("größe", "GRÖßE", "änderte", "ÄNDERTE SICH"):  # a message
            assert found(query) == ["Process [budget]"], query
        assert found("grösse") == []  # lowercased, not case-folded: "ß" is not "ss"


# --- the Data Loads page ------------------------------------------------------------------------------------------


def test_loads_newest_first_with_run_status_and_operation(conn: Connection, world: World) -> None:
    page = list_loads(conn, world.acme, page=1, page_size=200)
    assert [load.id for load in page.items] == sorted((load["id"] for load in world.loads), reverse=True)
    assert page.total == len(world.loads)
    by_id = {load["id"]: load for load in world.loads}
    for item in page.items:
        expected = by_id[item.id]
        assert item.run_id == expected["run"]["id"]
        assert item.run_status is expected["run"]["status"]
        assert item.configuration_id == expected["run"]["configuration_id"]
        assert item.tables == tuple((t["name"], t["rows"]) for t in expected["tables"])
        assert item.rows == expected["rows"]
    assert list_loads(conn, world.globex).total == 1


def test_loads_pages(conn: Connection, world: World) -> None:
    seen = [load.id for n in (1, 2, 3, 4) for load in list_loads(conn, world.acme, page=n, page_size=3).items]
    assert seen == sorted((load["id"] for load in world.loads), reverse=True)
    with pytest.raises(InvalidInput):
        list_loads(conn, world.acme, page=1, page_size=201)


# --- migration 0002 -----------------------------------------------------------------------------------------------


def test_migration_0002_fills_the_initials_of_existing_tasks(store: Store) -> None:
    migrate.downgrade(store, "0001")
    assert "initials" not in _columns(store, "tasks")
    with store.write() as conn:
        account, run_id = _completed_run(conn, "acme", "payroll")
        names = ["Metadata Consolidation [employees]", "Process [time_off]", "Data Load"]
        for position, name in enumerate(names):
            row = {**_task(name, TaskStatus.COMPLETED), "position": position, "attempt": 1, "records": 0}
            row.update(started_at=BASE, completed_at=BASE)
            values = {k: v for k, v in _task_values(run_id, row).items() if k not in ("initials", "name_lower")}
            # Not tasks.insert(): it would add the columns of later revisions, name_lower's default among them.
            tasks_at_0001 = sa.table("tasks", *(sa.column(key, tasks.c[key].type) for key in values))
            conn.execute(tasks_at_0001.insert().values(**values))
    migrate.upgrade(store)
    with store.read() as conn:
        stored = dict(conn.execute(sa.select(tasks.c.name, tasks.c.initials).order_by(tasks.c.position)).all())
        assert stored == {"Metadata Consolidation [employees]": "mce", "Process [time_off]": "pto", "Data Load": "dl"}
        found = list_tasks(conn, TaskQuery(run_id=run_id, account_id=account, search="pto"))
        assert [task.name for task in found.items] == ["Process [time_off]"]


# --- migration 0008 -----------------------------------------------------------------------------------------------


def test_migration_0008_fills_the_lowercase_copies_of_existing_rows(store: Store) -> None:
    account, run_id = _unicode_run(store)
    migrate.downgrade(store, "0007")
    assert "name_lower" not in _columns(store, "tasks")
    migrate.upgrade(store)
    with store.read() as conn:
        names = conn.execute(sa.select(tasks.c.name, tasks.c.name_lower).order_by(tasks.c.position)).all()
        assert [tuple(row) for row in names] == [(task["name"], task["name"].lower()) for task in UNICODE_TASKS]
        tables = conn.execute(sa.select(task_tables.c.table_name, task_tables.c.table_name_lower)).all()
        assert [tuple(row) for row in tables] == [("ÜBERSTUNDEN", "überstunden")]
        messages = conn.execute(sa.select(task_messages.c.text, task_messages.c.text_lower)).all()
        assert [tuple(row) for row in messages] == [("Größe ÄNDERTE sich", "größe änderte sich")]
        found = list_tasks(conn, TaskQuery(run_id, account, search="CAFÉ"))
        assert [task.name for task in found.items] == ["Étape [Café]"]


# --- durations: sorted by exactly the microseconds shown (migration 0009) -----------------------------------------

# The durations of a flaky run on SQLite, whose julianday() kept milliseconds: 0.055925 s sorted before 0.054706 s.
SUB_MILLISECOND_DURATIONS = (0.036243, 0.055925, 0.054706, 0.0551, 0.054999, 0.055001, 1.0000004, 1.0000001)


def _duration_rows(conn: Connection) -> tuple[int, int, list[tuple[datetime, datetime]]]:
    """(account, run, times): runs and tasks whose durations differ by less than a millisecond."""
    account, first_run = _completed_run(conn, "timing", "sub-ms")
    operation_id = conn.execute(sa.select(runs.c.operation_id).where(runs.c.id == first_run)).scalar_one()
    times = []
    for index, seconds in enumerate(SUB_MILLISECOND_DURATIONS):
        # Starts with odd microseconds, so that rounding each end to a millisecond would reorder them.
        start = BASE + timedelta(seconds=index, microseconds=999 * index + 501)
        times.append((start, start + timedelta(seconds=seconds)))
    for position, (start, end) in enumerate(times):
        task = {**_task(f"task {position}", TaskStatus.COMPLETED), "position": position, "attempt": 1, "records": 0}
        task.update(started_at=start, completed_at=end)
        _insert_task(conn, first_run, task)
        run = {
            "account_id": account,
            "operation_id": operation_id,
            "run_type": RunType.INCREMENTAL,
            "status": RunStatus.COMPLETED,
            "created_at": start,
            "started_at": start,
            "completed_at": end,
        }
        _insert_run(conn, run)
    return account, first_run, times


def test_durations_sort_by_the_microseconds_shown(store: Store) -> None:
    with store.write() as conn:
        account, run_id, _ = _duration_rows(conn)
    with store.read() as conn:
        for order in ORDERS:
            tasks_page = list_tasks(conn, TaskQuery(run_id=run_id, account_id=account, sort="duration", order=order))
            shown = [task.duration_seconds for task in tasks_page.items]
            assert shown == sorted(shown, reverse=order == "desc"), (order, shown)
            runs_page = list_runs(conn, RunQuery(account_id=account, sort="duration", order=order))
            shown_runs = [run.duration_seconds for run in runs_page.items if run.duration_seconds is not None]
            assert shown_runs == sorted(shown_runs, reverse=order == "desc"), (order, shown_runs)
        stored = conn.execute(sa.select(runs.c.id, runs.c.duration_seconds).where(runs.c.account_id == account))
        by_id = {run.id: run.duration_seconds for run in list_runs(conn, RunQuery(account_id=account)).items}
        assert {run_id: seconds for run_id, seconds in stored} == by_id  # the database's value is the one shown


def test_migration_0009_recomputes_run_durations_to_the_microsecond(store: Store) -> None:
    migrate.downgrade(store, "0008")
    assert "bytes_processed" not in _columns(store, "tasks")
    with store.write() as conn:
        account = _insert_account(conn, "before")
        operation_id = _insert_operation(conn, account, "old")
        start = BASE + timedelta(microseconds=700)
        run = {
            "account_id": account,
            "operation_id": operation_id,
            "run_type": RunType.INCREMENTAL,
            "status": RunStatus.COMPLETED,
            "created_at": start,
            "started_at": start,
            "completed_at": start + timedelta(seconds=0.054706),
        }
        run_id = _insert_run(conn, run)
    migrate.upgrade(store)
    assert "bytes_processed" in _columns(store, "tasks")
    with store.read() as conn:
        assert conn.execute(sa.select(runs.c.duration_seconds).where(runs.c.id == run_id)).scalar_one() == 0.054706
        assert list_runs(conn, RunQuery(account_id=account, sort="duration")).total == 1  # its index is back
