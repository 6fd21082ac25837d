"""Launch, cancel and retry runs; read them back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.rate_limits import SlidingWindow, whole_seconds
from runyard.domain.runs import (
    RunSnapshot,
    cancel_target,
    make_job_name,
    make_run_key,
    one_active_run_per_operation,
    retry_only_latest,
)
from runyard.domain.statuses import RUN_ACTIVE, TASK_SUCCEEDED, RunStatus, RunType, TaskStatus, Trigger
from runyard.errors import Conflict, LaunchThrottled, NotFound, RunRejected
from runyard.faults import crash_point, lost_ack
from runyard.operations import registry
from runyard.operations.definition import PlanRequest
from runyard.services import launch_keys
from runyard.services.history import record_event
from runyard.services.operations import OperationView, get_operation
from runyard.services.settle import settle_run
from runyard.services.task_graph import insert_tasks
from runyard.services.views import RunView
from runyard.services.wakeup import Wakeup
from runyard.services.work_signal import announce_work, wake_workers
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import operations, runs, tasks

_ACTIVE = [s.value for s in RUN_ACTIVE]
_LAUNCH_ATTEMPTS = 5
REJECTED_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class LaunchOutcome:
    """What launch_in wrote: the run, accepted (Waiting to Start) or recorded as Rejected behind `blocked_by`."""

    run_id: int
    accepted: bool
    blocked_by: int | None
    operation: OperationView


@dataclass(frozen=True)
class LaunchRequest:
    operation_id: int
    run_type: RunType = RunType.INCREMENTAL
    trigger: Trigger = Trigger.MANUAL
    account_id: int | None = None  # when set, the operation must belong to this account
    created_by: int | None = None
    retry_of: int | None = None
    execution_date: date | None = None  # default: the launch's date; a retry keeps its run's
    # A client's Idempotency-Key (runyard.services.launch_keys): sent again with the same request, the same run.
    idempotency_key: str | None = None

    def described(self) -> str:
        """This request in words, as its idempotency key remembers it."""
        return launch_keys.describe(self.operation_id, self.run_type.value, self.retry_of)


class RunService:
    """The run lifecycle as people and schedules drive it. Workers use runyard.services.tasks."""

    def __init__(self, store: Store, wakeup: Wakeup | None = None, *, rejected_per_minute: int | None = None) -> None:
        self.store = store
        self.wakeup = wakeup
        # People's launches only (launch): schedules and workflows launch through launch_in at their own pace.
        self.rejected_limit = (
            None if rejected_per_minute is None else SlidingWindow(rejected_per_minute, REJECTED_WINDOW)
        )

    def launch(self, request: LaunchRequest) -> RunView:
        """Accept the run, or record it as Rejected and raise RunRejected: one active run per operation.

        The partial unique index over active runs is what guarantees it; a launch that loses a race
        to it is recorded as Rejected on the next pass. Past `rejected_per_minute` Rejected runs of the operation
        in the last minute, LaunchThrottled, and nothing is recorded.
        """
        for _ in range(_LAUNCH_ATTEMPTS):
            try:
                with self.store.write() as conn:
                    outcome = self.launch_in(conn, request, rejected_limit=self.rejected_limit)
                    # Read in the launch's own transaction: the answer is the run as launched, not whatever a
                    # worker woken a moment later has made of it.
                    launched = get_run(conn, outcome.run_id)
                    crash_point("launch.before_commit")  # the run and its tasks written, not yet committed
            except sa.exc.IntegrityError as error:
                if not is_launch_race(error):
                    raise
                continue
            crash_point("launch.after_commit")  # committed, nobody answered yet
            lost_ack("launch")  # test-only (RUNYARD_LOSE_ACK): committed, and the caller sees a dropped connection
            if outcome.accepted:
                self._notify()
                return launched
            raise RunRejected(outcome.operation.configuration_id, outcome.run_id, outcome.blocked_by)
        raise Conflict("the operation's runs changed too fast to launch; try again")  # pragma: no cover

    def launch_in(
        self, conn: Connection, request: LaunchRequest, *, rejected_limit: SlidingWindow | None = None
    ) -> LaunchOutcome:
        """The launch, inside the caller's write transaction (a schedule tick or a workflow trigger writes its own
        bookkeeping in the same one). Raises IntegrityError when a concurrent launch won the one-active-run index
        (`is_launch_race`): the caller rolls back and tries again. The caller wakes the workers after the commit.
        With `rejected_limit`, a launch that would be Rejected past it raises LaunchThrottled instead.
        """
        # Held until commit, so a deactivation or archive waits for this launch or sees its run.
        conn.execute(
            dialect.lock_for_write(sa.select(operations.c.id).where(operations.c.id == request.operation_id), conn)
        )
        operation = get_operation(conn, request.operation_id, account=request.account_id)
        now = self.store.now(conn)
        if request.idempotency_key is not None:
            launch_keys.lock(conn, operation.account_id, request.idempotency_key)
            made = launch_keys.recall(conn, operation.account_id, request.idempotency_key, request.described(), now)
            if made is not None:  # the same request again: its run, whatever became of the operation since
                run = get_run(conn, made)
                accepted = run.status is not RunStatus.REJECTED
                return LaunchOutcome(made, accepted, run.blocked_by, operation)
        if operation.archived:
            raise Conflict(f"operation {operation.configuration_id} is archived; it cannot be launched")
        if not operation.activated:
            raise Conflict(f"operation {operation.configuration_id} is deactivated; activate it to launch it")
        kind = registry.operation_type(operation.configuration_type)
        if not kind.launchable:
            raise Conflict(
                f"operation {operation.configuration_id} is a {operation.configuration_type}, which is not launched: "
                f"{kind.description}"
            )
        active = conn.execute(
            sa.select(runs.c.id).where(runs.c.operation_id == operation.id, runs.c.status.in_(_ACTIVE))
        ).scalar()
        decision = one_active_run_per_operation(active)
        if not decision.accepted and rejected_limit is not None:
            _check_rejected_limit(conn, operation, decision.blocked_by, rejected_limit, now)
        execution_date = request.execution_date or now.date()
        planned = (
            registry.plan(operation.configuration_type, operation.spec, PlanRequest(request.run_type, execution_date))
            if decision.accepted
            else []
        )
        run_id = self._insert_run(conn, operation, request, decision.status, decision.blocked_by, execution_date, now)
        if request.idempotency_key is not None:
            launch_keys.remember(conn, operation.account_id, request.idempotency_key, request.described(), run_id, now)
        if decision.accepted:
            insert_tasks(
                conn,
                run_id,
                planned,
                now,
                reusable=self._reusable_outputs(conn, request.retry_of),
                retry_of=request.retry_of,
            )
            settle_run(conn, run_id, now)
            announce_work(conn)  # its roots are ready: other processes' workers are woken at commit
        return LaunchOutcome(run_id, decision.accepted, decision.blocked_by, operation)

    def notify_workers(self) -> None:
        """Wake the idle worker slots, this process's and (SQLite) the others': after committing a launch_in."""
        self._notify()

    def _insert_run(
        self,
        conn: Connection,
        operation: OperationView,
        request: LaunchRequest,
        status: RunStatus,
        blocked_by: int | None,
        execution_date: date,
        now: datetime,
    ) -> int:
        run_key = make_run_key(now, uuid.uuid4())
        rejected = status is RunStatus.REJECTED
        run_id = int(
            conn.execute(
                runs.insert()
                .values(
                    account_id=operation.account_id,
                    operation_id=operation.id,
                    run_key=run_key,
                    job_name=make_job_name(operation.configuration_id, run_key),
                    run_type=request.run_type.value,
                    trigger=request.trigger.value,
                    status=status.value,
                    retry_of=request.retry_of,
                    blocked_by=blocked_by,
                    execution_date=execution_date,
                    message=f"Run {blocked_by} of this operation was still active" if rejected else "",
                    created_by=request.created_by,
                    created_at=now,
                    completed_at=now if rejected else None,
                    updated_at=now,
                )
                .returning(runs.c.id)
            ).scalar_one()
        )
        record_event(conn, run_id, "run_created", now, status=status.value)
        return run_id

    def _reusable_outputs(self, conn: Connection, run_id: int | None) -> dict[str, int]:
        """Task name -> the task whose output a retry reuses (the original one, across retries of retries).

        The rows are locked (PostgreSQL) until the retry commits: the staging sweep (runyard.worker.scheduler.
        forget_outputs) waits for it, and then sees the retry, instead of removing files it is about to read."""
        if run_id is None:
            return {}
        query = sa.select(tasks.c.name, tasks.c.id, tasks.c.reused_from).where(
            tasks.c.run_id == run_id,
            tasks.c.reusable.is_(True),
            tasks.c.status.in_([s.value for s in TASK_SUCCEEDED]),
        )
        rows = conn.execute(dialect.lock_for_write(query, conn))
        return {row.name: row.reused_from or row.id for row in rows}

    def cancel(self, run_id: int, *, account_id: int | None = None) -> RunView:
        """Waiting and running runs go to Canceling; the run is Canceled once no task runs."""
        with self.store.write() as conn:
            # The run's row is locked first, then its tasks written: the lock order of runyard.services.settle.
            snapshot = self._snapshot(conn, run_id, account_id, lock=True)
            target = cancel_target(snapshot)
            now = self.store.now(conn)
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status == snapshot.status.value)
                .values(status=target.value, cancel_requested_at=now, updated_at=now)
            )
            record_event(conn, run_id, "cancel_requested", now, status=target.value)
            conn.execute(
                tasks.update()
                .where(tasks.c.run_id == run_id, tasks.c.status == TaskStatus.WAITING_TO_START.value)
                .values(status=TaskStatus.CANCELED.value, completed_at=now, updated_at=now)
            )
            settle_run(conn, run_id, now)
        return self.get_run(run_id)

    def retry(
        self,
        run_id: int,
        *,
        account_id: int | None = None,
        created_by: int | None = None,
        idempotency_key: str | None = None,
    ) -> RunView:
        """A new run linked by retry_of, reusing the output of the tasks that completed. With `idempotency_key`, the
        same retry sent again answers the run the first one made (it is no longer the latest run, so it would be
        refused otherwise)."""
        if idempotency_key is not None:
            replayed = self._replayed_retry(run_id, account_id, idempotency_key)
            if replayed is not None:
                return replayed
        with self.store.read() as conn:
            snapshot = self._snapshot(conn, run_id, account_id)
            latest = conn.execute(
                sa.select(sa.func.max(runs.c.id)).where(
                    runs.c.operation_id == snapshot.operation_id, runs.c.status != RunStatus.REJECTED.value
                )
            ).scalar()
            original = conn.execute(sa.select(runs.c.run_type, runs.c.execution_date).where(runs.c.id == run_id)).one()
        retry_only_latest(snapshot, latest)
        return self.launch(
            LaunchRequest(
                operation_id=snapshot.operation_id,
                run_type=RunType(original.run_type),
                trigger=Trigger.RETRY,
                account_id=account_id,
                created_by=created_by,
                retry_of=run_id,
                execution_date=original.execution_date,
                idempotency_key=idempotency_key,
            )
        )

    def _replayed_retry(self, run_id: int, account_id: int | None, key: str) -> RunView | None:
        """The run an earlier retry with this key made; None when there is none yet (then launch_in, which holds the
        key's lock, looks again before it makes one)."""
        with self.store.read() as conn:
            original = get_run(conn, run_id, account_id=account_id)
            request = launch_keys.describe(original.operation_id, original.run_type.value, run_id)
            made = launch_keys.recall(conn, original.account_id, key, request, self.store.now(conn))
            replayed = None if made is None else get_run(conn, made)
        if replayed is not None and replayed.status is RunStatus.REJECTED:
            raise RunRejected(replayed.configuration_id, replayed.id, replayed.blocked_by)
        return replayed

    def _snapshot(self, conn: Connection, run_id: int, account_id: int | None, *, lock: bool = False) -> RunSnapshot:
        query = sa.select(runs.c.id, runs.c.operation_id, runs.c.status).where(runs.c.id == run_id)
        if account_id is not None:
            query = query.where(runs.c.account_id == account_id)
        if lock:
            query = dialect.lock_for_write(query, conn)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound("run", run_id)
        return RunSnapshot(id=row.id, operation_id=row.operation_id, status=RunStatus(row.status))

    def get_run(self, run_id: int, *, account_id: int | None = None) -> RunView:
        with self.store.read() as conn:
            return get_run(conn, run_id, account_id=account_id)

    def _notify(self) -> None:
        wake_workers(self.store, self.wakeup)


def is_launch_race(error: sa.exc.IntegrityError) -> bool:
    """Whether a launch lost a race to another launch of the same operation: roll back and try again."""
    return dialect.is_unique_violation(error, "uq_runs_one_active_per_operation")


RUN_COLUMNS: tuple[Any, ...] = (
    *runs.c,
    operations.c.configuration_id,
    operations.c.configuration_type,
    operations.c.environment,
)


def get_run(conn: Connection, run_id: int, *, account_id: int | None = None) -> RunView:
    query = sa.select(*RUN_COLUMNS).join(operations, operations.c.id == runs.c.operation_id).where(runs.c.id == run_id)
    if account_id is not None:
        query = query.where(runs.c.account_id == account_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("run", run_id)
    return RunView.from_row(row)


def _check_rejected_limit(
    conn: Connection, operation: OperationView, active_run_id: int | None, limit: SlidingWindow, now: datetime
) -> None:
    """LaunchThrottled when the operation already has `limit.limit` Rejected runs inside the window. Counted from the
    runs themselves (the operation's row is locked, so concurrent launches count one at a time): no state of its own.
    """
    newest = (
        sa.select(runs.c.created_at)
        .where(
            runs.c.account_id == operation.account_id,
            runs.c.operation_id == operation.id,
            runs.c.status == RunStatus.REJECTED.value,
            runs.c.created_at > limit.cutoff(now),
        )
        .order_by(runs.c.id.desc())
        .limit(limit.limit)
    )
    wait = limit.wait(conn.execute(newest).scalars(), now)
    if wait is not None:
        raise LaunchThrottled(operation.configuration_id, active_run_id, limit.limit, whole_seconds(wait))
