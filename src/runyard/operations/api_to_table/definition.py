"""The `api-to-table` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.operations.api_to_table import plan
from runyard.operations.api_to_table.spec import ApiToTableOperation
from runyard.operations.definition import OperationType, PlanRequest, executors_in


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_api_run(spec, request.run_type, request.execution_date)


DEFINITION = OperationType(
    name="api-to-table",
    spec=ApiToTableOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.api_to_table.stages"),
    executor_names=frozenset(plan.EXECUTORS),
    description="an HTTP API extracted into warehouse tables",
    api_runs=True,
)
