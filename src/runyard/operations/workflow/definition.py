"""The `workflow` type as the registry sees it: no tasks, no executors; it is never launched itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.errors import ConfigError
from runyard.operations.definition import DeployCheck, OperationType, PlanRequest
from runyard.operations.spec import OperationBase
from runyard.operations.workflow import plan
from runyard.operations.workflow.jobs import resolve_jobs
from runyard.operations.workflow.spec import WorkflowOperation

WORKFLOW = "workflow"


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_workflow(spec, request.execution_date)


def check_workflow(spec: OperationBase, _context: DeployCheck) -> None:
    """The jobs resolve, stay in the workflow's account, are named once, and the target is a job that runs."""
    assert isinstance(spec, WorkflowOperation)
    if spec.schedule is not None:
        raise ConfigError("a workflow is launched by its upstream jobs, not on a schedule", field="schedule")
    try:
        jobs = resolve_jobs(spec.model_dump(mode="json"))
    except ValueError as error:
        field, reason = error.args
        raise ConfigError(reason, field=field) from None
    seen: dict[tuple[str, str, str], int] = {}
    for index, upstream in enumerate(jobs.upstreams):
        field = f"authorized_job_ids.{index}"
        if not _runs(upstream.configuration_type):
            raise ConfigError(
                f"job {upstream.configuration_id} is a {upstream.configuration_type}, which never runs: a workflow "
                "waits for jobs that run",
                field=field,
            )
        if upstream.account != spec.account:
            raise ConfigError(
                f"job {upstream.configuration_id} is in account {upstream.account}; a workflow waits for jobs of "
                f"its own account ({spec.account})",
                field=field,
            )
        key = (str(upstream.environment), upstream.configuration_type, upstream.configuration_id)
        if key in seen:
            raise ConfigError(f"job {upstream.configuration_id} is named twice (also entry {seen[key]})", field=field)
        seen[key] = index
    target = jobs.target
    if target.account != spec.account:
        raise ConfigError(
            f"the target is in account {target.account}; it must be in {spec.account}", field="target_dag"
        )
    if target.configuration_type == WORKFLOW:
        raise ConfigError("the target must be a job that runs, not a workflow", field="target_dag")
    if not _runs(target.configuration_type):
        raise ConfigError(f"the target must be a job that runs, not a {target.configuration_type}", field="target_dag")
    if (target.environment, target.configuration_type, target.configuration_id) in seen:
        raise ConfigError(
            f"the target {target.configuration_id} is also an upstream job: it would launch itself", field="target_dag"
        )


def _runs(configuration_type: str) -> bool:
    """Whether a type's operations are launched (a workflow or a bi-view never is); an unknown type is left to the
    job lookup to refuse."""
    from runyard.operations import registry  # the registry imports this module

    known = registry.operation_types()
    return configuration_type not in known or known[configuration_type].launchable


DEFINITION = OperationType(
    name=WORKFLOW,
    spec=WorkflowOperation,
    plan=_plan,
    executors=lambda _resources: (),
    executor_names=frozenset(),
    description="launches a target job once each of its upstream jobs has succeeded",
    check=check_workflow,
    launchable=False,
)
