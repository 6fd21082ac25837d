"""Spec 001: the real-time metrics of running tasks, for one flow (a run) or for all."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from runyard.api.contract import one_of
from runyard.api.deps import AdminDep, IdPath, StoreDep
from runyard.errors import InvalidInput
from runyard.services.metrics import (
    METRICS_TYPES,
    CheckedTask,
    check_running,
    code_summary,
    epoch_ms,
    now_utc,
)
from runyard.services.runs import get_run

router = APIRouter(tags=["task metrics (spec 001)"])
TypeQuery = Annotated[
    str | None, Query(description="stream, extract, load, task or hwm", json_schema_extra=one_of(METRICS_TYPES))
]


class TaskMetrics(BaseModel):
    """One running task, with the field names of spec 001."""

    requestId: str
    owner: str
    name: str
    started: int | None
    duration: int | None
    code: str
    type: str
    tenant: str
    language: None = None
    latency: float | None
    maxLatency: float | None
    minLatency: float | None
    avgLatency: float | None
    recordsProcessed: int
    recordsProcessedSinceLastCheck: int
    lastCheck: int
    lastTimeRecordsReceivedDate: int | None


# Spec 001 writes its paths with a trailing slash; both forms are served as they are, because a redirect would
# send the request again without its headers, or echo a `?Authorization=` token back in its Location.
@router.get("/etl/rest/v1/tasks/", response_model=list[TaskMetrics])
@router.get("/etl/rest/v1/tasks", response_model=list[TaskMetrics], include_in_schema=False)
def all_running(store: StoreDep, principal: AdminDep, type: TypeQuery = None) -> list[TaskMetrics]:
    """Every task running now in your account."""
    metrics_type = _type(type)
    with store.write() as conn:  # the check itself is remembered: one write per request (services.metrics)
        found = check_running(conn, principal.user_id, principal.account_id, metrics_type=metrics_type)
    return [_metrics(checked) for checked in found]


@router.get("/etl/rest/v1/tasks/{audit_id}/", response_model=list[TaskMetrics])
@router.get("/etl/rest/v1/tasks/{audit_id}", response_model=list[TaskMetrics], include_in_schema=False)
def flow_running(
    audit_id: IdPath,
    store: StoreDep,
    principal: AdminDep,
    type: TypeQuery = None,
) -> list[TaskMetrics]:
    """The tasks running now in one run (the audit id is the run id)."""
    with store.read() as conn:
        get_run(conn, audit_id, account_id=principal.account_id)  # 404 for another account's run
    metrics_type = _type(type)
    with store.write() as conn:
        found = check_running(conn, principal.user_id, principal.account_id, run_id=audit_id, metrics_type=metrics_type)
    return [_metrics(checked) for checked in found]


def _type(value: str | None) -> str | None:
    if value is not None and value not in METRICS_TYPES:
        raise InvalidInput("type", f"'{value}' is not a metrics type; use one of: {', '.join(METRICS_TYPES)}")
    return value


def _metrics(checked: CheckedTask) -> TaskMetrics:
    task = checked.task
    now = now_utc()
    now_ms = int(now.timestamp() * 1000)
    started = epoch_ms(task.started_at)
    duration = None if started is None else max(0, now_ms - started)
    return TaskMetrics(
        requestId=f"{task.run_key}/{task.task_id}",
        owner=task.owner,
        name=task.name,
        started=started,
        duration=duration,
        code=code_summary(task, now),
        type=task.metrics_type,
        tenant=task.account,
        latency=task.latency_last,
        maxLatency=task.latency_max,
        minLatency=task.latency_min,
        avgLatency=task.latency_avg,
        recordsProcessed=task.records,
        recordsProcessedSinceLastCheck=checked.records_since_last_check,
        lastCheck=now_ms,
        lastTimeRecordsReceivedDate=epoch_ms(task.last_record_at),
    )
