from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.domain.graph import Dependency, PlannedTask, TaskNode, advance, run_outcome, validate_plan
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.errors import ConfigError

W, R, C, F, S, X = (
    TaskStatus.WAITING_TO_START,
    TaskStatus.RUNNING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.SKIPPED,
    TaskStatus.CANCELED,
)


def node(key: int, status: TaskStatus, *deps: int, soft: tuple[int, ...] = (), required: bool = True) -> TaskNode:
    edges = tuple((d, False) for d in deps) + tuple((d, True) for d in soft)
    return TaskNode(key=key, status=status, required=required, depends_on=edges)


def test_roots_are_ready_and_the_rest_wait() -> None:
    step = advance([node(1, W), node(2, W), node(3, W, 1, 2)])
    assert step.ready == {1, 2}
    assert not step.skipped


def test_a_task_is_ready_once_its_dependencies_succeeded() -> None:
    assert advance([node(1, C), node(2, R), node(3, W, 1, 2)]).ready == set()
    assert advance([node(1, C), node(2, C), node(3, W, 1, 2)]).ready == {3}


def test_a_failed_dependency_skips_the_whole_chain_below_it() -> None:
    step = advance([node(1, F), node(2, W, 1), node(3, W, 2), node(4, W)])
    assert step.skipped == {2, 3}
    assert step.ready == {4}


def test_a_soft_dependency_only_has_to_end() -> None:
    step = advance([node(1, F, required=False), node(2, C), node(3, W, 2, soft=(1,))])
    assert step.ready == {3}
    assert not step.skipped


def test_already_ready_tasks_are_not_reported_again() -> None:
    assert advance([TaskNode(key=1, status=W, ready=True)]).ready == set()


def test_outcome_waits_for_every_task() -> None:
    assert run_outcome([node(1, C), node(2, R)], cancel_requested=False) is None


@pytest.mark.parametrize(
    ("nodes", "cancel", "expected"),
    [
        ([node(1, C), node(2, C)], False, RunStatus.COMPLETED),
        ([node(1, C), node(2, C)], True, RunStatus.COMPLETED),  # the cancel came too late
        ([node(1, F), node(2, S, 1)], False, RunStatus.FAILED),
        ([node(1, F, required=False), node(2, C, soft=(1,))], False, RunStatus.COMPLETED_WITH_ERRORS),
        ([node(1, TaskStatus.COMPLETED_WITH_ERRORS)], False, RunStatus.COMPLETED_WITH_ERRORS),
        ([node(1, C), node(2, X, 1)], True, RunStatus.CANCELED),
        ([node(1, F), node(2, X)], True, RunStatus.CANCELED),
    ],
)
def test_outcome(nodes: list[TaskNode], cancel: bool, expected: RunStatus) -> None:
    assert run_outcome(nodes, cancel_requested=cancel) is expected


def planned(name: str, *deps: str) -> PlannedTask:
    return PlannedTask(name=name, executor="noop", depends_on=tuple(Dependency(d) for d in deps))


def test_validate_plan_refuses_duplicates_unknown_dependencies_and_cycles() -> None:
    validate_plan([planned("a"), planned("b", "a")])
    with pytest.raises(ConfigError, match="two tasks are named 'a'"):
        validate_plan([planned("a"), planned("a")])
    with pytest.raises(ConfigError, match="depends on 'zz'"):
        validate_plan([planned("a", "zz")])
    with pytest.raises(ConfigError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        validate_plan([planned("a", "b"), planned("b", "a")])


@st.composite
def graphs(draw: st.DrawFn) -> list[TaskNode]:
    size = draw(st.integers(1, 8))
    nodes = []
    for key in range(size):
        deps = draw(st.lists(st.integers(0, key - 1), unique=True, max_size=3)) if key else []
        status = draw(st.sampled_from([W, R, C, F, S, X]))
        nodes.append(node(key, status, *deps, required=draw(st.booleans())))
    return nodes


@given(graphs())
def test_advance_never_touches_tasks_that_are_not_waiting(nodes: list[TaskNode]) -> None:
    step = advance(nodes)
    waiting = {n.key for n in nodes if n.status is W}
    assert step.ready <= waiting
    assert step.skipped <= waiting
    assert not step.ready & step.skipped


@given(graphs())
def test_skipped_tasks_have_an_unsuccessful_hard_dependency_chain(nodes: list[TaskNode]) -> None:
    step = advance(nodes)
    status = {n.key: n.status for n in nodes} | dict.fromkeys(step.skipped, S)
    for n in nodes:
        if n.key in step.skipped:
            assert any(status[up] in {F, S, X} for up, soft in n.depends_on if not soft)
