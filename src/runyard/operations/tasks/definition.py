"""The `tasks` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.domain.statuses import RunType
from runyard.errors import ConfigError
from runyard.operations.definition import DeployCheck, OperationType, PlanRequest, executors_in
from runyard.operations.spec import OperationBase
from runyard.operations.tasks.plan import plan_task_graph
from runyard.operations.tasks.spec import TaskGraphOperation

EXECUTORS = frozenset({"noop", "sleep", "fail"})


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan_task_graph(spec["tasks"], request.run_type)


def check_task_graph(spec: OperationBase, context: DeployCheck) -> None:
    """Every executor is known, every dependency names a task, and the graph has no cycle."""
    assert isinstance(spec, TaskGraphOperation)
    names: dict[str, int] = {}
    for index, task in enumerate(spec.tasks):
        if task.name in names:
            raise ConfigError(f"two tasks are named '{task.name}'", field=f"tasks.{index}.name")
        names[task.name] = index
        if task.executor not in context.executors:
            known = ", ".join(sorted(context.executors))
            raise ConfigError(f"unknown executor '{task.executor}'; known: {known}", field=f"tasks.{index}.executor")
    for index, task in enumerate(spec.tasks):
        for position, dependency in enumerate(task.depends_on):
            if dependency.task not in names:
                raise ConfigError(
                    f"task '{task.name}' depends on '{dependency.task}', which is not a task of this operation",
                    field=f"tasks.{index}.depends_on.{position}",
                )
    try:
        plan_task_graph([t.model_dump() for t in spec.tasks], RunType.INCREMENTAL)
    except ConfigError as error:  # a cycle: point at the dependencies of its first task
        first = error.reason.split(": ", 1)[-1].split(" -> ")[0]
        raise ConfigError(error.reason, field=f"tasks.{names.get(first, 0)}.depends_on") from None


DEFINITION = OperationType(
    name="tasks",
    spec=TaskGraphOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.tasks.executors"),
    executor_names=EXECUTORS,
    description="a task graph written out by hand",
    check=check_task_graph,
)
