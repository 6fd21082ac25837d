"""Read models of runs and tasks, as the CLI, API and UI show them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from runyard.domain.statuses import RunStatus, RunType, TaskStatus, Trigger


@dataclass(frozen=True)
class RunView:
    id: int
    run_key: str
    job_name: str
    account_id: int
    operation_id: int
    configuration_id: str
    configuration_type: str
    environment: str
    run_type: RunType
    trigger: Trigger
    status: RunStatus
    retry_of: int | None
    blocked_by: int | None
    message: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancel_requested_at: datetime | None

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at
        return None if end is None else (end - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | RowMapping) -> RunView:
        return cls(
            id=row["id"],
            run_key=row["run_key"],
            job_name=row["job_name"],
            account_id=row["account_id"],
            operation_id=row["operation_id"],
            configuration_id=row["configuration_id"],
            configuration_type=row["configuration_type"],
            environment=row["environment"],
            run_type=RunType(row["run_type"]),
            trigger=Trigger(row["trigger"]),
            status=RunStatus(row["status"]),
            retry_of=row["retry_of"],
            blocked_by=row["blocked_by"],
            message=row["message"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            cancel_requested_at=row["cancel_requested_at"],
        )


@dataclass(frozen=True)
class TaskMessage:
    level: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class TaskView:
    id: int
    run_id: int
    position: int
    name: str
    stage: str
    metrics_type: str
    status: TaskStatus
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    completed_at: datetime | None
    records_processed: int
    reused_from: int | None
    bytes_processed: int = 0
    latency_ms: float | None = None  # the last measured (see services.metrics for what each type measures)
    tables: tuple[tuple[str, int], ...] = ()
    messages: tuple[TaskMessage, ...] = ()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()
