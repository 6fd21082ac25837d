"""A worker whose writes to the runs database fail, for real, keeps working.

The faults are real database faults, no mock: another connection holds the run's row (and on
PostgreSQL the test terminates the worker's connection while it waits for it, as an administrator or
a failover would), or on SQLite holds the write lock longer than a short busy timeout.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.operations.tasks.executors import BUILTIN
from runyard.services.tasks import TaskLeases
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import tasks
from runyard.worker.worker import WRITE_RETRY_DELAYS_SECONDS, Worker
from tests.factories import make_operation, sleep_task
from tests.reliability.db import HANG_LIMIT, attempt_log, launch, psycopg_dsn, run_status, wait_for

LEASE = 3.0
TRIES = len(WRITE_RETRY_DELAYS_SECONDS) + 1


class HeldLocks:
    """Another connection holding rows of the run (PostgreSQL) or the whole database (SQLite)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sqlite: sqlite3.Connection | None = None
        self._gate: psycopg.Connection[Any] | None = None
        self._probe: psycopg.Connection[Any] | None = None
        self.killed = 0

    def hold(self, run_id: int, task_id: int | None = None) -> None:
        if self.store.is_sqlite:
            assert self.store.url.database is not None
            self._sqlite = sqlite3.connect(self.store.url.database, timeout=HANG_LIMIT, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")  # every other writer now waits, then fails
            return
        dsn = psycopg_dsn(self.store)
        self._gate = psycopg.connect(dsn)
        self._probe = psycopg.connect(dsn, autocommit=True)
        self._gate.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        if task_id is not None:  # the task's heartbeats wait too, and lose their connection
            self._gate.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task_id,))

    def kill_waiters(self) -> int:
        """PostgreSQL: terminate every connection waiting for our locks (the worker sees its connection drop)."""
        if self._gate is None or self._probe is None:
            return 0
        rows = self._probe.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> ALL(%s)",
            ([self._gate.info.backend_pid, self._probe.info.backend_pid],),
        ).fetchall()
        self.killed += len(rows)
        return len(rows)

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._gate is not None:
            self._gate.rollback()
            self._gate.close()
            self._gate = None
        if self._probe is not None:
            self._probe.close()
            self._probe = None


@pytest.fixture
def worker_store(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store whose SQLite writers give up after 0.2 s of waiting for the lock (instead of 30 s)."""
    monkeypatch.setattr(dialect, "SQLITE_BUSY_TIMEOUT_MS", 200)
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture
def worker(worker_store: Store) -> Iterator[Worker]:
    leases = TaskLeases(worker_store, lease_seconds=LEASE)
    worker = Worker(leases, BUILTIN, concurrency=2, heartbeat_seconds=0.2, poll_seconds=0.1, worker_id="sturdy")
    worker.start()
    yield worker
    worker.stop(grace_seconds=5)


def worker_messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if r.name == "runyard.worker" and r.levelno >= level]


def running_task(store: Store, run_id: int, name: str) -> sa.RowMapping | None:
    with store.read() as conn:
        row = conn.execute(sa.select(tasks).where(tasks.c.run_id == run_id, tasks.c.name == name)).mappings().first()
    return row if row is not None and row["status"] == TaskStatus.RUNNING.value else None


def final_status(store: Store, run_id: int) -> RunStatus:
    return wait_for(lambda: (s := run_status(store, run_id)).is_final and s, f"run {run_id} to end")  # type: ignore[no-any-return]


@pytest.mark.parametrize("fault", ["transient", "persistent"])
def test_the_worker_survives_the_runs_database_failing_while_it_saves_a_task(
    worker_store: Store, worker: Worker, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """transient: the first try to save the task's end fails, a later one saves it (attempt 1 completes).
    persistent: every try fails; the worker abandons the task, goes on, and takes it up again once its
    lease has lapsed (attempt 2 completes). Either way every worker thread is still alive afterwards."""
    caplog.set_level(logging.INFO, logger="runyard.worker")
    store = worker_store
    operation_id = make_operation(
        store, tasks=[sleep_task("slow", 0.6, units=3), sleep_task("after", depends_on=["slow"])]
    )
    run_id = launch(store, operation_id, worker_running=True)
    slow = wait_for(lambda: running_task(store, run_id, "slow"), "the task `slow` to run")
    locks = HeldLocks(store)
    locks.hold(run_id, slow["id"] if fault == "persistent" else None)  # transient: only the save waits
    try:
        if fault == "transient":

            def first_try_failed() -> bool:
                if locks.killed == 0:
                    locks.kill_waiters()
                return any(f"try 1 of {TRIES}" in text for text in worker_messages(caplog))

            wait_for(first_try_failed, "the first try to save the task's end to fail")
        else:

            def abandoned() -> bool:
                locks.kill_waiters()
                return any("abandons the task" in text for text in worker_messages(caplog, logging.ERROR))

            wait_for(abandoned, "the worker to abandon the task")
    finally:
        locks.release()

    assert final_status(store, run_id) is RunStatus.COMPLETED
    if fault == "transient":
        assert attempt_log(store, slow["id"]) == [(1, "completed", "sturdy")]
    else:
        assert attempt_log(store, slow["id"]) == [(1, "lease_expired", "sturdy"), (2, "completed", "sturdy")]
        assert any(f"after {TRIES} tries" in text for text in worker_messages(caplog, logging.ERROR))
    assert all(thread.is_alive() for thread in worker._threads)

    next_run = launch(store, operation_id, worker_running=True)  # the worker still claims and runs new work
    assert final_status(store, next_run) is RunStatus.COMPLETED
    assert all(thread.is_alive() for thread in worker._threads)

    said = "\n".join(worker_messages(caplog))
    assert "database failed" in said
    assert slow["lease_token"] not in said  # no SQL parameters in the log
    assert "[SQL" not in said


def test_a_task_whose_lease_cannot_be_renewed_for_a_whole_lease_is_stopped(
    worker_store: Store, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    """Every heartbeat fails for longer than the lease: another worker may own the task by now, so this one
    stops it without writing; once the lease has lapsed the task runs again (attempt 2) and completes.

    On SQLite every renewal fails until the worker gives up on its own; on PostgreSQL the renewals that wait
    for the held task are terminated until the lease has lapsed on the database's clock, when the next one
    is told at once that the lease is gone."""
    caplog.set_level(logging.INFO, logger="runyard.worker")
    store = worker_store
    operation_id = make_operation(store, tasks=[sleep_task("long", 2 * LEASE, units=60)])
    run_id = launch(store, operation_id, worker_running=True)
    long = wait_for(lambda: running_task(store, run_id, "long"), "the task `long` to run")
    locks = HeldLocks(store)
    locks.hold(run_id, long["id"])
    try:

        def stopped() -> bool:
            locks.kill_waiters()
            return any("abandoning without writing" in text for text in worker_messages(caplog))

        wait_for(stopped, "the worker to stop the task whose lease it could not renew")
    finally:
        locks.release()

    assert final_status(store, run_id) is RunStatus.COMPLETED
    assert attempt_log(store, long["id"]) == [(1, "lease_expired", "sturdy"), (2, "completed", "sturdy")]
    if store.is_sqlite:
        assert any("could not be renewed" in text for text in worker_messages(caplog, logging.ERROR))
    assert all(thread.is_alive() for thread in worker._threads)
