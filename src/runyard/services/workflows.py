"""Workflows launch their target once every upstream job has succeeded since the last launch (spec 003).

A success is counted when its run finishes (runyard.services.workflow_counts). Then `fire_pending` evaluates
each workflow marked pending, in one write transaction per workflow that holds the workflow's row:

- every upstream has at least one success: the target is launched (trigger `workflow`) and one success of
  each upstream is consumed, in that same transaction, so that two upstreams succeeding at once in two
  processes launch the target exactly once;
- the target is already running: the launch is recorded as a Rejected run and nothing is consumed;
- the workflow, or its target, is deactivated or archived, or the target is not deployed: nothing launches,
  nothing is consumed, and the reason is logged.

The process that finishes an upstream run calls it at once (the target starts within a second); the scheduler
calls it on every sweep too, for a process that died between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import Trigger
from runyard.errors import NotFound
from runyard.operations.job_ids import job_id
from runyard.operations.workflow.definition import WORKFLOW
from runyard.operations.workflow.jobs import resolve_jobs
from runyard.services.operations import OperationView, get_operation
from runyard.services.runs import LaunchRequest, RunService, is_launch_race
from runyard.services.workflow_counts import consume_one_each, forget_counts, upstream_rows
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import accounts, operations, workflow_states

log = logging.getLogger("runyard.workflows")
_ATTEMPTS = 5


class TriggerResult(StrEnum):
    LAUNCHED = "launched"
    REJECTED = "rejected"  # the target was running: a Rejected run is recorded, nothing consumed
    WAITING = "waiting"  # an upstream has no success yet
    HELD = "held"  # the workflow or its target cannot launch now (deactivated, archived, not deployed)


@dataclass(frozen=True)
class TriggerOutcome:
    workflow_id: int
    result: TriggerResult
    run_id: int | None = None
    reason: str = ""  # for the log, in words


def fire_pending(store: Store, runs: RunService, workflow_ids: Iterable[int] | None = None) -> list[TriggerOutcome]:
    """Evaluate the workflows marked pending (only those of `workflow_ids` when given)."""
    query = sa.select(workflow_states.c.workflow_id).where(workflow_states.c.pending.is_(True))
    if workflow_ids is not None:
        query = query.where(workflow_states.c.workflow_id.in_(list(workflow_ids)))
    with store.read() as conn:
        pending = [int(value) for value in conn.execute(query.order_by(workflow_states.c.workflow_id)).scalars()]
    outcomes = [outcome for workflow_id in pending if (outcome := _evaluate(store, runs, workflow_id)) is not None]
    if any(outcome.result is TriggerResult.LAUNCHED for outcome in outcomes):
        runs.notify_workers()
    return outcomes


def _evaluate(store: Store, runs: RunService, workflow_id: int) -> TriggerOutcome | None:
    for _ in range(_ATTEMPTS):
        try:
            with store.write() as conn:
                outcome = _evaluate_in(conn, runs, workflow_id, store.now(conn))
        except sa.exc.IntegrityError as error:
            if not is_launch_race(error):
                raise
            continue
        if outcome is not None and outcome.result is not TriggerResult.WAITING:
            log.info("workflow %d: %s", workflow_id, outcome.reason)
        return outcome
    return None  # still pending: the next sweep evaluates it again


def _evaluate_in(conn: Connection, runs: RunService, workflow_id: int, now: datetime) -> TriggerOutcome | None:
    conn.execute(dialect.lock_for_write(sa.select(operations.c.id).where(operations.c.id == workflow_id), conn))
    state = conn.execute(
        dialect.lock_for_write(
            sa.select(workflow_states.c.pending).where(workflow_states.c.workflow_id == workflow_id), conn
        )
    ).scalar()
    if not state:
        return None  # another process evaluated it since it was read
    conn.execute(workflow_states.update().where(workflow_states.c.workflow_id == workflow_id).values(pending=False))
    workflow = get_operation(conn, workflow_id)
    if not workflow.activated or workflow.archived:
        return TriggerOutcome(
            workflow_id,
            TriggerResult.HELD,
            reason=f"{workflow.configuration_id} launches nothing: it is {workflow.state.label.lower()}",
        )
    rows = upstream_rows(conn, workflow_id, lock=True)
    if not rows or any(row.successes < 1 for row in rows):
        return TriggerOutcome(workflow_id, TriggerResult.WAITING)
    target = _target(conn, workflow)
    if target is None:
        return TriggerOutcome(
            workflow_id,
            TriggerResult.HELD,
            reason=f"{workflow.configuration_id} cannot launch its target: it is not deployed; successes kept",
        )
    if not target.activated or target.archived:
        return TriggerOutcome(
            workflow_id,
            TriggerResult.HELD,
            reason=f"{workflow.configuration_id} cannot launch {target.configuration_id}: it is "
            f"{target.state.label.lower()}; successes kept",
        )
    launched = runs.launch_in(conn, LaunchRequest(operation_id=target.id, trigger=Trigger.WORKFLOW))
    conn.execute(
        workflow_states.update()
        .where(workflow_states.c.workflow_id == workflow_id)
        .values(last_triggered_at=now, last_trigger_run_id=launched.run_id)
    )
    if not launched.accepted:
        return TriggerOutcome(
            workflow_id,
            TriggerResult.REJECTED,
            launched.run_id,
            f"{workflow.configuration_id}: run {launched.run_id} of {target.configuration_id} was Rejected, run "
            f"{launched.blocked_by} of it was still active; successes kept",
        )
    consume_one_each(conn, [row.id for row in rows])
    return TriggerOutcome(
        workflow_id,
        TriggerResult.LAUNCHED,
        launched.run_id,
        f"{workflow.configuration_id} launched run {launched.run_id} of {target.configuration_id}: every upstream job "
        "succeeded; one success of each is consumed",
    )


def _target(conn: Connection, workflow: OperationView) -> OperationView | None:
    ref = resolve_jobs(workflow.spec).target
    found = conn.execute(
        sa.select(operations.c.id)
        .join(accounts, accounts.c.id == operations.c.account_id)
        .where(
            accounts.c.name == ref.account,
            operations.c.environment == ref.environment,
            operations.c.configuration_type == ref.configuration_type,
            operations.c.configuration_id == ref.configuration_id,
        )
    ).scalar()
    return None if found is None else get_operation(conn, int(found))


def reset_workflow(store: Store, workflow_id: int, *, account: int | None = None) -> None:
    """Forget every count: the workflow starts again as when it was just deployed (spec 003's reset)."""
    with store.write() as conn:
        conn.execute(dialect.lock_for_write(sa.select(operations.c.id).where(operations.c.id == workflow_id), conn))
        workflow = get_operation(conn, workflow_id, account=account)
        if workflow.configuration_type != WORKFLOW:
            raise NotFound("workflow", workflow.configuration_id)
        forget_counts(conn, workflow_id)
        conn.execute(
            workflow_states.update()
            .where(workflow_states.c.workflow_id == workflow_id)
            .values(pending=False, reset_at=store.now(conn))
        )
    log.info("workflow %s: reset, every count forgotten", workflow.configuration_id)


@dataclass(frozen=True)
class UpstreamStatus:
    job_id: str
    configuration_type: str
    configuration_id: str
    environment: str
    operation_id: int | None  # None: not deployed (yet)
    successes: int  # since the last launch of the target (or the last reset)
    last_success_at: datetime | None
    last_success_run_id: int | None

    @property
    def satisfied(self) -> bool:
        return self.successes >= 1


@dataclass(frozen=True)
class WorkflowStatus:
    """What a workflow waits for: the panel of the Sources page and GET /api/v1/operations/{id}/workflow."""

    workflow_id: int
    configuration_id: str
    upstreams: tuple[UpstreamStatus, ...]
    target_job_id: str
    target_operation_id: int | None
    last_triggered_at: datetime | None
    last_trigger_run_id: int | None
    reset_at: datetime | None

    @property
    def satisfied(self) -> bool:
        return all(upstream.satisfied for upstream in self.upstreams)

    @property
    def waiting_for(self) -> tuple[UpstreamStatus, ...]:
        return tuple(upstream for upstream in self.upstreams if not upstream.satisfied)


def workflow_status(conn: Connection, workflow_id: int, *, account: int | None = None) -> WorkflowStatus:
    workflow = get_operation(conn, workflow_id, account=account)
    if workflow.configuration_type != WORKFLOW:
        raise NotFound("workflow", workflow.configuration_id)
    upstreams = tuple(
        UpstreamStatus(
            job_id=_job_id_of(conn, workflow.account, row.environment, row.configuration_type, row.configuration_id),
            configuration_type=row.configuration_type,
            configuration_id=row.configuration_id,
            environment=row.environment,
            operation_id=_operation_id(
                conn, row.account_id, row.environment, row.configuration_type, row.configuration_id
            ),
            successes=int(row.successes),
            last_success_at=row.last_success_at,
            last_success_run_id=row.last_success_run_id,
        )
        for row in upstream_rows(conn, workflow_id)
    )
    ref = resolve_jobs(workflow.spec).target
    state = conn.execute(sa.select(workflow_states).where(workflow_states.c.workflow_id == workflow_id)).first()
    return WorkflowStatus(
        workflow_id=workflow_id,
        configuration_id=workflow.configuration_id,
        upstreams=upstreams,
        target_job_id=_job_id_of(
            conn, str(ref.account), str(ref.environment), ref.configuration_type, ref.configuration_id
        ),
        target_operation_id=_operation_id(
            conn, workflow.account_id, str(ref.environment), ref.configuration_type, ref.configuration_id
        ),
        last_triggered_at=state.last_triggered_at if state else None,
        last_trigger_run_id=state.last_trigger_run_id if state else None,
        reset_at=state.reset_at if state else None,
    )


def _operation_id(conn: Connection, account_id: int, environment: str, kind: str, configuration_id: str) -> int | None:
    found = conn.execute(
        sa.select(operations.c.id).where(
            operations.c.account_id == account_id,
            operations.c.environment == environment,
            operations.c.configuration_type == kind,
            operations.c.configuration_id == configuration_id,
        )
    ).scalar()
    return None if found is None else int(found)


def _job_id_of(conn: Connection, account: str, environment: str, kind: str, configuration_id: str) -> str:
    spec = conn.execute(
        sa.select(operations.c.spec)
        .join(accounts, accounts.c.id == operations.c.account_id)
        .where(
            accounts.c.name == account,
            operations.c.environment == environment,
            operations.c.configuration_type == kind,
            operations.c.configuration_id == configuration_id,
        )
    ).scalar()
    return job_id(
        account=account,
        environment=environment,
        configuration_type=kind,
        configuration_id=configuration_id,
        spec=spec or {},
    )
