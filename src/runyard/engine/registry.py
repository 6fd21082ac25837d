"""The api-to-table stages as executors, bound to the resources of this process."""

from __future__ import annotations

from collections.abc import Callable

from runyard.domain import api_plan
from runyard.engine.consolidate import consolidate_metadata, consolidate_table
from runyard.engine.context import StageContext
from runyard.engine.extract import extract, high_watermark
from runyard.engine.ingest import ingest
from runyard.engine.load import data_load
from runyard.engine.resources import EngineResources

Stage = Callable[[StageContext, EngineResources], None]

STAGES: dict[str, tuple[Stage, str]] = {
    api_plan.HWM: (high_watermark, "reads the high watermark of the last load"),
    api_plan.EXTRACT: (extract, "extracts an endpoint into staging"),
    api_plan.METADATA: (consolidate_metadata, "unions the slices' schemas into the table's blueprint"),
    api_plan.CONSOLIDATE: (consolidate_table, "aligns the staged parts to the blueprint"),
    api_plan.INGEST: (ingest, "loads the staged parts into the warehouse's staging table"),
    api_plan.DATA_LOAD: (data_load, "commits every table of the run in one transaction"),
}


def bind(resources: EngineResources) -> dict[str, tuple[Callable[[StageContext], None], str]]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return {name: (_bound(stage, resources), text) for name, (stage, text) in STAGES.items()}


def _bound(stage: Stage, resources: EngineResources) -> Callable[[StageContext], None]:
    def run(ctx: StageContext) -> None:
        stage(ctx, resources)

    return run
