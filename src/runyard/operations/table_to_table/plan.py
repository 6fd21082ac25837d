"""The task graph of a table-to-table run: one task per SQL step, in dependency order, then one Data Load.

    headcount_by_department ─┐
    time_off_by_department ──┴─► department_summary ─► Data Load (every target, one transaction)

A step depends on the steps whose targets its SQL reads (after FROM or JOIN) and on those it names in
`depends_on`. The plan works on the configuration as plain data, so it stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from runyard.domain.graph import Dependency, PlannedTask, validate_plan
from runyard.operations.table_to_table.sql import fold, strip_template, table_references

STEP = "sql_step"
LOAD = "sql_load"
EXECUTORS = (STEP, LOAD)
DATA_LOAD = "Data Load"
BUILTIN_VARIABLES = ("execution_date",)  # and the FD_ date variables of runyard.operations.templating


@dataclass(frozen=True)
class StepDependency:
    upstream: str  # the upstream step's target, as that step spells it
    declared: bool  # named in depends_on (else read by its SQL)
    position: int  # its index in depends_on, or in the SQL's table references


def step_dependencies(steps: Sequence[Mapping[str, Any]]) -> list[list[StepDependency]]:
    """For each step, the steps it waits for: declared ones first, then those its SQL reads, each once.

    A declared name that is no step's target is kept (the deploy check reports it); a table the SQL reads
    that no step builds is a warehouse table, not a dependency. A step reading its own target reads the
    published table.
    """
    targets = {fold(step["target"]): step["target"] for step in steps}
    found: list[list[StepDependency]] = []
    for step in steps:
        own = fold(step["target"])
        seen: set[str] = set()
        upstream: list[StepDependency] = []
        for position, name in enumerate(step.get("depends_on") or ()):
            if fold(name) not in seen:
                seen.add(fold(name))
                upstream.append(StepDependency(targets.get(fold(name), name), True, position))
        for position, name in enumerate(table_references(strip_template(step["sql"]))):
            if name in targets and name != own and name not in seen:
                seen.add(name)
                upstream.append(StepDependency(targets[name], False, position))
        found.append(upstream)
    return found


def plan_steps(spec: Mapping[str, Any], execution_date: date) -> list[PlannedTask]:
    """One task per step (named after its target), then the Data Load that publishes every target."""
    steps = spec["steps"]
    parameters = dict(spec.get("parameters") or {})
    planned = [
        PlannedTask(
            name=step["target"],
            executor=STEP,
            stage="transform",
            metrics_type="task",
            params={
                "target": step["target"],
                "sql": step["sql"],
                "inputs": [dependency.upstream for dependency in upstream],
                "parameters": parameters,
                "execution_date": execution_date.isoformat(),
            },
            depends_on=tuple(Dependency(dependency.upstream) for dependency in upstream),
            table=step["target"],
        )
        for step, upstream in zip(steps, step_dependencies(steps), strict=True)
    ]
    planned.append(
        PlannedTask(
            name=DATA_LOAD,
            executor=LOAD,
            stage="load",
            metrics_type="load",
            params={"tables": [step["target"] for step in steps]},
            depends_on=tuple(Dependency(task.name) for task in planned),
        )
    )
    validate_plan(planned)
    return planned
