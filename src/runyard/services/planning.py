"""Which plan an operation's configuration type gets."""

from __future__ import annotations

from datetime import date

from runyard.domain.api_plan import plan_api_run
from runyard.domain.graph import PlannedTask
from runyard.domain.plans import plan_task_graph
from runyard.domain.statuses import RunType
from runyard.errors import ConfigError
from runyard.services.operations import OperationView


def plan_for(operation: OperationView, run_type: RunType, today: date) -> list[PlannedTask]:
    if operation.configuration_type == "tasks":
        return plan_task_graph(operation.spec["tasks"], run_type)
    if operation.configuration_type == "api-to-table":
        return plan_api_run(operation.spec, run_type, today)
    raise ConfigError(
        f"runyard cannot run operations of type '{operation.configuration_type}' yet",
        source=operation.configuration_id,
        field="configuration_type",
    )
