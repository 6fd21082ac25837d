"""Ingestion: the consolidated parts into the warehouse's staging table for this run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from runyard.engine import arrow
from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.resources import EngineResources, document_name, input_key, output_key
from runyard.staging import Manifest, Staging, StagingKey

INGESTED = "ingested"


def ingest(ctx: TaskContext, resources: EngineResources) -> None:
    """`Ingestion [ep]`: Arrow batches from staging into the warehouse (DuckDB never reads files itself)."""
    identity = ctx.identity
    table = identity.table or ""
    (upstream,) = [u for u in ctx.inputs if u.succeeded]
    manifest = resources.staging.read_manifest(input_key(identity, upstream))
    if manifest is None:
        raise TaskFailed(f"the consolidated output of {upstream.name} is missing from staging")
    schema = arrow.schema_from_json(manifest.schema)
    key = output_key(identity)
    if manifest.rows == 0 or len(schema) == 0:
        ctx.message("info", f"{table}: nothing to ingest (the source returned no records)")
        _write_document(resources, key, {"kind": INGESTED, "rows": 0, "empty": True})
        ctx.table(table, 0)
        return
    warehouse = resources.warehouses.for_account(identity.account)
    started = time.perf_counter()
    rows = warehouse.stage(identity.run_key, table, arrow.reader(schema, _batches(ctx, resources.staging, manifest)))
    ctx.record_latency((time.perf_counter() - started) * 1000.0)  # the time the warehouse took to take the table
    if rows != manifest.rows:
        raise TaskFailed(f"{table}: staged {rows} rows but consolidation produced {manifest.rows}")
    _write_document(resources, key, {"kind": INGESTED, "rows": rows, "max_cursor": manifest.extra.get("max_cursor")})
    ctx.table(table, rows)


def _write_document(resources: EngineResources, key: StagingKey, data: dict[str, Any]) -> None:
    resources.staging.write_document(
        key.account, key.operation_id, key.run_key, key.table, document_name(key.task, key.attempt), data
    )


def _batches(ctx: TaskContext, staging: Staging, manifest: Manifest) -> Iterator[arrow.RecordBatch]:
    schema = arrow.schema_from_json(manifest.schema)
    for part in manifest.parts:
        ctx.checkpoint()
        table = arrow.align(staging.read_part(part), schema)
        ctx.add_records(table.num_rows)
        yield from arrow.batches(table)
