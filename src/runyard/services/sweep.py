"""The scheduler's sweep: tasks whose workers died, and cancellations that never finished.

Each change is a conditional UPDATE on what was read, so several sweepers running at once
each expire a lease at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.history import add_message, close_attempt, record_event
from runyard.services.settle import finish_run, settle_run
from runyard.store.database import Store
from runyard.store.tables import runs, tasks

_RUNNING = TaskStatus.RUNNING.value


@dataclass(frozen=True)
class SweepReport:
    exhausted: int = 0  # tasks failed because every attempt's worker died
    canceled: int = 0  # tasks of canceling runs whose worker died
    forced_runs: int = 0  # runs forced from Canceling to Canceled after the timeout


def sweep(store: Store, *, cancel_timeout_seconds: float) -> SweepReport:
    with store.write() as conn:
        now = store.now(conn)
        exhausted = _end_expired(conn, now, canceling=False)
        canceled = _end_expired(conn, now, canceling=True)
        forced = _force_canceled(conn, now, timedelta(seconds=cancel_timeout_seconds))
    return SweepReport(exhausted=exhausted, canceled=canceled, forced_runs=forced)


def _end_expired(conn: Connection, now: datetime, *, canceling: bool) -> int:
    query = (
        sa.select(tasks.c.id, tasks.c.run_id, tasks.c.lease_token, tasks.c.attempt, tasks.c.worker_id)
        .join(runs, runs.c.id == tasks.c.run_id)
        .where(tasks.c.status == _RUNNING, tasks.c.lease_expires_at < now)
        .order_by(tasks.c.id)  # every sweeper locks rows in the same order: sweepers never deadlock
    )
    if canceling:
        query = query.where(runs.c.status == RunStatus.CANCELING.value)
    else:
        query = query.where(tasks.c.attempt >= tasks.c.max_attempts, runs.c.status != RunStatus.CANCELING.value)
    target = TaskStatus.CANCELED if canceling else TaskStatus.FAILED
    count = 0
    for row in conn.execute(query).all():
        if not _end_task(conn, row.id, row.lease_token, target, now):
            continue
        close_attempt(conn, row.id, row.attempt, "lease_expired", now)
        text = (
            f"Canceled: worker {row.worker_id} stopped responding while its run was being canceled"
            if canceling
            else f"Failed: the worker stopped responding on each of its {row.attempt} attempts "
            f"(last on worker {row.worker_id}); it was not tried again"
        )
        add_message(conn, row.run_id, row.id, "error" if not canceling else "warning", text, now)
        record_event(conn, row.run_id, "task_expired", now, task_id=row.id, status=target.value)
        settle_run(conn, row.run_id, now)
        count += 1
    return count


def _force_canceled(conn: Connection, now: datetime, timeout: timedelta) -> int:
    stuck = (
        conn.execute(
            sa.select(runs.c.id).where(
                runs.c.status == RunStatus.CANCELING.value, runs.c.cancel_requested_at < now - timeout
            )
        )
        .scalars()
        .all()
    )
    for run_id in stuck:
        for row in conn.execute(
            sa.select(tasks.c.id, tasks.c.lease_token, tasks.c.attempt).where(
                tasks.c.run_id == run_id, tasks.c.status == _RUNNING
            )
        ).all():
            if _end_task(conn, row.id, row.lease_token, TaskStatus.CANCELED, now):
                close_attempt(conn, row.id, row.attempt, "lease_revoked", now)
                add_message(
                    conn,
                    run_id,
                    row.id,
                    "warning",
                    "Canceled: the task did not stop in time, so its lease was revoked",
                    now,
                )
        # The cancel already ended the waiting tasks; finishing here keeps the reason on the run.
        finish_run(
            conn,
            run_id,
            RunStatus.CANCELED,
            now,
            message=f"Forced to Canceled: its tasks did not stop within {int(timeout.total_seconds())} s",
        )
    return len(stuck)


def _end_task(conn: Connection, task_id: int, lease_token: str | None, target: TaskStatus, now: datetime) -> bool:
    """End a running task whose lease we read, revoking the lease; False if it changed meanwhile."""
    return bool(
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.status == _RUNNING, tasks.c.lease_token == lease_token)
            .values(status=target.value, completed_at=now, lease_token=None, lease_expires_at=None, updated_at=now)
        ).rowcount
    )
