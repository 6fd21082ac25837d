"""Extraction: walk an endpoint's pages and stage its records as Parquet parts and a manifest.

Memory stays bounded whatever the endpoint's size: records are converted to Arrow page by
page and written out every PART_ROWS rows. Cancellation is checked between pages.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import statistics
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urljoin

from runyard.engine import arrow
from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.resources import EngineResources, document_name, input_key, output_key
from runyard.faults import crash_point
from runyard.operations.api_to_table.http import Page, SourceClient, SourceError
from runyard.operations.api_to_table.paginators import (
    PageRequest,
    PaginationError,
    PaginationLoopError,
    RecordSelectorError,
    make_paginator,
    plan_page_slices,
    select_records,
    total_pages,
)
from runyard.operations.api_to_table.spec import ApiToTableSpec, EndpointSpec, OffsetPagination, PageNumberPagination
from runyard.staging import Manifest, PartInfo, Staging, StagingKey
from runyard.warehouse.base import Warehouse

PART_ROWS = 100_000
PROBE_PAGES = 3  # pages walked before deciding whether to fetch ahead
SLOW_PAGE_MS = 20.0  # a page that takes this long to arrive is worth fetching ahead
NO_PAGES = (0, -1)  # a page slice past the last page: nothing to fetch
MAX_RETRY_MESSAGES = 50


class PartWriter:
    """Buffers page tables; every `part_rows` rows, a Parquet part is written in the background.

    Encoding Parquet releases the GIL, so the next pages are parsed while a part is written. One
    part is written at a time (the next waits for it), so memory holds at most two parts.
    """

    def __init__(self, staging: Staging, key: StagingKey, part_rows: int = PART_ROWS) -> None:
        self.staging = staging
        self.key = key
        self.part_rows = part_rows
        self.parts: list[PartInfo] = []
        self._buffer: list[arrow.Table] = []
        self._buffered = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-part-writer")
        self._pending: Future[PartInfo] | None = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True)

    def add(self, table: arrow.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        combined = arrow.concat(self._buffer)
        self._buffer, self._buffered = [], 0
        self._collect()
        self._pending = self._pool.submit(self.staging.write_part, self.key, len(self.parts), combined)

    def close(self) -> list[PartInfo]:
        """Write what is buffered and wait for every part; a failed write raises here."""
        self.flush()
        self._collect()
        return self.parts

    def _collect(self) -> None:
        if self._pending is not None:
            self.parts.append(self._pending.result())
            self._pending = None


@dataclass
class CursorTracker:
    """The highest value of the incremental cursor field seen in this extraction."""

    column: str | None
    value: Any = None

    def see(self, table: arrow.Table) -> None:
        if self.column is None:
            return
        candidate = arrow.column_max(table, self.column)
        if candidate is not None and (self.value is None or candidate > self.value):
            self.value = candidate

    def as_json(self) -> str | int | float | None:
        """Numbers stay numbers (so they compare as numbers); dates and times become ISO text."""
        if self.value is None or isinstance(self.value, int | float):
            return self.value
        return self.value.isoformat() if hasattr(self.value, "isoformat") else str(self.value)


def high_watermark(ctx: TaskContext, resources: EngineResources) -> None:
    """`Get High Watermark [ep]`: the cursor value the last load reached (or the initial value).

    The stored value is checked against the largest cursor value in the warehouse table; a difference (the
    table was changed outside runyard) is reported, and the stored value is still the one used. Its live
    metrics: no records (it reads no data, and a job's record total stays the rows it moved), the time the
    reads took as its latency, and the value as its note.
    """
    identity = ctx.identity
    table = identity.table or ""
    incremental = ctx.params["incremental"]
    field_name = incremental["cursor_field"]
    warehouse = resources.warehouses.for_account(identity.account)
    started = time.perf_counter()
    stored = warehouse.high_watermark(identity.operation_id, table)
    found = _table_max(warehouse, table, field_name) if stored is not None else None
    ctx.record_latency((time.perf_counter() - started) * 1000.0)
    value = stored if stored is not None else incremental.get("initial_value")
    key = output_key(identity)
    resources.staging.write_document(
        key.account, key.operation_id, key.run_key, key.table, document_name(key.task, key.attempt), {"value": value}
    )
    if stored is not None:
        ctx.note(f"{field_name} = {stored} (stored)")
        ctx.message("info", f"High watermark of {table}.{field_name}: {stored} (from the last load)")
        if found is not None and not _same_value(stored, found.value):
            ctx.message("warning", _mismatch(table, field_name, stored, found.value))
    elif value is not None:
        ctx.note(f"{field_name} = {value} (initial value)")
        ctx.message("info", f"No earlier load of {table}: starting from the initial value {value}")
    else:
        ctx.note(f"{field_name}: none stored, extracting everything")
        ctx.message("info", f"No earlier load of {table}: extracting everything")


@dataclass(frozen=True)
class _TableMax:
    value: object  # None when the table has no row with a cursor value


def _table_max(warehouse: Warehouse, table: str, field_name: str) -> _TableMax | None:
    """The largest cursor value in the warehouse table; None when there is nothing to check against (no table,
    or no cursor column)."""
    column = field_name.replace(".", arrow.SEPARATOR)
    columns = warehouse.columns(table)
    if columns is None or column not in columns:
        return None
    kind = columns[column].upper()
    largest = f"max({_quoted(column)})"
    if "TIMESTAMP" in kind:  # as microseconds: the driver's own time zone conversion needs a module we do not ship
        largest = f"epoch_us({largest})"
    # Both names are quoted identifiers, and the column was just found in the table: no value is spliced in.
    rows = warehouse.query(f"SELECT {largest} FROM {_quoted(table)}")  # noqa: S608
    value = rows[0][0] if rows else None
    if "TIMESTAMP" in kind and isinstance(value, int):
        zone = UTC if "TIME ZONE" in kind or "TZ" in kind else None
        value = (_EPOCH + timedelta(microseconds=value)).replace(tzinfo=zone)
    return _TableMax(value)


_EPOCH = datetime(1970, 1, 1)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _same_value(stored: str, found: object) -> bool:
    """The stored watermark is text; the table's maximum is a typed value: compare them as that type."""
    try:
        if isinstance(found, datetime):
            return datetime.fromisoformat(stored) == found
        if isinstance(found, date):
            return date.fromisoformat(stored) == found
        if isinstance(found, int | float) and not isinstance(found, bool):
            return float(stored) == float(found)
    except (TypeError, ValueError):
        return False
    return str(found) == stored


def _mismatch(table: str, field_name: str, stored: str, found: object) -> str:
    largest = "no value at all (the table has no rows with one)" if found is None else f"{_shown(found)}"
    return (
        f"High watermark of {table}.{field_name} does not match the table: the stored watermark is {stored}, "
        f"but the largest {field_name} in table {table} is {largest}. Using the stored value {stored}; "
        "the table may have been changed outside runyard."
    )


def _shown(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def extract(ctx: TaskContext, resources: EngineResources) -> None:
    """`Process [ep]`: one endpoint (or one slice of it) into staging."""
    spec = ApiToTableSpec.model_validate({**ctx.params["source"], "endpoints": [ctx.params["endpoint"]]})
    endpoint = spec.endpoints[0]
    identity = ctx.identity
    params = {**endpoint.query_params(), **_incremental_params(ctx, resources, endpoint)}
    slice_ = ctx.params.get("slice")
    if slice_ and slice_["by"] == "date_window":
        params.update({slice_["param_from"]: slice_["from"], slice_["param_to"]: slice_["to"]})
    cursor = CursorTracker(_cursor_column(endpoint))
    retries: list[str] = []
    with (
        PartWriter(resources.staging, output_key(identity)) as writer,
        SourceClient(
            spec,
            environ=resources.environ,
            allowed_hosts=resources.allowed_hosts,
            transport=resources.transport,
            on_retry=retries.append,
        ) as client,
        ctx.on_stop(client.interrupt),  # a cancel or a lost lease ends a read blocked on the source at once
    ):
        walk = _Walk(ctx, client, endpoint, writer, cursor)
        page_range = _page_range(walk, slice_, params)
        pages = walk.run(params, page_range) if page_range != NO_PAGES else 0
        writer.close()
    _report_retries(ctx, retries)
    rows = sum(part.rows for part in writer.parts)
    schema = arrow.unify(arrow.schema_from_json(part.schema) for part in writer.parts)
    extra = {"pages": pages, "max_cursor": cursor.as_json(), "rejected": walk.rejected, "retries": len(retries)}
    resources.staging.write_manifest(
        Manifest(key=writer.key, parts=tuple(writer.parts), rows=rows, schema=arrow.schema_to_json(schema), extra=extra)
    )
    if rows == 0:
        ctx.message("info", f"{endpoint.name}: the source returned no records")
    ctx.table(endpoint.name, rows)


@dataclass(frozen=True)
class FetchedPage:
    number: int
    page: Page
    records: list[object]


_DONE = object()


class PageFeed:
    """Runs a page generator one page ahead in a thread (for sources that make us wait).

    While this thread turns a page into Arrow and Parquet, the feed thread waits on the network
    for the next one (socket reads release the GIL). Errors raised by the generator are raised
    again here, in the caller's thread; closing the feed stops the generator at its next page.
    """

    def __init__(self, pages: Iterator[FetchedPage | str], depth: int = 2) -> None:
        self._pages = pages
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="runyard-page-feed", daemon=True)

    def __enter__(self) -> PageFeed:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)  # unblock a producer waiting to put
        self._thread.join()

    def __iter__(self) -> Iterator[FetchedPage | str]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _produce(self) -> None:
        try:
            for item in self._pages:
                if self._stop.is_set():
                    return
                self._queue.put(item)
            self._queue.put(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            self._queue.put(error)
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()


class TableSink(Protocol):
    """Where a walk puts each page's records: Parquet parts (PartWriter), or a stream's micro-batch."""

    def add(self, table: arrow.Table) -> None: ...


@dataclass
class _Walk:
    ctx: TaskContext
    client: SourceClient
    endpoint: EndpointSpec
    writer: TableSink
    cursor: CursorTracker
    rejected: int = 0
    fetched: int = 0

    def fetch(self, request: PageRequest, number: int, previous: Page | None) -> Page:
        target = _target(request, previous, self.endpoint.path)
        try:
            return self.client.get(target, request.params)
        except SourceError as error:
            self.ctx.checkpoint()  # interrupted because the task is stopping: say why it stopped, not how
            raise TaskFailed(f"{self.endpoint.name}, page {number}: {error}") from error

    def run(self, params: Mapping[str, str], page_range: tuple[int, int] | None) -> int:
        """Walk the pages; returns how many were fetched.

        A source that makes us wait for each page (a remote API) gets its next page fetched while
        this one is converted. A fast one (on this machine or next to it) is walked in this thread:
        there, a second thread would only contend for the GIL.
        """
        pages = self.pages(params, page_range)
        latencies = [self.consume(item) for item in itertools.islice(pages, PROBE_PAGES)]
        if latencies and statistics.median(latencies) >= SLOW_PAGE_MS:
            with PageFeed(pages) as feed:
                latencies.extend(self.consume(item) for item in feed)
        else:
            latencies.extend(self.consume(item) for item in pages)
        return self.fetched

    def consume(self, item: FetchedPage | str) -> float:
        """Take one page (or report a note from the walk); returns the page's latency in ms."""
        self.ctx.checkpoint()
        if isinstance(item, str):
            self.ctx.message("warning", item)
            return 0.0
        self.take(item)
        self.fetched = item.number
        return item.page.latency_ms

    def pages(self, params: Mapping[str, str], page_range: tuple[int, int] | None) -> Iterator[FetchedPage | str]:
        """The pagination loop: fetch, select the records, ask the paginator for the next request."""
        paginator = make_paginator(self.endpoint.pagination, page_range=page_range)
        request = paginator.first_request(params)
        page: Page | None = None
        previous_records: list[object] = []
        for number in itertools.count(1):
            if self.endpoint.max_pages is not None and number > self.endpoint.max_pages:
                yield f"{self.endpoint.name}: stopped after max_pages={self.endpoint.max_pages}"
                return
            crash_point(f"extract.page_{number}")
            page = self.fetch(request, number, page)
            records = self.select(page, number)
            if records and records == previous_records:  # unequal pages differ at their first record: cheap
                raise TaskFailed(
                    f"{self.endpoint.name}, page {number}: the source answered with the same {len(records)} records "
                    f"as page {number - 1}, as if it ignored the paging parameters; stopped instead of reading the "
                    "same page for ever"
                )
            previous_records = records
            yield FetchedPage(number, page, records)
            try:
                paginator.update(page.body, page.headers, len(records))
                if not paginator.has_next():
                    return
                request = paginator.next_request()
            except PaginationLoopError as error:
                raise TaskFailed(self.loop_message(error, number, page)) from error
            except PaginationError as error:
                raise TaskFailed(f"{self.endpoint.name}, page {number}: {error}") from error

    def loop_message(self, error: PaginationLoopError, number: int, page: Page) -> str:
        """Which page the source's next link (or cursor) leads back to, named without credentials: the raw link
        may carry an API key the source copied into it, which a task's messages must never show."""
        link = "next cursor" if error.kind == "cursor" else "next link"
        shown = "(its address cannot be shown)"
        if error.request is not None:
            with contextlib.suppress(SourceError):
                shown = self.client.safe_url(_target(error.request, page, self.endpoint.path), error.request.params)
        return (
            f"{self.endpoint.name}, page {number}: the source's {link} points back to a page already read: "
            f"{shown}; stopped instead of reading the same pages for ever"
        )

    def select(self, page: Page, number: int) -> list[object]:
        try:
            return select_records(page.body, self.endpoint.records)
        except RecordSelectorError as error:
            raise TaskFailed(f"{self.endpoint.name}, page {number} ({page.url}): {error}") from error

    def take(self, fetched: FetchedPage) -> None:
        records = fetched.records
        objects = [r for r in records if isinstance(r, dict)]
        if len(objects) < len(records):
            self.reject(records, objects, fetched.number)
        table = arrow.records_to_table(objects)
        self.writer.add(table)
        self.cursor.see(table)
        self.ctx.record_latency(fetched.page.latency_ms)  # first, so that no flush sees records without latency
        self.ctx.add_records(len(objects))

    def reject(self, records: list[object], objects: list[dict[str, Any]], number: int) -> None:
        bad = [r for r in records if not isinstance(r, dict)]
        if not objects:
            kind = type(bad[0]).__name__
            raise TaskFailed(
                f"{self.endpoint.name}, page {number}: the records are {kind} values, not JSON objects "
                f"(first: {str(bad[0])[:80]!r}); check the endpoint's record selector"
            )
        self.rejected += len(bad)
        self.ctx.message(
            "error",
            f"{self.endpoint.name}, page {number}: {len(bad)} records were not JSON objects and were rejected "
            f"(first: {str(bad[0])[:80]!r})",
        )


def _target(request: PageRequest, previous: Page | None, path: str) -> str:
    """What to GET for `request`: the endpoint's path, or the API's next URL (a relative one resolved against the
    page it came with)."""
    if request.url and previous is not None:
        return urljoin(previous.url, request.url)
    return request.url or path


def _page_range(walk: _Walk, slice_: Mapping[str, Any] | None, params: Mapping[str, str]) -> tuple[int, int] | None:
    """For a page slice, ask the first page how many pages there are, then take this slice's share."""
    if not slice_ or slice_["by"] != "pages":
        return None
    pagination = walk.endpoint.pagination
    assert isinstance(pagination, PageNumberPagination | OffsetPagination)
    first = walk.fetch(make_paginator(pagination).first_request(params), 1, None)
    total = total_pages(pagination, first.body)
    if total is None:
        raise TaskFailed(f"{walk.endpoint.name}: the first page does not say how many pages there are")
    ranges = plan_page_slices(total, int(slice_["count"])) if total else []
    index = int(slice_["index"])
    return ranges[index] if index < len(ranges) else NO_PAGES


def _incremental_params(ctx: TaskContext, resources: EngineResources, endpoint: EndpointSpec) -> dict[str, str]:
    if not ctx.params.get("incremental") or endpoint.incremental is None:
        return {}
    identity = ctx.identity
    for upstream in ctx.inputs:
        key = input_key(identity, upstream)
        document = resources.staging.read_document(
            key.account, key.operation_id, key.run_key, key.table, document_name(key.task, key.attempt)
        )
        if document is not None and document.get("value") is not None:
            return {endpoint.incremental.param: str(document["value"])}
    return {}


def _cursor_column(endpoint: EndpointSpec) -> str | None:
    if endpoint.incremental is None:
        return None
    return endpoint.incremental.cursor_field.replace(".", arrow.SEPARATOR)


def _report_retries(ctx: TaskContext, retries: list[str]) -> None:
    for text in retries[:MAX_RETRY_MESSAGES]:
        ctx.message("warning", text)
    if len(retries) > MAX_RETRY_MESSAGES:
        ctx.message("warning", f"... and {len(retries) - MAX_RETRY_MESSAGES} more retried requests")
