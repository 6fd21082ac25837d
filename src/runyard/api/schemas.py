"""The shapes the JSON API answers with, named per use (RunPublic, RunsPage, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from runyard.services.operations import OperationState, OperationView
from runyard.services.views import RunView, TaskView


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
    spec: dict[str, Any]
    state: OperationState = Field(
        description="active; inactive (deactivated: launches refused); archived (inactive, and out of default lists)"
    )
    created_at: datetime
    updated_at: datetime = Field(description="When a deploy last changed it, or its state last changed")

    @classmethod
    def of(cls, operation: OperationView) -> OperationPublic:
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
            spec=operation.spec,
            state=operation.state,
            created_at=operation.created_at,
            updated_at=operation.updated_at,
        )


class OperationStatusUpdate(StrictBody):
    """Spec 003's set_configuration_status flags: {true, false} activates, {false, false} deactivates,
    {false, true} archives; archived false unarchives. {true, true} is refused: archiving deactivates."""

    activated: bool
    archived: bool


class ConflictDetail(BaseModel):
    """A 409 that recorded nothing: the operation is deactivated or archived."""

    detail: str


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """The model serialized by pydantic in one pass (Rust), instead of FastAPI's validate-then-encode.

    Routes still declare `response_model`, so the OpenAPI document describes these answers.
    """
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")
