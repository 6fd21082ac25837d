"""What the rest of runyard knows of an operation type: one OperationType value per type package.

A type package (`runyard.operations.<type>`) holds the configuration's pydantic model (spec.py), a pure
plan (plan.py: the configuration and the launch in, the task graph out) and its stage executors. Its
definition.py ties them together in a `DEFINITION`, and runyard.operations.registry lists the packages.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import import_module
from typing import TYPE_CHECKING, Any

from runyard.domain.graph import PlannedTask
from runyard.domain.statuses import RunType
from runyard.operations.spec import OperationBase

if TYPE_CHECKING:
    from runyard.engine.executors import Executor
    from runyard.engine.resources import EngineResources


@dataclass(frozen=True)
class PlanRequest:
    """What a launch tells the plan: the run type and the run's execution date."""

    run_type: RunType
    execution_date: date


@dataclass(frozen=True)
class DeployCheck:
    """What deploy-time checks may consult besides the configuration itself."""

    executors: Collection[str]  # the executor names workers know


@dataclass(frozen=True)
class JobIdentity:
    """Who a job is in spec 003's words: its account, environment, type, (deployed) configuration_id, and its
    configuration, for the types whose job_id names a part of it."""

    account: str
    environment: str
    configuration_type: str
    configuration_id: str
    spec: Mapping[str, Any]


def standard_job_id(identity: JobIdentity) -> str:
    """`<type>|<account>|<configuration_id>|<ENV>`: the job_id of the types spec 003 shows no example of."""
    return "|".join((identity.configuration_type, identity.account, identity.configuration_id, identity.environment))


Plan = Callable[[Mapping[str, Any], PlanRequest], list[PlannedTask]]
Check = Callable[[OperationBase, DeployCheck], None]
BindExecutors = Callable[["EngineResources"], Sequence["Executor"]]


def no_check(_spec: OperationBase, _context: DeployCheck) -> None:
    return None


def executors_in(module: str) -> BindExecutors:
    """The `executors(resources)` function of `module`, imported on its first call (by a worker), so that
    reading a configuration never loads pyarrow, httpx or duckdb."""

    def bind(resources: EngineResources) -> Sequence[Executor]:
        found: BindExecutors = import_module(module).executors
        return found(resources)

    return bind


@dataclass(frozen=True)
class OperationType:
    """One configuration type: its model, plan, executors and deploy-time checks.

    `executors` is called once per worker process with that process's resources (`executors_in(module)`
    imports the stage modules only then).
    `check` raises ConfigError with a dotted `field` (`steps.2.depends_on.0`): the loader turns it into
    the line of the file. `environment_suffix`: the deployed configuration_id ends in `_<ENV>` (spec 003's
    table-to-table). `api_runs`: the Sources page offers "View API Runs".
    """

    name: str
    spec: type[OperationBase]
    plan: Plan
    executors: BindExecutors
    executor_names: frozenset[str]
    description: str
    check: Check = no_check
    environment_suffix: bool = False
    api_runs: bool = False
    launchable: bool = True  # False: a workflow, which launches its target instead of running itself
    job_id: Callable[[JobIdentity], str] = field(default=lambda identity: standard_job_id(identity))
    job_id_aliases: tuple[str, ...] = ()  # other first segments of its job ids (table-to-table: gbq-to-gbq)
    labels: Mapping[str, str] = field(default_factory=dict)

    def deployed_id(self, configuration_id: str, environment: str) -> str:
        """The configuration_id under which the operation is stored and named in the APIs."""
        suffix = f"_{environment}"
        if not self.environment_suffix or configuration_id.endswith(suffix):
            return configuration_id
        return configuration_id + suffix
