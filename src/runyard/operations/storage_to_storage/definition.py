"""The `storage-to-storage` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.operations.definition import OperationType, PlanRequest, executors_in
from runyard.operations.storage_to_storage import plan
from runyard.operations.storage_to_storage.spec import StorageToStorageOperation


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_storage_run(spec, request.execution_date)


DEFINITION = OperationType(
    name="storage-to-storage",
    spec=StorageToStorageOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.storage_to_storage.executors"),
    executor_names=frozenset(plan.EXECUTORS),
    description="files copied between folders (local or S3) under templated names",
)
