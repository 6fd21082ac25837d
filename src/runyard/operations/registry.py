"""The operation types runyard runs. A new type is a package under runyard.operations and one line here.

The loader reads configurations with each type's model, launches plan with its plan, and every worker
builds its executor registry from the types' executors: all of them come from this list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from runyard.domain.graph import PlannedTask
from runyard.errors import ConfigError
from runyard.operations.definition import OperationType, PlanRequest

if TYPE_CHECKING:
    from runyard.engine.executors import Executor
    from runyard.engine.resources import EngineResources

TYPE_PACKAGES: tuple[str, ...] = (
    "api_to_table",
    "tasks",
    "storage_to_storage",
    "table_to_table",
    "workflow",
    "bi_view",
    "postgres_cdc",
)


@cache
def operation_types() -> dict[str, OperationType]:
    """configuration_type -> its definition, in the order of TYPE_PACKAGES."""
    found: dict[str, OperationType] = {}
    for package in TYPE_PACKAGES:
        definition = import_module(f"runyard.operations.{package}.definition").DEFINITION
        assert isinstance(definition, OperationType), f"{package}.definition.DEFINITION is not an OperationType"
        found[definition.name] = definition
    return found


def configuration_types() -> tuple[str, ...]:
    return tuple(operation_types())


def operation_type(name: str, *, source: str | None = None) -> OperationType:
    """The definition of configuration type `name`; ConfigError listing the known ones otherwise."""
    found = operation_types().get(name)
    if found is None:
        raise ConfigError(
            f"unknown configuration type {name!r}; allowed: {', '.join(configuration_types())}",
            source=source,
            field="configuration_type",
        )
    return found


def executor_names() -> frozenset[str]:
    """Every executor name a plan may use, across the types."""
    return frozenset(name for each in operation_types().values() for name in each.executor_names)


def plan(configuration_type: str, spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    """The task graph of one run of an operation of this type."""
    return operation_type(configuration_type).plan(spec, request)


def executors(resources: EngineResources) -> dict[str, Executor]:
    """The worker's registry: every type's executors, bound to this process's resources."""
    registry: dict[str, Executor] = {}
    for each in operation_types().values():
        for executor in each.executors(resources):
            registry[executor.name] = executor
    return registry


def models() -> Sequence[type[Any]]:
    return [each.spec for each in operation_types().values()]
