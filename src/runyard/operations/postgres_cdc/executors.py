"""The postgres-cdc executors: the snapshot, then the stream."""

from __future__ import annotations

from runyard.engine.executors import Executor, Stage, bind_stages
from runyard.engine.resources import EngineResources
from runyard.operations.postgres_cdc import plan
from runyard.operations.postgres_cdc.snapshot import snapshot
from runyard.operations.postgres_cdc.stream import stream

STAGES: dict[str, tuple[Stage, str]] = {
    plan.SNAPSHOT: (snapshot, "creates the replication slot and loads every table as of its starting point"),
    plan.STREAM: (stream, "applies the slot's changes to the warehouse in batches until the run is canceled"),
}


def executors(resources: EngineResources) -> list[Executor]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return bind_stages(STAGES, resources)
