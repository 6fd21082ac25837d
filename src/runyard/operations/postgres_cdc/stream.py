"""Stream Changes: the slot's changes applied to the warehouse in batches, until the run is canceled.

Each turn peeks at most `batch_max_changes` changes (whole transactions) from the slot, leaves out the
transactions the warehouse already holds (commit LSN <= its stored position: a batch loaded just before a
crash, whose slot was not confirmed), and loads the rest as one merge per table, the batch's last commit LSN
stored with them in the same transaction. Only then is the slot confirmed up to that batch. So a crash at any
point replays at most the last batch, and the replay applies nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from runyard.engine.context import StopReason, TaskContext, TaskFailed
from runyard.engine.resources import EngineResources
from runyard.faults import crash_point
from runyard.operations.postgres_cdc import source as pg
from runyard.operations.postgres_cdc.decoding import DecodingError, Transaction, batch, changes_of, transactions
from runyard.operations.postgres_cdc.lsn import format_lsn, to_watermark
from runyard.operations.postgres_cdc.position import stored_position
from runyard.operations.postgres_cdc.types import DELETED_COLUMN, change_batch
from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, TableLoad, Warehouse


@dataclass
class _Stream:
    ctx: TaskContext
    source: pg.Source
    warehouse: Warehouse
    slot: str
    targets: Mapping[str, str]  # schema.table -> warehouse table
    primary_keys: Mapping[str, tuple[str, ...]]
    batch_max_changes: int
    poll_seconds: float
    position: int  # the warehouse holds every change committed up to here
    batches: int = 0

    def run(self, conn: psycopg.Connection) -> None:
        while True:
            self.ctx.checkpoint()
            try:
                caught_up = self._turn(conn)
            except psycopg.errors.ObjectInUse:
                # Another session reads the slot right now (a stale attempt, an admin): try again. A batch loaded
                # but not confirmed is peeked again and skipped by its commit LSN.
                caught_up = True
            if caught_up:  # wait for more changes (a cancel wakes it at once)
                self.ctx.interrupt.wait(self.poll_seconds)

    def _turn(self, conn: psycopg.Connection) -> bool:
        """Apply and confirm one batch; whether the slot held less than a full batch."""
        rows = pg.peek(conn, self.slot, self.batch_max_changes, list(self.targets))
        try:
            committed = transactions(rows)
        except DecodingError as error:
            raise TaskFailed(f"Cannot read the changes of slot {self.slot}: {error}") from None
        if committed:
            self._apply(committed)
            crash_point("cdc.after_commit_before_confirm")
            pg.advance(conn, self.slot, format_lsn(committed[-1].commit_lsn))
        return len(rows) < self.batch_max_changes

    def _apply(self, committed: list[Transaction]) -> None:
        fresh = [t for t in committed if t.commit_lsn > self.position]
        tables = batch(fresh, self.primary_keys)
        if not tables:
            return
        self.batches += 1
        key = f"{self.ctx.identity.run_key}-{self.ctx.identity.attempt}-{self.batches}"
        last = fresh[-1].commit_lsn
        loads = []
        for table, changes in tables.items():
            try:
                reader = change_batch(changes)
            except ValueError as error:
                raise TaskFailed(f"Cannot load the changes of {table}: {error}") from None
            self.warehouse.stage(key, self.targets[table], reader)
            loads.append(
                TableLoad(
                    name=self.targets[table],
                    mode="merge",
                    primary_key=self.primary_keys[table],
                    high_watermark=to_watermark(last),
                    loaded_at_column=LOADED_AT_COLUMN,
                    deleted_column=DELETED_COLUMN,
                )
            )
        crash_point("cdc.mid_batch")
        if self.ctx.interrupt.is_set() and self.ctx.interrupt_reason is StopReason.LEASE_LOST:
            self.warehouse.drop_staging(key)  # another attempt owns the stream now: load nothing
            self.ctx.checkpoint()
        # A cancel or a shutdown still loads the batch in hand; the next checkpoint stops the task.
        self.warehouse.load(LoadRequest(key, self.ctx.identity.operation_id, tuple(loads)))
        self.warehouse.drop_staging(key)
        self.position = last
        loaded_at = datetime.now(UTC)
        for transaction in fresh:
            if transaction.committed_at is not None and changes_of([transaction], self.targets):
                self.ctx.record_latency((loaded_at - transaction.committed_at).total_seconds() * 1000)
        self.ctx.add_records(changes_of(fresh, self.targets))


def stream(ctx: TaskContext, resources: EngineResources) -> None:
    params = ctx.params
    slot: str = params["slot"]
    targets = {table["source"]: table["target"] for table in params["tables"]}
    source = pg.source_from(params["url_env"], resources.environ, allowed_hosts=resources.allowed_hosts)
    warehouse = resources.warehouses.for_account(ctx.identity.account)
    with pg.connect(source) as conn:
        keys = {table: pg.describe(conn, source, table).primary_key for table in targets}
        if not pg.slot_exists(conn, source, slot):
            raise TaskFailed(
                f"The replication slot {slot} does not exist on the CDC source ({source.url_env}): launch a "
                "destructive run to snapshot the tables again"
            )
    position = stored_position(warehouse, ctx.identity.operation_id, list(targets.values()), every=False)
    if position is None:
        raise TaskFailed("No snapshot of these tables was loaded: launch a destructive run")
    ctx.message("info", f"Streaming the changes of slot {slot}, resumed from LSN {format_lsn(position)}")
    runner = _Stream(
        ctx,
        source,
        warehouse,
        slot,
        targets,
        keys,
        int(params["batch_max_changes"]),
        float(params["poll_seconds"]),
        position,
    )
    while True:
        try:
            with pg.connect(source) as conn:
                try:
                    runner.run(conn)
                except psycopg.Error as error:
                    if not conn.broken:
                        raise source.failure(f"reading the replication slot {slot} failed", error) from None
                    lost = source.scrub(str(error))
        except pg.SourceError as error:
            if not str(error).startswith("cannot connect"):
                raise
            lost = str(error)
        # The source restarted or the network dropped: connect again, from the warehouse's position.
        ctx.message("warning", f"Lost the CDC source ({lost}); reconnecting every {runner.poll_seconds:g} s")
        ctx.interrupt.wait(runner.poll_seconds)
        ctx.checkpoint()
