"""Spec 001's `recordsProcessedSinceLastCheck` counted per user across processes (issue 15, item 3).

Two independent runyard apps (`create_app` over two `Runtime`s, each with its own `Store` and connection pool on the
same database, as two HTTP processes or two servers have), each served by uvicorn on loopback. No worker runs: the
tasks are claimed with `TaskLeases.claim` and their records written with `TaskLeases.write_metrics`, the path a
worker's metrics thread takes, so every count is exactly known and nothing waits on time.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from runyard.app import create_app
from runyard.domain.statuses import TaskStatus
from runyard.engine.context import Progress
from runyard.runtime import Runtime, open_store
from runyard.services.accounts import bootstrap_admin, create_user
from runyard.services.metrics import FORGET_AFTER, since_last
from runyard.services.operations import deploy
from runyard.services.tasks import Claim, Outcome, TaskLeases
from runyard.settings import Settings
from runyard.store.database import Store
from runyard.store.tables import metrics_last_checks, runs
from tests.factories import sleep_task
from tests.integration.rest_harness import ADMIN_PASSWORD, HTTP_TIMEOUT, PASSWORD, cheap_hashing, serving, tasks_spec

OTHER_ADMIN = "second-admin"
TASKS = ("Process [a]", "Process [b]", "Process [c]")


@dataclass
class Running:
    """A run whose tasks are all claimed (Running) by this test, with each task's records so far."""

    run_id: int
    claims: dict[str, Claim]
    totals: dict[str, int] = field(default_factory=dict)


@dataclass
class TwoProcesses:
    stores: tuple[Store, Store]
    runtimes: tuple[Runtime, Runtime]
    urls: tuple[str, str]
    leases: TaskLeases
    tokens: dict[str, str] = field(default_factory=dict)

    def check(self, user: str, process: int, path: str = "/etl/rest/v1/tasks/") -> dict[str, dict[str, Any]]:
        """One spec 001 check by `user` answered by app `process` (0 or 1): the tasks by name."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        response = httpx.get(self.urls[process] + path, headers=headers, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return {task["name"]: task for task in response.json()}

    def since(self, user: str, process: int, path: str = "/etl/rest/v1/tasks/") -> dict[str, int]:
        return {name: task["recordsProcessedSinceLastCheck"] for name, task in self.check(user, process, path).items()}

    def launch_claimed(self, configuration_id: str, names: tuple[str, ...] = TASKS) -> Running:
        """Deploy a `tasks` operation of independent tasks, launch it and claim every task."""
        runtime = self.runtimes[0]
        spec = tasks_spec(configuration_id, [sleep_task(name, 600) for name in names])
        (deployed,) = deploy(runtime.store, [spec], runtime.registry)
        response = httpx.post(
            f"{self.urls[0]}/api/v1/operations/{deployed.operation_id}/runs",
            json={"type": "incremental"},
            headers={"Authorization": f"Bearer {self.tokens['admin']}"},
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        claims: dict[str, Claim] = {}
        for _ in names:
            claim = self.leases.claim("test-worker")
            assert claim is not None
            assert claim.run_id == run_id
            claims[claim.name] = claim
        assert sorted(claims) == sorted(names)
        return Running(run_id, claims, {name: 0 for name in names})

    def add_records(self, running: Running, **added: int) -> None:
        """Write `added` more records for each named task (keywords: the task's letter), in one metrics write."""
        batch = []
        for letter, count in added.items():
            name = f"Process [{letter}]"
            running.totals[name] += count
            batch.append((running.claims[name], Progress(records=count, records_total=running.totals[name])))
        assert self.leases.write_metrics(batch) == []


@contextmanager
def two_processes(home: Path, database_url: str) -> Iterator[TwoProcesses]:
    settings = Settings(home=home, database_url=database_url, admin_password=SecretStr(ADMIN_PASSWORD))
    with cheap_hashing(), ExitStack() as stack:
        stores = (open_store(settings), open_store(settings))
        runtimes = (Runtime(settings, stores[0]), Runtime(settings, stores[1]))
        for runtime in runtimes:
            stack.callback(runtime.close)
        bootstrap_admin(stores[0], ADMIN_PASSWORD)
        create_user(stores[0], account="default", login=OTHER_ADMIN, password=PASSWORD, role="administrator")
        urls = (
            stack.enter_context(serving(create_app(runtimes[0]))),
            stack.enter_context(serving(create_app(runtimes[1]))),
        )
        processes = TwoProcesses(stores, runtimes, urls, TaskLeases(stores[1], lease_seconds=600))
        for index, (login, password) in enumerate((("admin", ADMIN_PASSWORD), (OTHER_ADMIN, PASSWORD))):
            answer = httpx.post(
                f"{urls[index]}/api/v1/auth/token",
                json={"login": login, "password": password},
                timeout=HTTP_TIMEOUT,
            )
            assert answer.status_code == 200, answer.text
            processes.tokens[login] = answer.json()["access_token"]
        yield processes


def rows_of(store: Store, login_id: int | None = None) -> set[tuple[int, int]]:
    query = sa.select(metrics_last_checks.c.user_id, metrics_last_checks.c.task_id)
    if login_id is not None:
        query = query.where(metrics_last_checks.c.user_id == login_id)
    with store.read() as conn:
        return {(row.user_id, row.task_id) for row in conn.execute(query)}


def user_id(store: Store, login: str) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.text("SELECT id FROM users WHERE login = :login"), {"login": login}).scalar_one())


