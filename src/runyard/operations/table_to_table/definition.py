"""The `table-to-table` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from runyard.domain.graph import PlannedTask, find_cycle
from runyard.errors import ConfigError
from runyard.operations.definition import DeployCheck, OperationType, PlanRequest, executors_in
from runyard.operations.spec import OperationBase
from runyard.operations.table_to_table import plan
from runyard.operations.table_to_table.render import render_step, sql_variables, variable_names
from runyard.operations.table_to_table.spec import StepSpec, TableToTableOperation
from runyard.operations.table_to_table.sql import fold
from runyard.operations.templating import check_template
from runyard.sqltext import statement_count


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_steps(spec, request.execution_date)


def check_steps(spec: OperationBase, _context: DeployCheck) -> None:
    """Targets are unique, dependencies name steps, the steps form no cycle, and each SQL is one SELECT
    whose `{{ }}` values are known and can be bound."""
    assert isinstance(spec, TableToTableOperation)
    steps = [step.model_dump() for step in spec.steps]
    targets: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        if fold(step.target) in targets:
            earlier = spec.steps[targets[fold(step.target)]].target
            raise ConfigError(f"two steps build the table '{earlier}'", field=f"steps.{index}.target")
        targets[fold(step.target)] = index
    upstream = plan.step_dependencies(steps)
    for index, step in enumerate(spec.steps):
        for dependency in upstream[index]:
            if dependency.declared and fold(dependency.upstream) not in targets:
                raise ConfigError(
                    f"step '{step.target}' depends on '{dependency.upstream}', which is no step's target; "
                    f"targets: {', '.join(s.target for s in spec.steps)}",
                    field=f"steps.{index}.depends_on.{dependency.position}",
                )
            if dependency.declared and fold(dependency.upstream) == fold(step.target):
                raise ConfigError(
                    f"step '{step.target}' depends on itself", field=f"steps.{index}.depends_on.{dependency.position}"
                )
    cycle = find_cycle({s["target"]: [d.upstream for d in deps] for s, deps in zip(steps, upstream, strict=True)})
    if cycle:
        first = targets[fold(cycle[0])]
        reads = any(not d.declared and d.upstream == cycle[1] for d in upstream[first])
        raise ConfigError(
            f"the steps depend on each other in a cycle: {' -> '.join(cycle)} (a step waits for the steps "
            "whose targets its SQL reads, and for those in its depends_on)",
            field=_sql_field(spec.steps[first], first) if reads else f"steps.{first}.depends_on",
        )
    for index, step in enumerate(spec.steps):
        _check_sql(spec, step, index)


def _check_sql(spec: TableToTableOperation, step: StepSpec, index: int) -> None:
    field = _sql_field(step, index)
    sql = step.sql or ""
    count = statement_count(sql)
    if count != 1:
        raise ConfigError(f"holds {count} statements; a step is one SELECT that builds its table", field=field)
    try:
        check_template(sql, variable_names(spec.parameters), what="the SQL")
        now = datetime.now(UTC).replace(tzinfo=None)
        render_step(sql, sql_variables(date.today(), now, spec.parameters), what="the SQL")
    except (ValueError, ConfigError) as error:  # ValueError: check_template's, or bind's SqlTextError
        reason = error.reason if isinstance(error, ConfigError) else str(error)
        raise ConfigError(reason, field=field) from None


def _sql_field(step: StepSpec, index: int) -> str:
    return f"steps.{index}.sql_file" if step.sql_file else f"steps.{index}.sql"


DEFINITION = OperationType(
    name="table-to-table",
    spec=TableToTableOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.table_to_table.executors"),
    executor_names=frozenset(plan.EXECUTORS),
    description="SQL steps that build warehouse tables from warehouse tables",
    check=check_steps,
    environment_suffix=True,
    # Spec 003's table-to-table job_id, as its answers show it: "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV".
    job_id=lambda identity: f"gbq-to-gbq|{identity.configuration_id}",
    job_id_aliases=("gbq-to-gbq",),
)
