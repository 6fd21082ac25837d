"""The worker's side of the store: claim a task under a lease, heartbeat it, finish it.

Every write a worker makes about a task is fenced by its lease token and by the lease not
having expired (on the database's clock): once another worker has taken a task over, or
the lease has lapsed, the old worker's writes change nothing and raise LeaseLost.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.graph import PlannedTask
from runyard.domain.statuses import TASK_SUCCEEDED, RunStatus, TaskStatus
from runyard.domain.transitions import check_task_transition
from runyard.engine.context import Progress, TaskIdentity, TaskOutput
from runyard.errors import LeaseLost
from runyard.faults import lost_ack
from runyard.services.history import add_message, close_attempt, record_event
from runyard.services.runs import RunService
from runyard.services.settle import lock_run, settle_run
from runyard.services.task_graph import insert_tasks
from runyard.services.wakeup import Wakeup
from runyard.services.work_signal import announce_work, wake_workers
from runyard.services.workflow_counts import counted_workflows
from runyard.services.workflows import fire_pending
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.failures import describe_failure
from runyard.store.tables import accounts, data_loads, runs, task_attempts, task_dependencies, task_tables, tasks

log = logging.getLogger("runyard.tasks")

_FRESH_METRICS: dict[str, Any] = {
    "records_processed": 0,
    "bytes_processed": 0,
    "last_record_at": None,
    "latency_ms_last": None,
    "latency_ms_min": None,
    "latency_ms_max": None,
    "latency_ms_sum": 0.0,
    "latency_count": 0,
    "metrics_note": None,
}
_CLAIMABLE_RUNS = [RunStatus.WAITING_TO_START.value, RunStatus.RUNNING.value]
_RUNNING = TaskStatus.RUNNING.value
_CLAIM_LOOKS = 4  # a claim that skipped locked work looks again, at most this many times in all
_CLAIM_LOOK_PAUSE_SECONDS = 0.01


@dataclass(frozen=True)
class Claim:
    task_id: int
    run_id: int
    name: str
    executor: str
    params: dict[str, Any]
    stage: str
    table: str | None
    attempt: int
    max_attempts: int
    lease_token: str
    worker_id: str
    run_key: str = ""
    operation_id: int = 0
    account: str = ""
    run_type: str = "incremental"
    inputs: tuple[TaskOutput, ...] = ()
    execution_date: date | None = None

    @property
    def identity(self) -> TaskIdentity:
        return TaskIdentity(
            self.account,
            self.operation_id,
            self.run_key,
            self.run_type,
            self.name,
            self.attempt,
            self.table,
            self.execution_date,
            self.run_id,
        )


@dataclass(frozen=True)
class Outcome:
    status: TaskStatus
    messages: Sequence[tuple[str, str]] = ()  # (level, text)
    tables: Sequence[tuple[str, int]] = ()  # (table name, record count)
    spawned: Sequence[PlannedTask] = ()  # tasks this one adds to its run (when it succeeded)


class TaskLeases:
    def __init__(self, store: Store, *, lease_seconds: float, wakeup: Wakeup | None = None) -> None:
        self.store = store
        self.lease = timedelta(seconds=lease_seconds)
        self.wakeup = wakeup

    def claim(self, worker_id: str) -> Claim | None:
        """Take the oldest ready task, or one whose lease lapsed (attempt + 1). None when there is none.

        The task and its run are locked together, skipping rows other transactions hold, so a claim never
        waits (see the lock order in runyard.services.settle). A run is held only for one short write,
        so when everything claimable was skipped, the claim looks again a few times before giving up.
        """
        claim = self._claim(worker_id)
        if claim is not None:
            lost_ack("claim")  # test-only (RUNYARD_LOSE_ACK): the claim committed, its answer lost
        return claim

    def _claim(self, worker_id: str) -> Claim | None:
        for look in range(_CLAIM_LOOKS):
            if look:
                time.sleep(_CLAIM_LOOK_PAUSE_SECONDS * look)
            with self.store.write() as conn:
                now = self.store.now(conn)
                for pick in (self._ready, self._expired):
                    row = conn.execute(dialect.lock_for_claim(pick(now), conn)).first()
                    if row is not None:
                        claim = self._take(conn, row, worker_id, now)
                        if claim is not None:
                            return claim
                # Nothing claimed: look again only if some claimable row was skipped because it was locked.
                skipped = (
                    look + 1 < _CLAIM_LOOKS
                    and dialect.skips_locked_rows(conn)
                    and bool(
                        conn.execute(sa.select(sa.or_(self._ready(now).exists(), self._expired(now).exists()))).scalar()
                    )
                )
            if not skipped:
                return None
        return None

    def _ready(self, now: datetime) -> sa.Select[Any]:
        return (
            sa.select(tasks)
            .join(runs, runs.c.id == tasks.c.run_id)
            .where(
                tasks.c.status == TaskStatus.WAITING_TO_START.value,
                tasks.c.ready_at <= now,
                runs.c.status.in_(_CLAIMABLE_RUNS),
            )
            .order_by(tasks.c.ready_at, tasks.c.id)
            .limit(1)
        )

    def _expired(self, now: datetime) -> sa.Select[Any]:
        return (
            sa.select(tasks)
            .join(runs, runs.c.id == tasks.c.run_id)
            .where(
                tasks.c.status == _RUNNING,
                tasks.c.lease_expires_at < now,
                tasks.c.attempt < tasks.c.max_attempts,
                runs.c.status.in_(_CLAIMABLE_RUNS),
            )
            .order_by(tasks.c.lease_expires_at, tasks.c.id)
            .limit(1)
        )

    def _take(self, conn: Connection, row: sa.Row[Any], worker_id: str, now: datetime) -> Claim | None:
        token = uuid.uuid4().hex
        reclaim = row.status == _RUNNING
        guard = (
            [tasks.c.lease_token == row.lease_token, tasks.c.lease_expires_at < now]
            if reclaim
            else [tasks.c.ready_at.is_not(None)]
        )
        taken = conn.execute(
            tasks.update()
            .where(tasks.c.id == row.id, tasks.c.status == row.status, *guard)
            .values(
                status=_RUNNING,
                attempt=row.attempt + 1,
                lease_token=token,
                lease_expires_at=now + self.lease,
                claimed_at=now,
                heartbeat_at=None,
                worker_id=worker_id,
                started_at=row.started_at or now,
                updated_at=now,
                **(_FRESH_METRICS if reclaim else {}),  # a new attempt starts over: so do its counts
            )
        ).rowcount
        if not taken:
            return None
        attempt = row.attempt + 1
        if reclaim:
            close_attempt(conn, row.id, row.attempt, "lease_expired", now)
            add_message(
                conn,
                row.run_id,
                row.id,
                "warning",
                f"Attempt {row.attempt} on worker {row.worker_id} stopped responding (its lease expired); "
                f"attempt {attempt} started on worker {worker_id}",
                now,
            )
        conn.execute(
            task_attempts.insert().values(task_id=row.id, attempt=attempt, worker_id=worker_id, started_at=now)
        )
        conn.execute(
            runs.update()
            .where(runs.c.id == row.run_id, runs.c.status == RunStatus.WAITING_TO_START.value)
            .values(status=RunStatus.RUNNING.value, started_at=now, updated_at=now)
        )
        record_event(
            conn,
            row.run_id,
            "task_claimed",
            now,
            task_id=row.id,
            status=_RUNNING,
            detail=f"attempt {attempt} on {worker_id}",
        )
        run = conn.execute(
            sa.select(runs.c.run_key, runs.c.operation_id, runs.c.run_type, runs.c.execution_date, accounts.c.name)
            .join(accounts, accounts.c.id == runs.c.account_id)
            .where(runs.c.id == row.run_id)
        ).one()
        return Claim(
            task_id=row.id,
            run_id=row.run_id,
            name=row.name,
            executor=row.executor,
            params=dict(row.params),
            stage=row.stage,
            table=row.table_name,
            attempt=attempt,
            max_attempts=row.max_attempts,
            lease_token=token,
            worker_id=worker_id,
            run_key=run.run_key,
            operation_id=run.operation_id,
            account=run.name,
            run_type=run.run_type,
            inputs=_inputs(conn, row.id),
            execution_date=run.execution_date,
        )

    def heartbeat(self, claim: Claim, progress: Progress | None = None) -> bool:
        """Extend the lease and write metrics. True when the run is being canceled. Raises LeaseLost.

        It writes the task's row only and locks nothing else, so it does not take the run's lock.
        """
        with self.store.write() as conn:
            now = self.store.now(conn)
            values: dict[str, Any] = {"heartbeat_at": now, "lease_expires_at": now + self.lease, "updated_at": now}
            values.update(_progress_values(progress))
            self._fenced_update(conn, claim, now, values)
            status = conn.execute(sa.select(runs.c.status).where(runs.c.id == claim.run_id)).scalar_one()
        lost_ack("heartbeat")  # test-only (RUNYARD_LOSE_ACK), as for every lost_ack below
        return bool(status == RunStatus.CANCELING.value)

    def write_metrics(self, batch: Sequence[tuple[Claim, Progress]]) -> list[Claim]:
        """Write the live metrics of several running tasks in one transaction, leaving their leases alone.

        Each update is fenced like every other write about a task; a task whose lease is gone is skipped
        (its heartbeat stops it). Returns the claims whose progress was not written.
        """
        written = [(claim, progress) for claim, progress in batch if not progress.empty]
        if not written:
            return []
        with self.store.write() as conn:
            now = self.store.now(conn)
            return [
                claim
                for claim, progress in written
                if not conn.execute(
                    tasks.update().where(*_fence(claim, now)).values(**_progress_values(progress))
                ).rowcount
            ]

    def finish(self, claim: Claim, outcome: Outcome, progress: Progress | None = None) -> None:
        """Record the task's end, then move its run along. Raises LeaseLost if the lease is gone."""
        check_task_transition(TaskStatus.RUNNING, outcome.status)
        with self.store.write() as conn:
            run = lock_run(conn, claim.run_id)  # first: the lock order of runyard.services.settle
            now = self.store.now(conn)  # read after the lock: the lease is judged when the write happens
            values: dict[str, Any] = {
                "status": outcome.status.value,
                "completed_at": now,
                "lease_token": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            values.update(_progress_values(progress))
            self._fenced_update(conn, claim, now, values)
            for level, text in outcome.messages:
                add_message(conn, claim.run_id, claim.task_id, level, text, now)
            if outcome.tables:
                conn.execute(
                    task_tables.insert(),
                    [
                        {"task_id": claim.task_id, "run_id": claim.run_id, "table_name": name, "record_count": count}
                        for name, count in outcome.tables
                    ],
                )
            close_attempt(conn, claim.task_id, claim.attempt, outcome.status.value, now)
            if outcome.spawned and outcome.status in TASK_SUCCEEDED:
                position = conn.execute(sa.select(tasks.c.position).where(tasks.c.id == claim.task_id)).scalar_one()
                insert_tasks(conn, claim.run_id, outcome.spawned, now, after_position=position)
            if claim.stage == "load" and outcome.status in TASK_SUCCEEDED and outcome.tables:
                _record_data_load(conn, claim.run_id, outcome.tables, now)
            record_event(conn, claim.run_id, "task_finished", now, task_id=claim.task_id, status=outcome.status.value)
            became_ready = settle_run(conn, claim.run_id, now, run)  # nothing above changed the run itself
            if became_ready:
                announce_work(conn)  # other processes' workers are woken at commit
            workflows = counted_workflows(conn, claim.run_id)
        lost_ack("finish")
        if became_ready:
            wake_workers(self.store, self.wakeup)
        if workflows:
            self._launch_targets(workflows)

    def _launch_targets(self, workflows: list[int]) -> None:
        """The run counted for workflows: launch their targets now. The task's end is committed already, so a
        failure here is only logged; the scheduler's sweep evaluates the pending workflows again."""
        try:
            fire_pending(self.store, RunService(self.store, self.wakeup), workflows)
        except Exception as error:
            log.warning(
                "workflows %s not evaluated yet (%s); the next sweep does it", workflows, describe_failure(error)
            )

    def release(self, claim: Claim, *, delay_seconds: float = 0.0, reason: str = "") -> None:
        """Give the task back (shutdown, or a transient failure to try again later)."""
        with self.store.write() as conn:
            lock_run(conn, claim.run_id)  # first: the lock order of runyard.services.settle
            now = self.store.now(conn)  # read after the lock: the lease is judged when the write happens
            self._fenced_update(
                conn,
                claim,
                now,
                {
                    "status": TaskStatus.WAITING_TO_START.value,
                    "ready_at": now + timedelta(seconds=delay_seconds),
                    "lease_token": None,
                    "lease_expires_at": None,
                    "updated_at": now,
                },
            )
            close_attempt(conn, claim.task_id, claim.attempt, "released", now)
            if reason:
                add_message(conn, claim.run_id, claim.task_id, "warning", reason, now)
            announce_work(conn)
        lost_ack("release")
        wake_workers(self.store, self.wakeup)

    def _fenced_update(self, conn: Connection, claim: Claim, now: datetime, values: dict[str, Any]) -> None:
        updated = conn.execute(tasks.update().where(*_fence(claim, now)).values(**values)).rowcount
        if not updated:
            raise LeaseLost(claim.task_id, claim.attempt)


def _fence(claim: Claim, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """The task is still this claim's: same lease token, still Running, lease not expired (database clock)."""
    return (
        tasks.c.id == claim.task_id,
        tasks.c.lease_token == claim.lease_token,
        tasks.c.status == _RUNNING,
        tasks.c.lease_expires_at >= now,
    )


def _record_data_load(conn: Connection, run_id: int, tables: Sequence[tuple[str, int]], now: datetime) -> None:
    """What the run made available in the warehouse: the Data Loads page reads this."""
    if conn.execute(sa.select(data_loads.c.id).where(data_loads.c.run_id == run_id)).first():
        return
    run = conn.execute(sa.select(runs.c.account_id, runs.c.operation_id).where(runs.c.id == run_id)).one()
    conn.execute(
        data_loads.insert().values(
            account_id=run.account_id,
            operation_id=run.operation_id,
            run_id=run_id,
            tables=[{"name": name, "rows": rows} for name, rows in tables],
            rows=sum(rows for _, rows in tables),
            created_at=now,
        )
    )


def _inputs(conn: Connection, task_id: int) -> tuple[TaskOutput, ...]:
    """The outputs of a task's upstream tasks, following reused tasks to the run that produced them."""
    upstream = conn.execute(
        sa.select(
            tasks.c.id,
            tasks.c.name,
            tasks.c.status,
            tasks.c.attempt,
            tasks.c.reused_from,
            tasks.c.table_name,
            runs.c.run_key,
        )
        .join(task_dependencies, task_dependencies.c.upstream_id == tasks.c.id)
        .join(runs, runs.c.id == tasks.c.run_id)
        .where(task_dependencies.c.task_id == task_id)
        .order_by(tasks.c.position)
    ).all()
    outputs = []
    for row in upstream:
        run_key, attempt = row.run_key, row.attempt
        if row.reused_from is not None:
            origin = conn.execute(
                sa.select(tasks.c.attempt, runs.c.run_key)
                .join(runs, runs.c.id == tasks.c.run_id)
                .where(tasks.c.id == row.reused_from)
            ).one()
            run_key, attempt = origin.run_key, origin.attempt
        outputs.append(TaskOutput(row.name, run_key, attempt, TaskStatus(row.status) in TASK_SUCCEEDED, row.table_name))
    return tuple(outputs)


def _at_least(column: sa.Column[Any], total: float) -> sa.Case[Any]:
    """The larger of the column and the attempt's total: writing the same total twice counts it once."""
    return sa.case((column < total, total), else_=column)


def _progress_values(progress: Progress | None) -> dict[str, Any]:
    """The columns to change for progress gathered since the last write (nothing when empty). Counts are written
    as the attempt's running totals, never as increments, so a write that committed but whose answer was lost can
    be sent again without counting twice (RELIABILITY R4)."""
    if progress is None or progress.empty:
        return {}
    values: dict[str, Any] = {}
    if progress.records:
        values["records_processed"] = _at_least(tasks.c.records_processed, progress.records_total)
    if progress.note is not None:
        values["metrics_note"] = progress.note
    if progress.bytes:
        values["bytes_processed"] = _at_least(tasks.c.bytes_processed, progress.bytes_total)
    if progress.last_record_at is not None:
        values["last_record_at"] = progress.last_record_at
    if progress.latencies_ms:
        low, high = min(progress.latencies_ms), max(progress.latencies_ms)
        values.update(
            latency_ms_last=progress.latencies_ms[-1],
            latency_ms_min=sa.case(
                (tasks.c.latency_ms_min.is_(None) | (tasks.c.latency_ms_min > low), low), else_=tasks.c.latency_ms_min
            ),
            latency_ms_max=sa.case(
                (tasks.c.latency_ms_max.is_(None) | (tasks.c.latency_ms_max < high), high), else_=tasks.c.latency_ms_max
            ),
            latency_ms_sum=_at_least(tasks.c.latency_ms_sum, progress.latency_ms_total),
            latency_count=_at_least(tasks.c.latency_count, progress.latency_count_total),
        )
    return values