def test_alternating_processes_count_each_users_records_since_their_own_previous_check(
    tmp_path: Path, database_url: str
) -> None:
    with two_processes(tmp_path / "home", database_url) as two:
        running = two.launch_claimed("three-tasks")
        a, b, c = TASKS
        two.add_records(running, a=10)

        # The first check of a task counts every record it has: there was no earlier check to count from.
        assert two.since("admin", 0) == {a: 10, b: 0, c: 0}
        two.add_records(running, a=5, b=7)
        assert two.since("admin", 1) == {a: 5, b: 7, c: 0}  # the other process knows what process 0 showed
        assert two.since("admin", 0) == {a: 0, b: 0, c: 0}  # nothing new: nothing reported twice

        # Another user counts from their own checks: their first check sees everything so far.
        assert two.since(OTHER_ADMIN, 1) == {a: 15, b: 7, c: 0}
        two.add_records(running, a=3, c=2)
        assert two.since(OTHER_ADMIN, 0) == {a: 3, b: 0, c: 2}
        assert two.since("admin", 1) == {a: 3, b: 0, c: 2}  # the other user's checks did not move admin's
        two.add_records(running, b=4)
        assert two.since(OTHER_ADMIN, 1) == {a: 0, b: 4, c: 0}

        # The one-flow endpoint and the type filter share the same last checks.
        flow = f"/etl/rest/v1/tasks/{running.run_id}/"
        assert two.since("admin", 0, flow) == {a: 0, b: 4, c: 0}
        two.add_records(running, a=1)
        assert two.since("admin", 1, f"{flow}?type=task") == {a: 1, b: 0, c: 0}
        assert two.since("admin", 0, "/etl/rest/v1/tasks?type=stream") == {}

        final = two.check("admin", 1)
        assert {name: task["recordsProcessed"] for name, task in final.items()} == running.totals
        assert all(task["recordsProcessedSinceLastCheck"] == 0 for task in final.values())


def test_concurrent_checks_by_one_user_in_both_processes_report_each_record_once(
    tmp_path: Path, database_url: str
) -> None:
    a, b, c = TASKS
    with two_processes(tmp_path / "home", database_url) as two:
        running = two.launch_claimed("concurrent")
        # One check on each app first: FastAPI builds a route on its first request, and that is not thread-safe
        # under pytest's warnings-as-errors (concurrent first requests fail with a pydantic warning).
        assert two.since("admin", 0) == two.since("admin", 1) == {a: 0, b: 0, c: 0}
        two.add_records(running, a=10, b=3)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda index: two.since("admin", index % 2), range(8)))
        for name, total in running.totals.items():
            assert sum(answer[name] for answer in answers) == total, answers  # never twice, never lost
        assert two.since(OTHER_ADMIN, 0) == running.totals


