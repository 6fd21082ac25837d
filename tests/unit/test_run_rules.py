from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from runyard.domain.runs import (
    RunSnapshot,
    cancel_target,
    make_job_name,
    make_run_key,
    one_active_run_per_operation,
    retry_only_latest,
)
from runyard.domain.statuses import RunStatus
from runyard.errors import CancelNotAllowed, IllegalTransition, RetryNotAllowed


def run(status: RunStatus, run_id: int = 7) -> RunSnapshot:
    return RunSnapshot(id=run_id, operation_id=1, status=status)


def test_launch_accepted_only_without_an_active_run() -> None:
    assert one_active_run_per_operation(None).accepted
    decision = one_active_run_per_operation(42)
    assert decision.status is RunStatus.REJECTED
    assert decision.blocked_by == 42


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELED])
def test_retry_allowed_for_the_latest_failed_or_canceled_run(status: RunStatus) -> None:
    retry_only_latest(run(status), latest_run_id=7)


@pytest.mark.parametrize(
    "status",
    [s for s in RunStatus if s not in (RunStatus.FAILED, RunStatus.CANCELED)],
)
def test_retry_refused_for_other_statuses(status: RunStatus) -> None:
    with pytest.raises(RetryNotAllowed, match=f"it is {re.escape(status.label)}"):
        retry_only_latest(run(status), latest_run_id=7)


def test_retry_refused_when_a_newer_run_exists() -> None:
    with pytest.raises(RetryNotAllowed, match="run 9 is more recent"):
        retry_only_latest(run(RunStatus.FAILED), latest_run_id=9)


def test_cancel_targets_canceling_and_refuses_twice_or_after_the_end() -> None:
    assert cancel_target(run(RunStatus.RUNNING)) is RunStatus.CANCELING
    assert cancel_target(run(RunStatus.WAITING_TO_START)) is RunStatus.CANCELING
    with pytest.raises(CancelNotAllowed, match="already in progress"):
        cancel_target(run(RunStatus.CANCELING))
    with pytest.raises(CancelNotAllowed, match="already ended as Completed"):
        cancel_target(run(RunStatus.COMPLETED))


def test_with_status_checks_the_transition() -> None:
    assert run(RunStatus.RUNNING).with_status(RunStatus.COMPLETED).status is RunStatus.COMPLETED
    with pytest.raises(IllegalTransition):
        run(RunStatus.COMPLETED).with_status(RunStatus.RUNNING)


def test_run_key_and_job_name_formats() -> None:
    uid = uuid.UUID("1fb692b0-3531-4578-9919-acf6fdb0a5b1")
    key = make_run_key(datetime(2020, 12, 30, 11, 39, 40, tzinfo=UTC), uid)
    assert key == "20201230-113940-1fb692b0-3531-4578-9919-acf6fdb0a5b1"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f-]{36}", make_run_key(datetime.now(UTC)))
    name = make_job_name("hr_api", key)
    assert "#" in name
    assert name == f"hr_api#{key}"
