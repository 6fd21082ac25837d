"""Rules about runs: launching, retrying, canceling, and how runs are named.

Rules decide, they do not do: each takes a plain snapshot and returns a decision that
the services write to the store in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from runyard.domain.statuses import RUN_ACTIVE, RUN_RETRYABLE, RunStatus
from runyard.domain.transitions import check_run_transition
from runyard.errors import CancelNotAllowed, RetryNotAllowed


@dataclass(frozen=True)
class RunSnapshot:
    id: int
    operation_id: int
    status: RunStatus

    def with_status(self, status: RunStatus) -> RunSnapshot:
        check_run_transition(self.status, status)
        return replace(self, status=status)


@dataclass(frozen=True)
class LaunchDecision:
    status: RunStatus  # WAITING_TO_START when accepted, REJECTED otherwise
    blocked_by: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status is RunStatus.WAITING_TO_START


def one_active_run_per_operation(active_run_id: int | None) -> LaunchDecision:
    """A launch is accepted only when no run of the operation is active."""
    if active_run_id is None:
        return LaunchDecision(RunStatus.WAITING_TO_START)
    return LaunchDecision(RunStatus.REJECTED, blocked_by=active_run_id)


def retry_only_latest(run: RunSnapshot, latest_run_id: int | None) -> None:
    """Retry is for the most recent run of its operation (Rejected runs aside), once it Failed or was Canceled.

    Raises RetryNotAllowed with the reason a person can act on.
    """
    if run.status not in RUN_RETRYABLE:
        raise RetryNotAllowed(run.id, f"it is {run.status.label}; only a Failed or Canceled run can be retried")
    if latest_run_id is not None and latest_run_id != run.id:
        raise RetryNotAllowed(
            run.id, f"run {latest_run_id} is more recent; only the most recent run of an operation can be retried"
        )


def cancel_target(run: RunSnapshot) -> RunStatus:
    """A waiting or running run goes to Canceling. Anything else is refused."""
    if run.status is RunStatus.CANCELING:
        raise CancelNotAllowed(run.id, "a cancellation is already in progress")
    if run.status not in RUN_ACTIVE:
        raise CancelNotAllowed(run.id, f"it already ended as {run.status.label}")
    check_run_transition(run.status, RunStatus.CANCELING)
    return RunStatus.CANCELING


def make_run_key(created_at: datetime, uid: uuid.UUID | None = None) -> str:
    """`YYYYMMDD-HHMMSS-<uuid4>`: the run_id of spec 003."""
    return f"{created_at:%Y%m%d-%H%M%S}-{uid or uuid.uuid4()}"


def run_key_moment(run_key: str) -> datetime:
    """When the run was created, as its run key says (to the second, UTC)."""
    return datetime.strptime(run_key[:15], "%Y%m%d-%H%M%S")


def make_job_name(configuration_id: str, run_key: str) -> str:
    """The job name of spec 002: contains '#', so clients URL-encode it."""
    return f"{configuration_id}#{run_key}"


def retry_allowed(run: RunSnapshot, latest_run_id: int | None) -> bool:
    """Whether retry_only_latest would accept `run`: for showing a Retry button only where it works."""
    return run.status in RUN_RETRYABLE and (latest_run_id is None or latest_run_id == run.id)


def cancel_allowed(status: RunStatus) -> bool:
    """Whether cancel_target would accept a run in `status`."""
    return status in (RunStatus.WAITING_TO_START, RunStatus.RUNNING)
