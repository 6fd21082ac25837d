"""The scheduler's sweep: tasks whose workers died, and cancellations that never finished.

The sweep finds its candidates without locks, then handles one run per transaction: it locks the
run first and reads again under that lock (the lock order of runyard.services.settle), so several
sweepers running at once, and the workers, each end a task at most once and never deadlock.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RUN_FINAL, RunStatus, TaskStatus
from runyard.services.history import add_message, close_attempt, record_event
from runyard.services.settle import finish_run, lock_run, settle_run
from runyard.store.database import Store
from runyard.store.tables import runs, tasks

_RUNNING = TaskStatus.RUNNING.value
_CANCELING = RunStatus.CANCELING.value


@dataclass(frozen=True)
class SweepReport:
    exhausted: int = 0  # tasks failed because every attempt's worker died
    canceled: int = 0  # tasks of canceling runs whose worker died
    forced_runs: int = 0  # runs forced from Canceling to Canceled after the timeout


def sweep(store: Store, *, cancel_timeout_seconds: float) -> SweepReport:
    timeout = timedelta(seconds=cancel_timeout_seconds)
    with store.read() as conn:
        now = store.now(conn)
        # Only runs with something to end: a lapsed task out of attempts, or of a canceling run. Other lapsed
        # tasks are claimed again by the workers (attempt + 1), and locking their runs would be wasted writes.
        lapsed_runs = list(
            conn.execute(
                sa.select(tasks.c.run_id)
                .distinct()
                .join(runs, runs.c.id == tasks.c.run_id)
                .where(
                    tasks.c.status == _RUNNING,
                    tasks.c.lease_expires_at < now,
                    sa.or_(tasks.c.attempt >= tasks.c.max_attempts, runs.c.status == _CANCELING),
                )
                .order_by(tasks.c.run_id)
            ).scalars()
        )
        stuck_runs = list(
            conn.execute(
                sa.select(runs.c.id)
                .where(runs.c.status == _CANCELING, runs.c.cancel_requested_at < now - timeout)
                .order_by(runs.c.id)
            ).scalars()
        )
    exhausted = canceled = forced = 0
    for run_id in lapsed_runs:
        with store.write() as conn:
            run = lock_run(conn, run_id)
            ended = _end_expired(conn, run, store.now(conn))
        if run.status == _CANCELING:
            canceled += ended
        else:
            exhausted += ended
    for run_id in stuck_runs:
        with store.write() as conn:
            forced += _force_canceled(conn, lock_run(conn, run_id), store.now(conn), timeout)
    return SweepReport(exhausted=exhausted, canceled=canceled, forced_runs=forced)


def _end_expired(conn: Connection, run: sa.Row[Any], now: datetime) -> int:
    """End the lapsed tasks of a run locked by lock_run: Canceled if the run is canceling, else Failed once
    out of attempts. How many it ended."""
    run_id = run.id
    canceling = run.status == _CANCELING
    if RunStatus(run.status).is_final:
        return 0
    query = (
        sa.select(tasks.c.id, tasks.c.lease_token, tasks.c.attempt, tasks.c.worker_id)
        .where(tasks.c.run_id == run_id, tasks.c.status == _RUNNING, tasks.c.lease_expires_at < now)
        .order_by(tasks.c.id)
    )
    if not canceling:
        query = query.where(tasks.c.attempt >= tasks.c.max_attempts)  # others are claimed again (attempt + 1)
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
        add_message(conn, run_id, row.id, "error" if not canceling else "warning", text, now)
        record_event(conn, run_id, "task_expired", now, task_id=row.id, status=target.value)
        count += 1
    if count:
        settle_run(conn, run_id, now, run)  # its tasks ended, the run itself is as lock_run read it
    return count


def _force_canceled(conn: Connection, run: sa.Row[Any], now: datetime, timeout: timedelta) -> int:
    """Force a run locked by lock_run (`run` is what it read), still in Canceling past the timeout, to Canceled,
    revoking its running tasks' leases."""
    if run.status != _CANCELING or run.cancel_requested_at is None or run.cancel_requested_at >= now - timeout:
        return 0
    run_id = run.id
    for row in conn.execute(
        sa.select(tasks.c.id, tasks.c.lease_token, tasks.c.attempt)
        .where(tasks.c.run_id == run_id, tasks.c.status == _RUNNING)
        .order_by(tasks.c.id)
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
    finished = finish_run(
        conn,
        run_id,
        RunStatus.CANCELED,
        now,
        message=f"Forced to Canceled: its tasks did not stop within {int(timeout.total_seconds())} s",
    )
    return int(finished)


def _end_task(conn: Connection, task_id: int, lease_token: str | None, target: TaskStatus, now: datetime) -> bool:
    """End a running task whose lease we read, revoking the lease; False if it changed meanwhile."""
    return bool(
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.status == _RUNNING, tasks.c.lease_token == lease_token)
            .values(status=target.value, completed_at=now, lease_token=None, lease_expires_at=None, updated_at=now)
        ).rowcount
    )


def ended_runs(store: Store, run_keys: Collection[str]) -> set[str]:
    """The run keys among `run_keys` whose runs have ended (Completed, Failed, Canceled, ...): nothing of
    theirs runs again, so what they staged can go. Keys of no run of this store are left out."""
    if not run_keys:
        return set()
    final = [status.value for status in RUN_FINAL]
    with store.read() as conn:
        rows = conn.execute(
            sa.select(runs.c.run_key).where(runs.c.run_key.in_(sorted(run_keys)), runs.c.status.in_(final))
        )
        return {row.run_key for row in rows}
