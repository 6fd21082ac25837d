"""What the stages share: staging, the warehouses, and the limits on where sources and files may be."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runyard.engine.context import TaskIdentity, TaskOutput
from runyard.staging import Staging, StagingKey
from runyard.warehouse.base import WarehouseProvider


@dataclass
class EngineResources:
    staging: Staging
    warehouses: WarehouseProvider
    allowed_hosts: tuple[str, ...] = ("public",)
    storage_roots: tuple[Path, ...] = ()  # local folders storage-to-storage may read and write
    environ: Mapping[str, str] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = None  # tests route requests through their own transport
    options: dict[str, Any] = field(default_factory=dict)
    # How long a task waits out a TransientError (the warehouse file held by another process) before it fails.
    warehouse_lock_wait_seconds: float = 300.0
    # Remove a run's staged files once its Data Load committed (not RUNYARD_STAGING_KEEP_AFTER_LOAD).
    remove_staged_after_load: bool = True


def output_key(identity: TaskIdentity) -> StagingKey:
    """Where this task writes its output."""
    return StagingKey(
        account=identity.account,
        operation_id=identity.operation_id,
        run_key=identity.run_key,
        table=identity.table or "_run",
        task=identity.name,
        attempt=identity.attempt,
    )


def input_key(identity: TaskIdentity, upstream: TaskOutput) -> StagingKey:
    """Where an upstream task wrote its output (possibly in an earlier run, for reused tasks)."""
    return StagingKey(
        account=identity.account,
        operation_id=identity.operation_id,
        run_key=upstream.run_key,
        table=upstream.table or identity.table or "_run",
        task=upstream.name,
        attempt=upstream.attempt,
    )


def document_name(task: str, attempt: int) -> str:
    return f"{task}.attempt-{attempt}"
