from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.domain.statuses import RUN_ACTIVE, RUN_FINAL, RUN_RETRYABLE, RunStatus, TaskStatus
from runyard.domain.transitions import (
    check_run_transition,
    check_task_transition,
    run_can_move,
    run_sources,
    task_can_move,
)
from runyard.errors import IllegalTransition

SPEC_000_LABELS = {
    "Waiting to Start",
    "Running",
    "Completed",
    "Completed with Errors",
    "Failed",
    "Canceling",
    "Canceled",
    "Rejected - previous load still running",
}


def test_run_labels_are_spec_000s() -> None:
    assert {s.label for s in RunStatus} == SPEC_000_LABELS


def test_values_are_snake_case_of_labels() -> None:
    assert RunStatus.COMPLETED_WITH_ERRORS.value == "completed_with_errors"
    assert RunStatus.REJECTED.label == "Rejected - previous load still running"
    assert TaskStatus.WAITING_TO_START.label == "Waiting to Start"


def test_active_and_final_partition_the_statuses() -> None:
    assert set(RunStatus) == RUN_ACTIVE | RUN_FINAL
    assert not RUN_ACTIVE & RUN_FINAL
    assert {RunStatus.FAILED, RunStatus.CANCELED} == RUN_RETRYABLE


@given(st.sampled_from(sorted(RUN_FINAL)), st.sampled_from(list(RunStatus)))
def test_a_final_run_status_never_changes(final: RunStatus, target: RunStatus) -> None:
    assert not run_can_move(final, target)
    with pytest.raises(IllegalTransition):
        check_run_transition(final, target)


@given(st.sampled_from(list(TaskStatus)), st.sampled_from(list(TaskStatus)))
def test_task_transitions_leave_final_statuses_alone(current: TaskStatus, target: TaskStatus) -> None:
    if current.is_final or target == current:
        assert not task_can_move(current, target)
    if task_can_move(current, target):
        check_task_transition(current, target)  # agrees: no raise
    else:
        with pytest.raises(IllegalTransition):
            check_task_transition(current, target)


@given(st.lists(st.sampled_from(list(RunStatus)), max_size=12))
def test_any_walk_of_allowed_steps_stops_at_the_first_final_status(path: list[RunStatus]) -> None:
    current = RunStatus.WAITING_TO_START
    for target in path:
        if run_can_move(current, target):
            assert not current.is_final, f"a run moved on from the final {current} to {target}"
            current = target
        else:
            with pytest.raises(IllegalTransition):
                check_run_transition(current, target)


def test_illegal_transition_names_both_labels() -> None:
    with pytest.raises(IllegalTransition, match="from Completed to Running"):
        check_run_transition(RunStatus.COMPLETED, RunStatus.RUNNING)
    with pytest.raises(IllegalTransition, match="from Skipped to Running"):
        check_task_transition(TaskStatus.SKIPPED, TaskStatus.RUNNING)


def test_rejected_is_born_final() -> None:
    assert run_sources(RunStatus.REJECTED) == frozenset()
    assert RunStatus.REJECTED.is_final


def test_canceling_ends_canceled_or_completed_when_the_cancel_came_too_late() -> None:
    assert run_sources(RunStatus.CANCELED) >= {RunStatus.CANCELING}
    assert run_can_move(RunStatus.CANCELING, RunStatus.COMPLETED)
    assert not run_can_move(RunStatus.CANCELING, RunStatus.RUNNING)
    assert not run_can_move(RunStatus.CANCELING, RunStatus.FAILED)
