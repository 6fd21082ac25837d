"""The storage-to-storage executors, bound to the resources of this process."""

from __future__ import annotations

from runyard.engine.executors import Executor, Stage, bind_stages
from runyard.engine.resources import EngineResources
from runyard.operations.storage_to_storage import plan
from runyard.operations.storage_to_storage.copy import copy_files
from runyard.operations.storage_to_storage.listing import list_files

STAGES: dict[str, tuple[Stage, str]] = {
    plan.LIST: (list_files, "lists the files to copy and adds one copy task per file or batch"),
    plan.COPY: (copy_files, "copies files, verified, to their destination (and deletes the sources when moving)"),
}


def executors(resources: EngineResources) -> list[Executor]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return bind_stages(STAGES, resources)
