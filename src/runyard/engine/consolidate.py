"""Consolidation: the blueprint of a table from every slice (metadata), then every part aligned to it (table).

Think of metadata consolidation as defining the columns of a spreadsheet, and table
consolidation as filling in the rows (spec 000).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from runyard.engine import arrow
from runyard.engine.context import TaskContext, TaskFailed, TaskOutput
from runyard.engine.resources import EngineResources, document_name, input_key, output_key
from runyard.staging import Manifest, PartInfo, StagingKey

BLUEPRINT = "blueprint"


def consolidate_metadata(ctx: TaskContext, resources: EngineResources) -> None:
    """`Metadata Consolidation [ep]`: union the slices' schemas and report how the table changes."""
    identity = ctx.identity
    manifests = [_manifest(ctx, resources, upstream) for upstream in ctx.inputs if upstream.succeeded]
    blueprint = arrow.unify(arrow.schema_from_json(m.schema) for m in manifests)
    warehouse = resources.warehouses.for_account(identity.account)
    existing = warehouse.columns(identity.table or "")
    ctx.message("info", schema_change(identity.table or "", blueprint, existing, manifests, warehouse.type_name))
    key = output_key(identity)
    resources.staging.write_document(
        key.account,
        key.operation_id,
        key.run_key,
        key.table,
        document_name(key.task, key.attempt),
        {
            "kind": BLUEPRINT,
            "schema": arrow.schema_to_json(blueprint),
            "inputs": [asdict(m.key) for m in manifests],
            "rows": sum(m.rows for m in manifests),
            "max_cursor": _max_cursor(manifests),
        },
    )


def consolidate_table(ctx: TaskContext, resources: EngineResources) -> None:
    """`ep Consolidation`: align every staged part to the blueprint.

    A part whose columns have the blueprint's types is kept as it is, even when it lacks some
    columns: ingestion adds them as nulls while reading, which saves rewriting it. A part with a
    column of another type is cast and rewritten here, so a value that cannot be cast fails here.
    """
    identity = ctx.identity
    (upstream,) = [u for u in ctx.inputs if u.succeeded]
    key = input_key(identity, upstream)
    document = resources.staging.read_document(
        key.account, key.operation_id, key.run_key, key.table, document_name(key.task, key.attempt)
    )
    if document is None or document.get("kind") != BLUEPRINT:
        raise TaskFailed(f"the blueprint of {identity.table} written by {upstream.name} is missing from staging")
    blueprint = arrow.schema_from_json(document["schema"])
    own = output_key(identity)
    parts: list[PartInfo] = []
    rewritten = 0
    for input_fields in document["inputs"]:
        manifest = resources.staging.read_manifest(StagingKey(**input_fields))
        if manifest is None:
            raise TaskFailed(f"the staged output of {input_fields['task']} is missing")
        for part in manifest.parts:
            ctx.checkpoint()
            if arrow.only_missing_columns(arrow.schema_from_json(part.schema), blueprint):
                parts.append(part)  # ingestion fills the missing columns with nulls as it reads
            else:
                aligned = arrow.align(resources.staging.read_part(part), blueprint)
                parts.append(resources.staging.write_part(own, len(parts), aligned))
                rewritten += 1
            ctx.add_records(part.rows)
    rows = sum(p.rows for p in parts)
    resources.staging.write_manifest(
        Manifest(own, tuple(parts), rows, arrow.schema_to_json(blueprint), {"max_cursor": document.get("max_cursor")})
    )
    if rewritten:
        ctx.message("info", f"{rewritten} of {len(parts)} parts were rewritten to the types of the blueprint")
    ctx.table(identity.table or "", rows)


def _manifest(ctx: TaskContext, resources: EngineResources, upstream: TaskOutput) -> Manifest:
    manifest = resources.staging.read_manifest(input_key(ctx.identity, upstream))
    if manifest is None:
        raise TaskFailed(f"the staged output of {upstream.name} (attempt {upstream.attempt}) is missing")
    return manifest


def _max_cursor(manifests: list[Manifest]) -> Any:
    values: list[Any] = [m.extra["max_cursor"] for m in manifests if m.extra.get("max_cursor") is not None]
    if not values:
        return None
    if all(isinstance(v, int | float) for v in values):
        return max(values)
    return max(str(v) for v in values)


def schema_change(
    table: str,
    blueprint: arrow.Schema,
    existing: dict[str, str] | None,
    manifests: list[Manifest],
    type_name: Callable[[pa.DataType], str | None],
) -> str:
    """A sentence on how the incoming schema differs from the table already in the warehouse:
    new columns and columns whose type changed, each with the extraction tasks that brought it.
    `type_name` spells an Arrow type as the warehouse's `existing` types are spelled."""
    if existing is None:
        return f"{table} is a new table with {len(blueprint)} columns: {', '.join(blueprint.names)}"
    known = {name.lower(): kind for name, kind in existing.items()}
    new = [field for field in blueprint if field.name.lower() not in known]
    changed = [
        (field, known[field.name.lower()], sql)
        for field in blueprint
        if field.name.lower() in known
        and (sql := type_name(field.type)) is not None
        and sql.lower() != known[field.name.lower()].lower()
    ]
    if not new and not changed:
        return f"{table}: same columns and types as in the warehouse ({len(blueprint)} columns)"
    parts = []
    if new:
        described = ", ".join(f"{f.name} ({f.type}, from {', '.join(_bringers(f.name, manifests))})" for f in new)
        parts.append(f"{len(new)} new column{'s' if len(new) > 1 else ''}: {described}")
    if changed:
        described = ", ".join(
            f"{f.name} ({before} -> {after}, from {', '.join(_bringers(f.name, manifests))})"
            for f, before, after in changed
        )
        parts.append(f"{len(changed)} column{'s' if len(changed) > 1 else ''} with a new type: {described}")
    return f"{table}: " + "; ".join(parts)


def _bringers(column: str, manifests: list[Manifest]) -> list[str]:
    return [m.key.task for m in manifests if column in arrow.schema_from_json(m.schema).names] or ["?"]
