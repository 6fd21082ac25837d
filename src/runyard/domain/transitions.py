"""Which status changes the lifecycle allows. Every write of a status goes through here."""

from __future__ import annotations

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.errors import IllegalTransition

_RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.WAITING_TO_START: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.CANCELING,
            RunStatus.CANCELED,
            RunStatus.FAILED,
            RunStatus.COMPLETED,
            RunStatus.COMPLETED_WITH_ERRORS,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS, RunStatus.FAILED, RunStatus.CANCELING}
    ),
    # A cancel that came too late (the data load had committed) still ends Completed.
    RunStatus.CANCELING: frozenset({RunStatus.CANCELED, RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS}),
}

_TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.WAITING_TO_START: frozenset(
        {TaskStatus.RUNNING, TaskStatus.SKIPPED, TaskStatus.CANCELED, TaskStatus.COMPLETED, TaskStatus.FAILED}
    ),
    # RUNNING -> WAITING_TO_START is a released lease (graceful shutdown) or a retry of the attempt.
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.COMPLETED,
            TaskStatus.COMPLETED_WITH_ERRORS,
            TaskStatus.FAILED,
            TaskStatus.CANCELED,
            TaskStatus.WAITING_TO_START,
        }
    ),
}


def run_can_move(current: RunStatus, target: RunStatus) -> bool:
    return target in _RUN_TRANSITIONS.get(current, frozenset())


def task_can_move(current: TaskStatus, target: TaskStatus) -> bool:
    return target in _TASK_TRANSITIONS.get(current, frozenset())


def check_run_transition(current: RunStatus, target: RunStatus) -> None:
    if not run_can_move(current, target):
        raise IllegalTransition("run", current.label, target.label)


def check_task_transition(current: TaskStatus, target: TaskStatus) -> None:
    if not task_can_move(current, target):
        raise IllegalTransition("task", current.label, target.label)


def run_sources(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses a run may be in to move to `target`: the guard of a conditional UPDATE."""
    return frozenset(s for s, allowed in _RUN_TRANSITIONS.items() if target in allowed)
