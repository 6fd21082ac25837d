"""Reading and nudging the runs database from the reliability tests (real stores, no mocks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.runs import LaunchRequest, RunService
from runyard.store.database import Store
from runyard.store.tables import run_events, runs, task_attempts, task_messages, task_tables, tasks
from tests.integration.cli_helpers import wait_until

T = TypeVar("T")
HANG_LIMIT = 60.0  # only a bound on waiting for something that must happen; never a speed requirement


def wait_for(check: Callable[[], T | None], what: str) -> T:
    """`check`'s first truthy answer, asked every 10 ms; an AssertionError naming `what` after HANG_LIMIT."""
    return wait_until(check, timeout=HANG_LIMIT, what=what, interval=0.01)


def launch(store: Store, operation_id: int, *, worker_running: bool = False) -> int:
    """Launch a run that must be accepted; its id. With a worker running, it may claim the run's first task
    before the launch returns."""
    view = RunService(store).launch(LaunchRequest(operation_id=operation_id))
    accepted = {RunStatus.WAITING_TO_START, RunStatus.RUNNING} if worker_running else {RunStatus.WAITING_TO_START}
    assert view.status in accepted, view
    return view.id


def psycopg_dsn(store: Store) -> str:
    """The store's PostgreSQL URL as psycopg takes it (for connections the tests hold themselves)."""
    return store.url.set(drivername="postgresql").render_as_string(hide_password=False)


def run_row(store: Store, run_id: int) -> sa.RowMapping:
    with store.read() as conn:
        return conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().one()


def run_status(store: Store, run_id: int) -> RunStatus:
    return RunStatus(run_row(store, run_id)["status"])


def task_row(store: Store, run_id: int, name: str) -> sa.RowMapping:
    with store.read() as conn:
        return conn.execute(sa.select(tasks).where(tasks.c.run_id == run_id, tasks.c.name == name)).mappings().one()


def attempt_log(store: Store, task_id: int) -> list[tuple[int, str | None, str]]:
    """The execution log of a task: (attempt, outcome, worker_id), in attempt order."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(task_attempts.c.attempt, task_attempts.c.outcome, task_attempts.c.worker_id)
            .where(task_attempts.c.task_id == task_id)
            .order_by(task_attempts.c.attempt)
        ).all()
    return [(row.attempt, row.outcome, row.worker_id) for row in rows]


def attempt_times(store: Store, task_id: int, attempt: int) -> tuple[datetime, datetime | None]:
    with store.read() as conn:
        row = conn.execute(
            sa.select(task_attempts.c.started_at, task_attempts.c.ended_at).where(
                task_attempts.c.task_id == task_id, task_attempts.c.attempt == attempt
            )
        ).one()
    return row.started_at, row.ended_at


def messages(store: Store, task_id: int, level: str | None = None) -> list[str]:
    query = sa.select(task_messages.c.text).where(task_messages.c.task_id == task_id).order_by(task_messages.c.id)
    if level is not None:
        query = query.where(task_messages.c.level == level)
    with store.read() as conn:
        return list(conn.execute(query).scalars())


def table_counts(store: Store, task_id: int) -> list[tuple[str, int]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(task_tables.c.table_name, task_tables.c.record_count).where(task_tables.c.task_id == task_id)
        ).all()
    return [(row.table_name, row.record_count) for row in rows]


def events(store: Store, run_id: int, kind: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(run_events.c.run_id == run_id, run_events.c.kind == kind)
            ).scalar_one()
        )


def run_state(store: Store, run_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a worker's write about the run could touch: equal snapshots mean nothing was written."""
    task_ids = sa.select(tasks.c.id).where(tasks.c.run_id == run_id).scalar_subquery()
    queries: dict[str, sa.Select[Any]] = {
        "runs": sa.select(runs).where(runs.c.id == run_id),
        "tasks": sa.select(tasks).where(tasks.c.run_id == run_id).order_by(tasks.c.id),
        "task_attempts": sa.select(task_attempts)
        .where(task_attempts.c.task_id.in_(task_ids))
        .order_by(task_attempts.c.id),
        "task_messages": sa.select(task_messages).where(task_messages.c.run_id == run_id).order_by(task_messages.c.id),
        "task_tables": sa.select(task_tables).where(task_tables.c.run_id == run_id).order_by(task_tables.c.id),
        "run_events": sa.select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id),
    }
    with store.read() as conn:
        return {name: [tuple(row) for row in conn.execute(query)] for name, query in queries.items()}


def backdate_leases(store: Store, run_id: int, *, seconds: float = 5.0) -> None:
    """Make the run's running tasks' leases lapse `seconds` ago, on the database's clock."""
    with store.write() as conn:
        now = store.now(conn)
        conn.execute(
            tasks.update()
            .where(tasks.c.run_id == run_id, tasks.c.status == TaskStatus.RUNNING.value)
            .values(lease_expires_at=now - timedelta(seconds=seconds))
        )


def backdate_cancel(store: Store, run_id: int, *, seconds: float) -> None:
    """Pretend the run's cancel was requested `seconds` ago, on the database's clock."""
    with store.write() as conn:
        now = store.now(conn)
        updated = conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.cancel_requested_at.is_not(None))
            .values(cancel_requested_at=now - timedelta(seconds=seconds))
        ).rowcount
    assert updated == 1


def has_open_write(store: Store) -> bool:
    """True when another process holds a write transaction on the database (locks others could wait on)."""
    if store.is_sqlite:
        path = store.url.database
        assert path is not None
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with store.read() as conn:
        busy = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
            )
        ).scalar_one()
    return bool(busy)
