"""The storage-to-storage executors, bound to the resources of this process."""

from __future__ import annotations

from collections.abc import Callable

from runyard.engine.context import TaskContext
from runyard.engine.executors import Executor
from runyard.engine.resources import EngineResources
from runyard.operations.storage_to_storage import plan
from runyard.operations.storage_to_storage.copy import copy_files
from runyard.operations.storage_to_storage.listing import list_files

Stage = Callable[[TaskContext, EngineResources], None]

STAGES: dict[str, tuple[Stage, str]] = {
    plan.LIST: (list_files, "lists the files to copy and adds one copy task per file or batch"),
    plan.COPY: (copy_files, "copies files, verified, to their destination (and deletes the sources when moving)"),
}


def executors(resources: EngineResources) -> list[Executor]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return [Executor(name, _bind(stage, resources), text) for name, (stage, text) in STAGES.items()]


def _bind(stage: Stage, resources: EngineResources) -> Callable[[TaskContext], None]:
    def run(ctx: TaskContext) -> None:
        stage(ctx, resources)

    return run
