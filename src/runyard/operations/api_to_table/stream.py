"""`Stream [ep]`: an incremental endpoint polled every few seconds, each micro-batch loaded exactly once.

Each poll asks for the records after the stored watermark and walks their pages. A batch that brought
records is staged and committed in one warehouse load together with its new watermark, so a worker that
dies at any moment leaves either the whole batch and its watermark, or neither: the next attempt (another
worker, after the lease lapses) asks again from the watermark that was committed. A batch in hand is always
loaded before a cancel stops the stream; a poll still waiting on the source is cut short (its pages so far
are dropped, and asked for again from the same watermark by the next run). `destructive` runs start from the
initial value and replace the table with their first batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from runyard.engine import arrow
from runyard.engine.context import TaskContext, TaskInterrupted
from runyard.engine.resources import EngineResources
from runyard.faults import crash_point
from runyard.operations.api_to_table.extract import CursorTracker, _cursor_column, _Walk
from runyard.operations.api_to_table.http import SourceClient
from runyard.operations.api_to_table.spec import ApiToTableSpec, EndpointSpec
from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, TableLoad, Warehouse

# A stream runs for days: its first batches are told in messages, then one in MESSAGE_EVERY (its metrics say the
# rest, live).
MESSAGED_BATCHES = 20
MESSAGE_EVERY = 1000
MAX_RETRY_MESSAGES = 20


@dataclass
class Batch:
    """What one poll brought: its pages as Arrow tables, and the highest cursor value among them."""

    cursor: CursorTracker
    tables: list[arrow.Table] = field(default_factory=list)
    rows: int = 0

    def add(self, table: arrow.Table) -> None:
        if table.num_rows:
            self.cursor.see(table)
            self.tables.append(table)
            self.rows += table.num_rows


def stream(ctx: TaskContext, resources: EngineResources) -> None:
    spec = ApiToTableSpec.model_validate({**ctx.params["source"], "endpoints": [ctx.params["endpoint"]]})
    endpoint = spec.endpoints[0]
    assert endpoint.incremental is not None  # the spec refuses a stream without one
    identity = ctx.identity
    warehouse = resources.warehouses.for_account(identity.account)
    poll_seconds = float(ctx.params["poll_seconds"])
    replace_first = identity.run_type == "destructive" and identity.attempt == 1
    stored = None if replace_first else warehouse.high_watermark(identity.operation_id, endpoint.name)
    watermark = stored if stored is not None else endpoint.incremental.initial_value
    ctx.message("info", _start_message(endpoint, watermark, stored is not None, poll_seconds))
    retries: list[str] = []
    number = loaded = 0
    with (
        SourceClient(
            spec,
            environ=resources.environ,
            allowed_hosts=resources.allowed_hosts,
            transport=resources.transport,
            on_retry=retries.append,
        ) as client,
        ctx.on_stop(client.interrupt),
    ):  # a stop ends a poll blocked on the source; it is asked again
        previous_poll: datetime | None = None
        try:
            while True:
                ctx.checkpoint()
                polled = time.monotonic()
                polled_at = datetime.now(UTC)
                batch = _poll(ctx, client, endpoint, watermark)
                for text in retries[:MAX_RETRY_MESSAGES]:
                    ctx.message("warning", text)
                retries.clear()
                if batch.rows:
                    number += 1
                    mode = "replace" if replace_first else "merge"
                    watermark = (
                        _load(ctx, warehouse, endpoint, batch, number, mode, (previous_poll, polled_at)) or watermark
                    )
                    loaded += batch.rows
                    replace_first = False
                previous_poll = polled_at
                ctx.interrupt.wait(max(0.0, poll_seconds - (time.monotonic() - polled)))
        except TaskInterrupted:
            ctx.message("info", f"Stream of {endpoint.name} stopped after {number} batches, {loaded} records loaded")
            raise


def _start_message(endpoint: EndpointSpec, watermark: str | None, stored: bool, poll_seconds: float) -> str:
    assert endpoint.incremental is not None
    field = endpoint.incremental.cursor_field
    start = "from the beginning" if watermark is None else f"after {field} = {watermark}"
    origin = " (the watermark of the last batch loaded)" if stored else ""
    return f"Streaming {endpoint.name} every {poll_seconds:g} s, {start}{origin}"


def _poll(ctx: TaskContext, client: SourceClient, endpoint: EndpointSpec, watermark: str | None) -> Batch:
    """Every page of records after `watermark`. No checkpoint inside: a batch is taken whole, then loaded."""
    assert endpoint.incremental is not None
    params = dict(endpoint.query_params())
    if watermark is not None:
        params[endpoint.incremental.param] = str(watermark)
    batch = Batch(CursorTracker(_cursor_column(endpoint)))
    walk = _Walk(ctx, client, endpoint, batch, batch.cursor)
    for item in walk.pages(params, None):
        if isinstance(item, str):
            ctx.message("warning", item)
            continue
        objects = [record for record in item.records if isinstance(record, dict)]
        if len(objects) < len(item.records):
            walk.reject(item.records, objects, item.number)
        batch.add(arrow.records_to_table(objects))
    return batch


def _load(
    ctx: TaskContext,
    warehouse: Warehouse,
    endpoint: EndpointSpec,
    batch: Batch,
    number: int,
    mode: str,
    polls: tuple[datetime | None, datetime],
) -> str | None:
    """Stage the batch and commit it with its watermark in one load; returns the new watermark.

    The latency recorded is the delay between the oldest record's cursor time (when the cursor is a time:
    its change in the source) and the commit; otherwise the time from the poll to the commit. `polls`: when the
    previous poll (None for the first) and this batch's poll began. A record the previous poll did not see changed
    after it began, so its latency is at most the time between the two polls plus this batch's own time: the
    message gives both."""
    previous_poll, polled_at = polls
    identity = ctx.identity
    schema = arrow.unify(table.schema for table in batch.tables)
    aligned = [arrow.align(table, schema) for table in batch.tables]
    key = f"{identity.run_key}-s{identity.attempt}-b{number}"
    warehouse.stage(key, endpoint.name, arrow.reader(schema, (b for t in aligned for b in arrow.batches(t))))
    crash_point("stream.before_commit")
    watermark = batch.cursor.as_json()
    table = TableLoad(
        name=endpoint.name,
        mode="replace" if mode == "replace" else "merge",
        primary_key=tuple(endpoint.primary_key),
        cursor_field=endpoint.incremental.cursor_field if endpoint.incremental else None,
        high_watermark=None if watermark is None else str(watermark),
        loaded_at_column=LOADED_AT_COLUMN,
    )
    try:
        warehouse.load(LoadRequest(key, identity.operation_id, (table,)))
    finally:
        warehouse.drop_staging(key)
    loaded = datetime.now(UTC)
    oldest = _as_moment(_oldest(aligned, batch.cursor.column)) or polled_at
    latency_ms = max(0.0, (loaded - oldest).total_seconds() * 1000)
    ctx.record_latency(latency_ms)
    ctx.add_records(batch.rows)  # counted once loaded, with their latency
    if number <= MESSAGED_BATCHES or number % MESSAGE_EVERY == 0:
        took_ms = (loaded - polled_at).total_seconds() * 1000
        gap_ms = None if previous_poll is None else (polled_at - previous_poll).total_seconds() * 1000
        gap = "" if gap_ms is None else f"polled {gap_ms:.0f} ms after the previous poll, "
        ctx.message(
            "info",
            f"Batch {number}: {batch.rows} records loaded into {endpoint.name} {latency_ms:.0f} ms after their "
            f"change in the source ({gap}the batch took {took_ms:.0f} ms); {table.cursor_field} now {watermark}",
        )
    return None if watermark is None else str(watermark)


def _oldest(tables: list[arrow.Table], column: str | None) -> Any:
    if column is None:
        return None
    values = [value for value in (arrow.column_min(t, column) for t in tables) if value is not None]
    return min(values) if values else None


def _as_moment(value: Any) -> datetime | None:
    """A cursor value as an instant, when it is a time (naive times are UTC); None for numbers and text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
