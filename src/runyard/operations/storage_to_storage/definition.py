"""The `storage-to-storage` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runyard.domain.graph import PlannedTask
from runyard.operations.definition import OperationType, PlanRequest
from runyard.operations.storage_to_storage import plan
from runyard.operations.storage_to_storage.spec import StorageToStorageOperation

if TYPE_CHECKING:
    from runyard.engine.executors import Executor
    from runyard.engine.resources import EngineResources


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_storage_run(spec, request.execution_date)


def _executors(resources: EngineResources) -> Sequence[Executor]:
    from runyard.operations.storage_to_storage.executors import executors

    return executors(resources)


DEFINITION = OperationType(
    name="storage-to-storage",
    spec=StorageToStorageOperation,
    plan=_plan,
    executors=_executors,
    executor_names=frozenset(plan.EXECUTORS),
    description="files copied between folders (local or S3) under templated names",
)
