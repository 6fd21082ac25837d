"""The worker's metrics flusher on a real store (SQLite and PostgreSQL): one write transaction per flush for
all the running tasks that moved, none when nothing moved, fenced tasks skipped, and exact totals at the end.

The tasks run a `hold` executor that waits until the test lets it go; the test reports progress through each
task's real TaskContext, as an executor does, and calls `Worker.flush_metrics` itself (the flusher's own timer
is set to an hour, and the heartbeat to half a minute, so neither writes behind the test's back).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus
from runyard.engine.context import TaskContext
from runyard.engine.executors import Executor
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services.operations import deploy
from runyard.services.tasks import TaskLeases
from runyard.store.database import Store
from runyard.store.tables import tasks
from runyard.worker.worker import Worker
from tests.factories import make_account
from tests.reliability.db import launch, run_status, wait_for

TASKS = ("alpha", "beta", "gamma")


class CountingStore(Store):
    """A real store that counts its write transactions."""

    writes = 0

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        self.writes += 1
        with super().write() as conn:
            yield conn


class Held:
    """The running tasks' contexts, and the gate that lets them end."""

    def __init__(self) -> None:
        self.contexts: dict[str, TaskContext] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()

    def run(self, ctx: TaskContext) -> None:
        with self._lock:
            self.contexts[ctx.identity.name] = ctx
        while not self.release.wait(0.01):
            ctx.checkpoint()


@pytest.fixture
def counting_store(database_url: str) -> Iterator[CountingStore]:
    store = CountingStore(database_url)
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def held() -> Held:
    return Held()


@pytest.fixture
def worker(counting_store: CountingStore, held: Held) -> Iterator[Worker]:
    registry = {**BUILTIN, "hold": Executor("hold", held.run, "waits for the test")}
    make_account(counting_store)
    spec = TaskGraphOperation.model_validate(
        {
            "configuration_type": "tasks",
            "configuration_id": "held",
            "tasks": [{"name": name, "executor": "hold"} for name in TASKS],
        }
    )
    deploy(counting_store, [spec], registry)
    leases = TaskLeases(counting_store, lease_seconds=60)
    running = Worker(
        leases, registry, concurrency=len(TASKS), heartbeat_seconds=30, poll_seconds=0.05, metrics_seconds=3600
    )
    running.start()
    try:
        yield running
    finally:
        held.release.set()
        running.stop(10)


def records(store: Store, run_id: int) -> dict[str, tuple[int, float | None, str | None]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(tasks.c.name, tasks.c.records_processed, tasks.c.latency_ms_last, tasks.c.metrics_note).where(
                tasks.c.run_id == run_id
            )
        ).all()
    return {row.name: (int(row.records_processed), row.latency_ms_last, row.metrics_note) for row in rows}


def all_running(held: Held, worker: Worker) -> bool:
    return len(held.contexts) == len(TASKS) and worker.busy == len(TASKS)


def test_one_transaction_per_flush_for_every_task_and_none_when_nothing_moved(
    counting_store: CountingStore, held: Held, worker: Worker
) -> None:
    run_id = launch(counting_store, 1, worker_running=True)
    wait_for(lambda: all_running(held, worker), "the three tasks to run")

    for number, name in enumerate(TASKS, start=1):
        held.contexts[name].add_records(10 * number)
        held.contexts[name].record_latency(0.0)  # a measured 0 is a number, not "no measurement"
    before = counting_store.writes
    assert worker.flush_metrics() == len(TASKS)
    assert counting_store.writes - before == 1
    assert records(counting_store, run_id) == {
        "alpha": (10, 0.0, None),
        "beta": (20, 0.0, None),
        "gamma": (30, 0.0, None),
    }

    before = counting_store.writes
    assert worker.flush_metrics() == 0
    assert counting_store.writes == before  # nothing moved: nothing written, not even an empty transaction

    held.contexts["beta"].add_records(5)
    held.contexts["gamma"].note("committed 1 table")
    assert worker.flush_metrics() == 2
    assert counting_store.writes - before == 1
    assert records(counting_store, run_id) == {
        "alpha": (10, 0.0, None),
        "beta": (25, 0.0, None),
        "gamma": (30, 0.0, "committed 1 table"),
    }


def test_a_task_whose_lease_is_gone_is_skipped_and_the_totals_stay_exact(
    counting_store: CountingStore, held: Held, worker: Worker
) -> None:
    run_id = launch(counting_store, 1, worker_running=True)
    wait_for(lambda: all_running(held, worker), "the three tasks to run")
    with counting_store.write() as conn:  # alpha's lease now belongs to nobody this worker knows
        conn.execute(
            tasks.update().where(tasks.c.run_id == run_id, tasks.c.name == "alpha").values(lease_token="someone-else")
        )
    for name in TASKS:
        held.contexts[name].add_records(7)

    assert worker.flush_metrics() == 2  # no error: the heartbeat is the one that handles a lost lease
    assert records(counting_store, run_id)["alpha"][0] == 0

    held.contexts["beta"].add_records(3)  # after the flush: only the task's end can write these
    held.release.set()
    wait_for(lambda: ended(counting_store, run_id, ("beta", "gamma")), "beta and gamma to end")
    final = records(counting_store, run_id)
    assert (final["alpha"][0], final["beta"][0], final["gamma"][0]) == (0, 10, 7)
    assert run_status(counting_store, run_id) is RunStatus.RUNNING  # alpha could not be ended by this worker


def ended(store: Store, run_id: int, names: tuple[str, ...]) -> bool:
    with store.read() as conn:
        statuses = conn.execute(
            sa.select(tasks.c.status).where(tasks.c.run_id == run_id, tasks.c.name.in_(names))
        ).scalars()
        return all(status == "completed" for status in statuses)
