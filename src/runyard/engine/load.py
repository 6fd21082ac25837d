"""The Data Load: every table of the run, its high watermarks and a load record, in one transaction.

Then, unless RUNYARD_STAGING_KEEP_AFTER_LOAD, the run's staged files are removed: nothing reads them again. A
retried Data Load finds the load record and loads nothing (`data_load` does not need the `ingested` documents
then), and the run cannot be retried as a whole: every task the load depends on succeeded, so it ends Completed
(a cancel that comes after every task succeeded is too late: runyard.domain.graph.run_outcome). When one of them
did not succeed, or a cancel reached the task, the run may end Failed or Canceled and be retried, reusing its
extractions: their files stay, until the scheduler's RUNYARD_STAGING_RETENTION_DAYS sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from runyard.engine.context import TaskContext, TaskOutput
from runyard.engine.ingest import INGESTED
from runyard.engine.resources import EngineResources, document_name, input_key
from runyard.faults import crash_point
from runyard.staging import StagingError
from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, TableLoad

log = logging.getLogger("runyard.engine.load")


def data_load(ctx: TaskContext, resources: EngineResources) -> None:
    ingested = {u.table: _ingested(ctx, resources, u) for u in ctx.inputs if u.succeeded}
    removed = any(document is None for document in ingested.values())  # an ingestion succeeded, its record gone
    if removed and resources.warehouses.for_account(ctx.identity.account).has_load(ctx.identity.run_key):
        # An earlier attempt committed the load and removed the staged files, then died before it finished:
        # the load record answers for it (the same tables and rows), nothing is loaded twice.
        commit_load(ctx, resources, ())
        return
    loads = []
    for table in ctx.params["tables"]:
        document = ingested.get(table["name"])
        if document is None:
            ctx.message("error", f"{table['name']} was not loaded: its extraction did not complete")
            continue
        if document.get("empty"):
            ctx.message("warning", f"{table['name']} was left as it was: the source returned no records")
            continue
        loads.append(
            TableLoad(
                name=table["name"],
                mode=table["mode"],
                primary_key=tuple(table["primary_key"]),
                cursor_field=table.get("cursor_field"),
                high_watermark=document.get("max_cursor") if table.get("cursor_field") else None,
                loaded_at_column=LOADED_AT_COLUMN,
            )
        )
    commit_load(ctx, resources, loads)


def commit_load(ctx: TaskContext, resources: EngineResources, loads: Sequence[TableLoad]) -> None:
    """Load the run's staged tables in one warehouse transaction with its load record (a repeat loads nothing),
    report each table with the rows this run loaded, and drop the run's staging tables."""
    identity = ctx.identity
    ctx.checkpoint()  # canceled before the commit: the warehouse stays as it was
    warehouse = resources.warehouses.for_account(identity.account)
    started = time.perf_counter()
    result = warehouse.load(LoadRequest(identity.run_key, identity.operation_id, tuple(loads)))
    ctx.record_latency((time.perf_counter() - started) * 1000.0)  # a load task's latency: its commit
    crash_point("load.after_commit_before_meta")
    if result.already_loaded:
        ctx.note("already loaded by an earlier attempt")
        ctx.message("info", "This run's data had already been loaded by an earlier attempt; nothing was loaded twice")
    else:
        ctx.note(f"committed {_tables(len(result.tables))}")
    for table_result in result.tables:
        ctx.table(table_result.name, table_result.staged)
    warehouse.drop_staging(identity.run_key)
    if resources.remove_staged_after_load:
        remove_staged_files(ctx, resources)


def remove_staged_files(ctx: TaskContext, resources: EngineResources) -> None:
    """Remove the run's staged files after its load committed, when the run cannot be retried (see the module
    docstring). A failure is logged, not raised: the load stands, and the retention sweep removes them later."""
    identity = ctx.identity
    if ctx.interrupt.is_set() or not all(upstream.succeeded for upstream in ctx.inputs):
        return
    try:
        resources.staging.remove_run(identity.account, identity.operation_id, identity.run_key)
    except StagingError as error:
        log.warning(
            "could not remove the staged files of run %s after its load (%s); the retention sweep removes them later",
            identity.run_key,
            error,
        )


def _tables(count: int) -> str:
    return "1 table" if count == 1 else f"{count} tables"


def _ingested(ctx: TaskContext, resources: EngineResources, upstream: TaskOutput) -> dict[str, Any] | None:
    key = input_key(ctx.identity, upstream)
    document = resources.staging.read_document(
        key.account, key.operation_id, key.run_key, key.table, document_name(key.task, key.attempt)
    )
    return document if document and document.get("kind") == INGESTED else None
