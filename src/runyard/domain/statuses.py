"""Run and task statuses, with the labels people see (spec 000, "View API Run Statuses")."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    WAITING_TO_START = "waiting_to_start"  # accepted, no task claimed yet
    RUNNING = "running"  # at least one task has been claimed
    COMPLETED = "completed"  # final: every task succeeded
    COMPLETED_WITH_ERRORS = "completed_with_errors"  # final: loaded, but non-critical problems were found
    FAILED = "failed"  # final: a required task failed
    CANCELING = "canceling"  # cancel requested; tasks are stopping
    CANCELED = "canceled"  # final: stopped on request, nothing reached the warehouse tables
    REJECTED = "rejected"  # final: launched while another run of its operation was active

    @property
    def label(self) -> str:
        return _RUN_LABELS[self]

    @property
    def is_final(self) -> bool:
        return self in RUN_FINAL


_RUN_LABELS: dict[RunStatus, str] = {
    RunStatus.WAITING_TO_START: "Waiting to Start",
    RunStatus.RUNNING: "Running",
    RunStatus.COMPLETED: "Completed",
    RunStatus.COMPLETED_WITH_ERRORS: "Completed with Errors",
    RunStatus.FAILED: "Failed",
    RunStatus.CANCELING: "Canceling",
    RunStatus.CANCELED: "Canceled",
    RunStatus.REJECTED: "Rejected - previous load still running",
}

#: The statuses that hold an operation: at most one run per operation is in one of them.
RUN_ACTIVE = frozenset({RunStatus.WAITING_TO_START, RunStatus.RUNNING, RunStatus.CANCELING})
RUN_FINAL = frozenset(set(RunStatus) - RUN_ACTIVE)
RUN_SUCCEEDED = frozenset({RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS})
RUN_RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELED})

#: Spec 003's run statuses (`/v1/dag/status`), the one place they are mapped from runyard's. Completed with Errors
#: keeps its difference (its data loaded, with non-critical problems): scripts waiting for a run to end treat
#: SUCCESS_WITH_ERRORS, like SUCCESS, FAILED, CANCELED and REJECTED, as final.
SPEC003_STATUS: dict[RunStatus, str] = {
    RunStatus.WAITING_TO_START: "WAITING",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.COMPLETED: "SUCCESS",
    RunStatus.COMPLETED_WITH_ERRORS: "SUCCESS_WITH_ERRORS",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELING: "CANCELING",
    RunStatus.CANCELED: "CANCELED",
    RunStatus.REJECTED: "REJECTED",
}


class TaskStatus(StrEnum):
    WAITING_TO_START = "waiting_to_start"  # not claimed yet (ready or waiting on dependencies)
    RUNNING = "running"  # claimed by a worker holding a lease
    COMPLETED = "completed"  # final: its output is written
    COMPLETED_WITH_ERRORS = "completed_with_errors"  # final: output written, with non-critical problems
    FAILED = "failed"  # final: gave up after its attempts
    SKIPPED = "skipped"  # final: never ran because a task it needs failed
    CANCELED = "canceled"  # final: stopped or never started because its run was canceled

    @property
    def label(self) -> str:
        return _TASK_LABELS[self]

    @property
    def is_final(self) -> bool:
        return self in TASK_FINAL


_TASK_LABELS: dict[TaskStatus, str] = {
    TaskStatus.WAITING_TO_START: "Waiting to Start",
    TaskStatus.RUNNING: "Running",
    TaskStatus.COMPLETED: "Completed",
    TaskStatus.COMPLETED_WITH_ERRORS: "Completed with Errors",
    TaskStatus.FAILED: "Failed",
    TaskStatus.SKIPPED: "Skipped",
    TaskStatus.CANCELED: "Canceled",
}

TASK_SUCCEEDED = frozenset({TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS})
TASK_FINAL = frozenset({*TASK_SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELED})
TASK_UNSUCCESSFUL = TASK_FINAL - TASK_SUCCEEDED


class RunType(StrEnum):
    INCREMENTAL = "incremental"  # only what changed since the last high watermark; merges on the key
    DESTRUCTIVE = "destructive"  # everything; replaces the tables


class Trigger(StrEnum):
    MANUAL = "manual"
    API = "api"
    SCHEDULE = "schedule"
    WORKFLOW = "workflow"
    RETRY = "retry"


class Role(StrEnum):
    ADMINISTRATOR = "administrator"  # everything, users and tokens included
    OPERATOR = "operator"  # launch, retry, cancel
    VIEWER = "viewer"  # read only
