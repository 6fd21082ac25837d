"""Initial Snapshot: every table read at exactly the replication slot's starting point, loaded in one load.

The slot is created on a replication connection with EXPORT_SNAPSHOT; a second connection imports that
snapshot (REPEATABLE READ, SET TRANSACTION SNAPSHOT) and reads the tables as they were at the slot's
consistent point: every transaction committed before it is in the snapshot, every one after it comes from
the slot. The tables replace their warehouse tables in one load, with that point stored as each table's
high watermark, which is where the stream starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from runyard.engine.context import StopReason, TaskContext, TaskFailed, TaskInterrupted
from runyard.engine.resources import EngineResources
from runyard.operations.postgres_cdc import source as pg
from runyard.operations.postgres_cdc.lsn import format_lsn, parse_lsn, to_watermark
from runyard.operations.postgres_cdc.position import stored_position
from runyard.operations.postgres_cdc.types import read_as_text, snapshot_batches, snapshot_schema
from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, TableLoad, Warehouse

FETCH_ROWS = 10_000


def snapshot(ctx: TaskContext, resources: EngineResources) -> None:
    params = ctx.params
    slot: str = params["slot"]
    tables: list[dict[str, str]] = params["tables"]
    source = pg.source_from(params["url_env"], resources.environ, allowed_hosts=resources.allowed_hosts)
    warehouse = resources.warehouses.for_account(ctx.identity.account)
    with pg.connect(source) as conn:
        layouts = [pg.describe(conn, source, table["source"]) for table in tables]
        exists = pg.slot_exists(conn, source, slot)
        stored = stored_position(warehouse, ctx.identity.operation_id, [t["target"] for t in tables], every=True)
        if exists and stored is not None and not params["destructive"]:
            ctx.message(
                "info",
                f"Snapshot skipped: the replication slot {slot} exists and the warehouse holds every table up to "
                f"LSN {format_lsn(stored)}; the stream resumes from there (a destructive run snapshots again)",
            )
            return
        if exists:
            why = "a destructive run" if params["destructive"] else "the warehouse holds no position for every table"
            pg.drop_slot(conn, source, slot)
            ctx.message("info", f"Dropped the replication slot {slot} to snapshot again ({why})")
    ctx.checkpoint()
    try:
        _snapshot(ctx, source, warehouse, slot, tables, layouts)
    except TaskInterrupted as stop:
        if stop.reason is not StopReason.LEASE_LOST:  # lost: the slot may be the new attempt's already
            _drop_quietly(source, slot)
        raise
    except Exception:
        _drop_quietly(source, slot)  # a slot without a loaded snapshot would make the next run skip one
        raise


def _snapshot(
    ctx: TaskContext,
    source: pg.Source,
    warehouse: Warehouse,
    slot: str,
    tables: Sequence[dict[str, str]],
    layouts: Sequence[pg.TableLayout],
) -> None:
    key = f"{ctx.identity.run_key}-snapshot-{ctx.identity.attempt}"
    with pg.connect(source, replication=True) as replication, pg.connect(source, autocommit=False) as reader:
        consistent_point, exported = pg.create_slot(replication, source, slot)
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        reader.read_only = True
        try:
            reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
        except psycopg.Error as error:
            raise source.failure("importing the slot's snapshot failed", error) from None
        replication.close()  # imported: the reading transaction holds the snapshot now
        ctx.message("info", f"Created the replication slot {slot} at LSN {consistent_point}; reading the tables there")
        loads = []
        for table, layout in zip(tables, layouts, strict=True):
            ctx.checkpoint()
            rows = _stage_table(ctx, source, reader, warehouse, key, table["target"], layout)
            ctx.add_records(rows)
            ctx.message("info", f"Snapshot of {layout.table}: {rows:,} rows into {table['target']}")
            loads.append(
                TableLoad(
                    name=table["target"],
                    mode="replace",
                    primary_key=layout.primary_key,
                    high_watermark=to_watermark(parse_lsn(consistent_point)),
                    loaded_at_column=LOADED_AT_COLUMN,
                )
            )
        reader.rollback()
    ctx.checkpoint()
    result = warehouse.load(LoadRequest(key, ctx.identity.operation_id, tuple(loads)))
    warehouse.drop_staging(key)
    for table_result in result.tables:
        ctx.table(table_result.name, table_result.staged)
    ctx.message("info", f"Loaded the snapshot; the stream starts after LSN {consistent_point}")


def _stage_table(
    ctx: TaskContext,
    source: pg.Source,
    reader: psycopg.Connection,
    warehouse: Warehouse,
    key: str,
    target: str,
    layout: pg.TableLayout,
) -> int:
    schema = snapshot_schema(layout.columns)
    columns = [
        sql.SQL("{}::text").format(sql.Identifier(name)) if read_as_text(kind) else sql.Identifier(name)
        for name, kind in layout.columns.items()
    ]
    namespace, name = layout.table.split(".", 1)
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(columns), sql.Identifier(namespace, name))

    def chunks() -> Iterator[list[Any]]:
        with reader.cursor(name=f"runyard_snapshot_{ctx.identity.attempt}") as cursor:
            cursor.execute(query)
            while rows := cursor.fetchmany(FETCH_ROWS):
                yield rows

    try:
        batches = pa.RecordBatchReader.from_batches(schema, snapshot_batches(layout.table, schema, chunks()))
        return warehouse.stage(key, target, batches)
    except psycopg.Error as error:
        raise source.failure(f"reading {layout.table} failed", error) from None
    except ValueError as error:
        raise TaskFailed(f"Snapshot of {layout.table}: {error}") from None


def _drop_quietly(source: pg.Source, slot: str) -> None:
    try:
        with pg.connect(source) as conn:
            if pg.slot_exists(conn, source, slot):
                pg.drop_slot(conn, source, slot)
    except pg.SourceError:
        pass  # the error that brought us here is the one to report
