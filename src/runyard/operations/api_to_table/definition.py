"""The `api-to-table` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runyard.domain.graph import PlannedTask
from runyard.operations.api_to_table import plan
from runyard.operations.api_to_table.spec import ApiToTableOperation
from runyard.operations.definition import OperationType, PlanRequest

if TYPE_CHECKING:
    from runyard.engine.executors import Executor
    from runyard.engine.resources import EngineResources


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_api_run(spec, request.run_type, request.execution_date)


def _executors(resources: EngineResources) -> Sequence[Executor]:
    from runyard.operations.api_to_table.stages import executors

    return executors(resources)


DEFINITION = OperationType(
    name="api-to-table",
    spec=ApiToTableOperation,
    plan=_plan,
    executors=_executors,
    executor_names=frozenset(plan.EXECUTORS),
    description="an HTTP API extracted into warehouse tables",
    api_runs=True,
)