def test_one_check_of_many_tasks_is_one_transaction_with_one_upsert(tmp_path: Path, database_url: str) -> None:
    with two_processes(tmp_path / "home", database_url) as two:
        names = tuple(f"Process [t{index}]" for index in range(12))
        running = two.launch_claimed("twelve-tasks", names)
        statements: list[str] = []
        begins: list[object] = []
        engine = two.stores[0]._writer  # every write transaction of app 0 begins here (and PostgreSQL's reads)

        def on_execute(*args: Any) -> None:
            statements.append(str(args[2]))

        def on_begin(conn: sa.Connection) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":  # PostgreSQL's reads
                begins.append(conn)

        sa.event.listen(engine, "before_cursor_execute", on_execute)
        sa.event.listen(engine, "begin", on_begin)
        try:
            assert two.since("admin", 0) == {name: 0 for name in names}
        finally:
            sa.event.remove(engine, "before_cursor_execute", on_execute)
            sa.event.remove(engine, "begin", on_begin)
        assert len(begins) == 1  # one write transaction for the whole check
        upserts = [sql for sql in statements if sql.lstrip().upper().startswith("INSERT INTO METRICS_LAST_CHECKS")]
        assert len(upserts) == 1, statements
        assert "ON CONFLICT" in upserts[0].upper()
        assert len(rows_of(two.stores[0])) == len(names)
        assert running.claims  # the tasks stayed claimed


def test_rows_of_runs_ended_over_a_day_ago_are_deleted_at_the_users_next_check(
    tmp_path: Path, database_url: str
) -> None:
    with two_processes(tmp_path / "home", database_url) as two:
        store = two.stores[0]
        admin, other = user_id(store, "admin"), user_id(store, OTHER_ADMIN)
        ended = two.launch_claimed("ends", ("Process [a]",))
        two.check("admin", 0)
        two.check(OTHER_ADMIN, 1)
        ended_task = ended.claims["Process [a]"].task_id
        assert rows_of(store) == {(admin, ended_task), (other, ended_task)}
        two.leases.finish(ended.claims["Process [a]"], Outcome(TaskStatus.COMPLETED))

        still = two.launch_claimed("still-running", ("Process [b]",))
        still_task = still.claims["Process [b]"].task_id
        two.check("admin", 1)  # the ended run ended just now: its row stays (a day's margin)
        assert rows_of(store, admin) == {(admin, ended_task), (admin, still_task)}

        with store.write() as conn:  # a day and a minute pass for the ended run
            completed_at = conn.execute(sa.select(runs.c.completed_at).where(runs.c.id == ended.run_id)).scalar_one()
            assert completed_at is not None
            moved = completed_at - FORGET_AFTER - timedelta(minutes=1)
            conn.execute(runs.update().where(runs.c.id == ended.run_id).values(completed_at=moved))

        assert two.since("admin", 0) == {"Process [b]": 0}
        assert rows_of(store) == {(admin, still_task), (other, ended_task)}  # the other user's row waits for them
        two.check(OTHER_ADMIN, 0)
        assert rows_of(store) == {(admin, still_task), (other, still_task)}


@pytest.mark.parametrize(
    ("previous", "records", "expected"),
    [(None, 0, 0), (None, 42, 42), (10, 42, 32), (42, 42, 0), (500, 50, 0)],
)
def test_since_last_counts_from_the_previous_check_or_from_the_start(
    previous: int | None, records: int, expected: int
) -> None:
    # (500, 50): a new attempt starts its records again from 0; the check that first sees fewer reports none.
    assert since_last(previous, records) == expected
