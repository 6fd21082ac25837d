"""The `bi-view` type as the registry sees it: no tasks, no executors; it is never launched, only exported by name.

Deploy-time checks that need only the configuration are here (`check_view`). The one that needs the store, that no
other active bi-view of the same account and environment has the same view_name, is
runyard.services.bi_views.check_view_names, which runyard.services.operations.deploy and preview_deploy call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.errors import ConfigError
from runyard.operations.bi_view import plan
from runyard.operations.bi_view.query import query_problem
from runyard.operations.bi_view.spec import BiViewOperation
from runyard.operations.definition import DeployCheck, OperationType, PlanRequest
from runyard.operations.spec import OperationBase

BI_VIEW = "bi-view"


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_view(spec, request.execution_date)


def check_view(spec: OperationBase, _context: DeployCheck) -> None:
    """No schedule, and the SQL is one query that reads (the view_name's form is the model's)."""
    assert isinstance(spec, BiViewOperation)
    if spec.schedule is not None:
        raise ConfigError("a bi-view is read when it is exported, not run on a schedule", field="schedule")
    problem = query_problem(spec.sql)
    if problem is not None:
        raise ConfigError(f"the SQL {problem}", field="sql")


DEFINITION = OperationType(
    name=BI_VIEW,
    spec=BiViewOperation,
    plan=_plan,
    executors=lambda _resources: (),
    executor_names=frozenset(),
    description="a view declared in configuration: one SELECT over the account's warehouse tables, exported by name",
    check=check_view,
    launchable=False,
)
