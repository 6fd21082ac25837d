"""The api-to-table stages as executors, bound to the resources of this process."""

from __future__ import annotations

from runyard.engine.consolidate import consolidate_metadata, consolidate_table
from runyard.engine.executors import Executor, Stage, bind_stages
from runyard.engine.ingest import ingest
from runyard.engine.load import data_load
from runyard.engine.resources import EngineResources
from runyard.operations.api_to_table import plan
from runyard.operations.api_to_table.extract import extract, high_watermark
from runyard.operations.api_to_table.stream import stream

STAGES: dict[str, tuple[Stage, str]] = {
    plan.HWM: (high_watermark, "reads the high watermark of the last load"),
    plan.EXTRACT: (extract, "extracts an endpoint into staging"),
    plan.METADATA: (consolidate_metadata, "unions the slices' schemas into the table's blueprint"),
    plan.CONSOLIDATE: (consolidate_table, "aligns the staged parts to the blueprint"),
    plan.INGEST: (ingest, "loads the staged parts into the warehouse's staging table"),
    plan.DATA_LOAD: (data_load, "commits every table of the run in one transaction"),
    plan.STREAM: (stream, "polls an incremental endpoint and loads each micro-batch with its watermark"),
}


def executors(resources: EngineResources) -> list[Executor]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return bind_stages(STAGES, resources)
