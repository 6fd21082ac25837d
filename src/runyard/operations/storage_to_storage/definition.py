"""The `storage-to-storage` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.operations.definition import JobIdentity, OperationType, PlanRequest, executors_in, standard_job_id
from runyard.operations.storage_to_storage import plan
from runyard.operations.storage_to_storage.names import DEFAULT_NAME
from runyard.operations.storage_to_storage.spec import StorageToStorageOperation


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_storage_run(spec, request.execution_date)


def _job_id(identity: JobIdentity) -> str:
    """Spec 003's storage-to-storage job_id: the standard one, then the destination's file name template
    ("storage-to-storage|000099|000099-jarvis-demo|DEV|stores-{{FD_DATE}}-{{FD_TIME}}.csv")."""
    return f"{standard_job_id(identity)}|{identity.spec.get('destination_name') or DEFAULT_NAME}"


DEFINITION = OperationType(
    name="storage-to-storage",
    spec=StorageToStorageOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.storage_to_storage.executors"),
    executor_names=frozenset(plan.EXECUTORS),
    description="files copied between folders (local or S3) under templated names",
    job_id=_job_id,
)
