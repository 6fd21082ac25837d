"""The shapes the JSON API answers with, named per use (RunPublic, RunsPage, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from runyard.domain.alerts import Alert
from runyard.domain.notifications import ChannelKind
from runyard.params import MAX_ID
from runyard.services.operations import OperationState, OperationView
from runyard.services.schedules import schedule_timezone
from runyard.services.views import RunView, TaskView
from runyard.services.workflows import WorkflowStatus


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(StrictBody):
    type: Literal["incremental", "destructive"] = "incremental"


class LoginBody(StrictBody):
    login: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class RunPublic(BaseModel):
    id: int
    run_key: str
    job_name: str
    operation_id: int
    configuration_id: str
    configuration_type: str
    environment: str
    type: str
    trigger: str
    status: str
    status_label: str
    retry_of: int | None
    blocked_by: int | None
    message: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    message_count: int | None = None

    @classmethod
    def of(cls, run: RunView, message_count: int | None = None) -> RunPublic:
        return cls(
            id=run.id,
            run_key=run.run_key,
            job_name=run.job_name,
            operation_id=run.operation_id,
            configuration_id=run.configuration_id,
            configuration_type=run.configuration_type,
            environment=run.environment,
            type=run.run_type.value,
            trigger=run.trigger.value,
            status=run.status.value,
            status_label=run.status.label,
            retry_of=run.retry_of,
            blocked_by=run.blocked_by,
            message=run.message,
            created_at=run.created_at,
            started_at=run.started_at,
            completed_at=run.completed_at,
            duration_seconds=run.duration_seconds,
            message_count=message_count,
        )


class RunsPage(BaseModel):
    items: list[RunPublic]
    total: int
    page: int
    page_size: int


class RejectedRun(BaseModel):
    detail: str
    run: RunPublic


class TableCount(BaseModel):
    name: str
    record_count: int


class MessagePublic(BaseModel):
    level: str
    text: str
    created_at: datetime


class TaskPublic(BaseModel):
    id: int
    run_id: int
    position: int
    name: str
    stage: str
    metrics_type: str
    status: str
    status_label: str
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    records_processed: int
    bytes_processed: int = Field(description="Bytes the task moved (copies); 0 for tasks that count records only")
    latency_ms: float | None = Field(
        description="The last latency measured, in ms (extract: a page; load: the commit; stream: a change to "
        "its load); null before the first measurement"
    )
    reused_from: int | None
    tables: list[TableCount]
    message_count: int
    messages: list[MessagePublic]

    @classmethod
    def of(cls, task: TaskView) -> TaskPublic:
        return cls(
            id=task.id,
            run_id=task.run_id,
            position=task.position,
            name=task.name,
            stage=task.stage,
            metrics_type=task.metrics_type,
            status=task.status.value,
            status_label=task.status.label,
            attempt=task.attempt,
            worker_id=task.worker_id,
            started_at=task.started_at,
            completed_at=task.completed_at,
            duration_seconds=task.duration_seconds,
            records_processed=task.records_processed,
            bytes_processed=task.bytes_processed,
            latency_ms=task.latency_ms,
            reused_from=task.reused_from,
            tables=[TableCount(name=n, record_count=c) for n, c in task.tables],
            message_count=len(task.messages),
            messages=[MessagePublic(level=m.level, text=m.text, created_at=m.created_at) for m in task.messages],
        )


class TasksPage(BaseModel):
    items: list[TaskPublic]
    total: int
    page: int
    page_size: int


class OperationPublic(BaseModel):
    id: int
    account: str
    environment: str
    configuration_type: str
    configuration_id: str
    description: str
    activated: bool
    archived: bool
    schedule: str | None
    schedule_timezone: str = Field(default="UTC", description="The time zone of the schedule's times (IANA name)")
    previous_tick: datetime | None = Field(default=None, description="The last schedule tick handled (UTC)")
    next_tick: datetime | None = Field(
        default=None, description="The next schedule tick (UTC); null without a schedule or while not active"
    )
    spec: dict[str, Any]
    state: OperationState = Field(
        description="active; inactive (deactivated: launches refused); archived (inactive, and out of default lists)"
    )
    created_at: datetime
    updated_at: datetime = Field(description="When a deploy last changed it, or its state last changed")

    @classmethod
    def of(
        cls, operation: OperationView, ticks: tuple[datetime | None, datetime | None] = (None, None)
    ) -> OperationPublic:
        """`ticks`: (previous, next) from runyard.services.schedules.schedule_view."""
        return cls(
            id=operation.id,
            account=operation.account,
            environment=operation.environment,
            configuration_type=operation.configuration_type,
            configuration_id=operation.configuration_id,
            description=operation.description,
            activated=operation.activated,
            archived=operation.archived,
            schedule=operation.schedule,
            schedule_timezone=schedule_timezone(operation),
            previous_tick=ticks[0],
            next_tick=ticks[1],
            spec=operation.spec,
            state=operation.state,
            created_at=operation.created_at,
            updated_at=operation.updated_at,
        )


class OperationStatusUpdate(StrictBody):
    """Spec 003's set_configuration_status flags: {true, false} activates, {false, false} deactivates,
    {false, true} archives; archived false unarchives. {true, true} is refused: archiving deactivates."""

    # {true, true} documented as refused (a 400), so that clients and fuzzers can tell.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {"properties": {"activated": {"const": True}, "archived": {"const": True}}},
        },
    )

    activated: StrictBool  # JSON true or false: 0 and 1 are refused, as the document says
    archived: StrictBool


class ConflictDetail(BaseModel):
    """A 409 that recorded nothing: the operation is deactivated or archived."""

    detail: str


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """The model serialized by pydantic in one pass (Rust), instead of FastAPI's validate-then-encode.

    Routes still declare `response_model`, so the OpenAPI document describes these answers.
    """
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")


class UpstreamJobPublic(BaseModel):
    job_id: str
    configuration_type: str
    configuration_id: str
    environment: str
    operation_id: int | None = Field(description="null while the job is not deployed")
    successes: int = Field(description="Successes since the target was last launched, or the workflow reset")
    last_success_at: datetime | None
    last_success_run_id: int | None
    satisfied: bool


class WorkflowStatusPublic(BaseModel):
    workflow_id: int
    configuration_id: str
    satisfied: bool = Field(description="Every upstream has a success: the next evaluation launches the target")
    waiting_for: list[str] = Field(description="The job_ids of the upstreams with no success yet")
    upstreams: list[UpstreamJobPublic]
    target_job_id: str
    target_operation_id: int | None
    last_triggered_at: datetime | None
    last_trigger_run_id: int | None = Field(description="The target's run it launched last (or recorded Rejected)")
    reset_at: datetime | None

    @classmethod
    def of(cls, status: WorkflowStatus) -> WorkflowStatusPublic:
        return cls(
            workflow_id=status.workflow_id,
            configuration_id=status.configuration_id,
            satisfied=status.satisfied,
            waiting_for=[upstream.job_id for upstream in status.waiting_for],
            upstreams=[
                UpstreamJobPublic(
                    job_id=u.job_id,
                    configuration_type=u.configuration_type,
                    configuration_id=u.configuration_id,
                    environment=u.environment,
                    operation_id=u.operation_id,
                    successes=u.successes,
                    last_success_at=u.last_success_at,
                    last_success_run_id=u.last_success_run_id,
                    satisfied=u.satisfied,
                )
                for u in status.upstreams
            ],
            target_job_id=status.target_job_id,
            target_operation_id=status.target_operation_id,
            last_triggered_at=status.last_triggered_at,
            last_trigger_run_id=status.last_trigger_run_id,
            reset_at=status.reset_at,
        )


# --- alerts -------------------------------------------------------------------------------------------------------


class AlertPublic(BaseModel):
    id: int
    operation_id: int
    configuration_id: str
    run_id: int | None
    run_type: str | None
    kind: str = Field(description="failed, completed_with_errors, running_long, rows_low, rows_high or overdue")
    kind_label: str
    state: str = Field(description="open, silenced or resolved (a silence ends by itself at silenced_until)")
    summary: str
    evidence: str = Field(description="Why, in numbers: 'ran 42 min so far; its last 20 incremental runs took 6-9 min'")
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    silenced_until: datetime | None

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        return cls(
            id=alert.id,
            operation_id=alert.operation_id,
            configuration_id=alert.configuration_id,
            run_id=alert.run_id,
            run_type=alert.run_type,
            kind=alert.kind.value,
            kind_label=alert.kind.label,
            state=alert.state.value,
            summary=alert.summary,
            evidence=alert.evidence,
            opened_at=alert.opened_at,
            updated_at=alert.updated_at,
            resolved_at=alert.resolved_at,
            resolution=alert.resolution,
            silenced_until=alert.silenced_until,
        )


class AlertsPage(BaseModel):
    items: list[AlertPublic]
    total: int
    page: int
    page_size: int


class SilenceBody(StrictBody):
    """How long to silence an alert: `minutes` from now, or `until` a time (with its zone); one of the two."""

    # Exactly one of the two, as the document says (a `oneOf` that fuzzers and clients can check).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["minutes"], "properties": {"minutes": {"type": "integer"}, "until": {"type": "null"}}},
                {"required": ["until"], "properties": {"until": {"type": "string"}, "minutes": {"type": "null"}}},
            ]
        },
    )

    minutes: int | None = Field(default=None, ge=1, le=366 * 24 * 60)
    until: datetime | None = None


# --- notifications --------------------------------------------------------------------------------------------


class ChannelCreate(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(
        max_length=20,
        description="webhook (Slack, Microsoft Teams or any JSON receiver) or email",
        json_schema_extra={"enum": [kind.value for kind in ChannelKind]},
    )
    target: str = Field(
        min_length=1, max_length=2000, description="The webhook URL (http or https), or comma-separated addresses"
    )


class ChannelPublic(BaseModel):
    id: int
    name: str
    kind: str
    target: str = Field(description="A webhook URL masked (scheme://host/…last4); email addresses whole")
    created_at: datetime


class ChannelTestPublic(BaseModel):
    delivered: bool
    error: str | None = Field(description="Why the receiver did not take it (never the URL)")


class RuleCreate(StrictBody):
    channel_id: int = Field(ge=1, le=MAX_ID)
    kinds: list[str] | None = Field(default=None, description="Alert kinds to send; null or absent: every kind")
    operation_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this operation's alerts")
    notify_resolved: bool = Field(default=True, description="Also send when an alert resolves")


class RulePublic(BaseModel):
    id: int
    channel_id: int
    channel_name: str
    kinds: list[str] | None
    operation_id: int | None
    configuration_id: str | None
    notify_resolved: bool
    created_at: datetime


class DeliveryPublic(BaseModel):
    id: int
    alert_id: int
    channel_id: int
    channel_name: str
    event: str
    status: str = Field(description="pending, sending, sent or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime


class DeliveriesPage(BaseModel):
    items: list[DeliveryPublic]
    total: int
    page: int
    page_size: int
