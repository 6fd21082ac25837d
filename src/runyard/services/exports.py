"""Paged exports with continuation tokens (spec 004, BI Views v2): sessions, their background export, their pages.

Page 1 of an export starts a session: a row in `export_sessions` and a background thread, in the process that holds
the account's warehouse, which reads the rows from one read-only snapshot and caches every page in staging
(`<account>/.exports/<session>/page-<n>`). Page 1 is answered as soon as it is cached, with the session's
continuation token in the `continuation-token` header (each account may start RUNYARD_EXPORTS_PER_MINUTE exports a
minute: services.account_limits); later pages, sent with that header, are read from the cache
by whichever process answers. The session's queue (active, completed, draining, stale) follows
runyard.domain.exports; every request and the leading scheduler's sweep apply its timers, and a session that leaves
the draining queue is deleted with its cache.

The token is the session's id and an HMAC of it under a key derived from the instance's signing key: it cannot be
forged or altered (4xx), and it only opens sessions of the caller's account (another account's token: 404).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from runyard.domain import exports as queues
from runyard.domain.exports import ExportStatus, Queue, QueueTimers, SessionState
from runyard.errors import RunyardError
from runyard.services.account_limits import export_limit, reserve_in
from runyard.services.bi_views import find_view
from runyard.services.export_format import (
    MAX_PAGE_SIZE,
    NOT_CACHED,
    OUTPUT_TYPES,
    WILL_NOT_EXIST,
    OutputType,
    empty_page,
    encode_page,
)
from runyard.settings import Settings
from runyard.store.database import Store
from runyard.store.tables import export_sessions
from runyard.warehouse.base import LOADED_AT_COLUMN, ExportQuery, QueryFailed, Warehouse, WarehouseProvider

if TYPE_CHECKING:
    from runyard.services.app_context import AppContext
    from runyard.staging import Staging

log = logging.getLogger("runyard.exports")

DEFAULT_PAGE_SIZE = 1_000
DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")  # the last two: forms
_TOKEN_CONTEXT = b"runyard export continuation token v1"
_SIGNATURE_BYTES = 16
_PROGRESS = ("pages_cached", "total_pages", "total_rows", "page_size", "output_type")
STOP_SECONDS = 10.0  # how long a cancel waits for this process's export to stop before deleting its pages
ACTIVITY_SECONDS = 1.0  # a page request writes the session's last activity at most this often
PROGRESS_SECONDS = 0.25  # an export writes its progress to the store at most this often (and at its end)


class ExportError(RunyardError):
    """A request the export API refuses: its HTTP status, one sentence, and what else the answer carries."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class ExportRequest:
    """What page 1 asks for: the view, the time window [from_date, to_date), the page size and the output."""

    view: str
    from_date: datetime | None
    to_date: datetime | None
    page_size: int
    output_type: OutputType


@dataclass(frozen=True)
class Source:
    """Where an export reads: a table of the warehouse, or a view declared in configuration (its SELECT)."""

    name: str
    sql: str | None
    time_column: str | None


@dataclass(frozen=True)
class Page:
    """A page to answer: its bytes and media type, the session's token and, once known, the totals."""

    data: bytes
    output_type: OutputType
    number: int
    token: str
    total_pages: int | None
    total_rows: int | None


ResolveSource = Callable[[str, str], Source | None]  # (account, view name) -> a declared view, if any


def parse_request(
    view: str, from_date: str | None, to_date: str | None, page_size: str | None, output_type: str | None
) -> ExportRequest:
    """The query parameters of page 1, checked; ExportError(400) names the one that is wrong."""
    kind = (output_type or "csv").strip().lower()
    if kind not in OUTPUT_TYPES:
        raise ExportError(400, f"outputType must be one of {', '.join(OUTPUT_TYPES)}, not {output_type!r}")
    checked: OutputType = kind
    size = _whole_number("pageSize", page_size, DEFAULT_PAGE_SIZE)
    limit = MAX_PAGE_SIZE[checked]
    if not 1 <= size <= limit:
        raise ExportError(400, f"pageSize must be between 1 and {limit:,} for outputType={checked}, not {size}")
    start, end = parse_date("fromDate", from_date), parse_date("toDate", to_date)
    if start is not None and end is not None and end <= start:
        raise ExportError(400, "toDate must be later than fromDate (the window is fromDate <= time < toDate)")
    return ExportRequest(view=view, from_date=start, to_date=end, page_size=size, output_type=checked)


def parse_page_number(value: str | None) -> int:
    number = _whole_number("pagenum", value, 1)
    if number < 0:
        raise ExportError(400, f"pagenum must be 0 or more, not {number}")
    return number


def parse_date(name: str, value: str | None) -> datetime | None:
    """`yyyy-MM-ddTHH:mm:ss` (or with a space, or a date alone), as UTC; empty means no bound."""
    if value is None or not value.strip():
        return None
    for layout in DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ExportError(
        400, f"{name} must be written yyyy-MM-ddTHH:mm:ss (for example 2024-01-31T00:00:00), not {value!r}"
    )


def _whole_number(name: str, value: str | None, default: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise ExportError(400, f"{name} must be a whole number, not {value!r}") from None


class ExportTokens:
    """Continuation tokens: `<session id>.<HMAC of it>`, under a key derived from the instance's signing key."""

    def __init__(self, signing_key: bytes) -> None:
        self._key = hmac.new(signing_key, _TOKEN_CONTEXT, hashlib.sha256).digest()

    def issue(self, session_id: str) -> str:
        return f"{session_id}.{self._signature(session_id)}"

    def session_of(self, token: str) -> str:
        """The session a token names; ExportError(400) when it was not issued by this instance or was altered."""
        session_id, _, signature = token.strip().partition(".")
        try:
            uuid.UUID(session_id)
        except ValueError:
            raise ExportError(400, "the continuation token is not valid: it was not issued by runyard") from None
        if not hmac.compare_digest(signature, self._signature(session_id)):
            raise ExportError(400, "the continuation token is not valid: it was altered or not issued by runyard")
        return session_id

    def _signature(self, session_id: str) -> str:
        digest = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class ExportService:
    """Starts exports, answers their pages and sessions, and moves their queues; see the module docstring."""

    def __init__(
        self,
        store: Store,
        staging: Staging,
        warehouses: WarehouseProvider | None,
        *,
        signing_key: Callable[[], bytes],
        timers: QueueTimers,
        first_page_seconds: float = 60.0,
        page_wait_seconds: float = 1.0,
        resolve: ResolveSource | None = None,
        starts_per_minute: int | None = None,
    ) -> None:
        self.store = store
        # Exports an account may start per minute (RUNYARD_EXPORTS_PER_MINUTE); None: no limit.
        self.starts_per_minute = starts_per_minute
        self.staging = staging
        self.warehouses = warehouses
        self._signing_key = signing_key
        self._tokens: ExportTokens | None = None
        self.timers = timers
        self.first_page_seconds = first_page_seconds
        self._resolve = resolve
        self._lock = threading.Lock()
        self.page_wait_seconds = page_wait_seconds
        self._progress_changed = threading.Condition()
        self._cached: dict[str, int] = {}  # session id -> pages cached, for the exports running in this process
        # The exports running in this process: session id -> (interrupt, set once the export has let go).
        self._running: dict[str, tuple[Callable[[], None], threading.Event]] = {}

    @property
    def tokens(self) -> ExportTokens:
        """The tokens, keyed on first use: a process that only expires sessions (a worker) never reads the key."""
        if self._tokens is None:
            self._tokens = ExportTokens(self._signing_key())
        return self._tokens

    # -- page 1 and the count --------------------------------------------------------------------------------

    def count(self, account: str, request: ExportRequest) -> int:
        """The rows the export would give (BI Views v2's "get the row count first")."""
        warehouse = self._warehouse(account)
        try:
            return int(warehouse.count_rows(self._query(account, request)))
        except QueryFailed as error:
            raise ExportError(400, error.reason) from error

    def start(self, account: str, account_id: int, user_id: int | None, request: ExportRequest) -> Page:
        """A new session: its export starts in the background, and page 1 is answered once cached.

        When page 1 takes longer than `first_page_seconds`, ExportError(400, NOT_CACHED) carries the token, so that
        the client asks for page 1 again with it."""
        token, ready = self.begin(account, account_id, user_id, request)
        ready.wait(self.first_page_seconds)
        return self.page(account_id, account, token, request.view, 1)

    def begin(
        self, account: str, account_id: int, user_id: int | None, request: ExportRequest
    ) -> tuple[str, threading.Event]:
        """A new session and its background export: its token, and an event set once page 1 is cached (or the
        export has ended). AccountThrottled, and nothing started, past `starts_per_minute` of the account."""
        warehouse = self._warehouse(account)
        query = self._query(account, request)
        session_id = str(uuid.uuid4())
        with self.store.write() as conn:
            now = self.store.now(conn)
            if self.starts_per_minute is not None:
                reserve_in(conn, now, export_limit(self.starts_per_minute), account_id, account)
            state = queues.started(now)
            conn.execute(
                export_sessions.insert().values(
                    id=session_id,
                    account_id=account_id,
                    user_id=user_id,
                    object_name=request.view,
                    from_date=_text(request.from_date),
                    to_date=_text(request.to_date),
                    page_size=request.page_size,
                    output_type=request.output_type,
                    queue=state.queue.value,
                    status=state.status.value,
                    accumulate=0,
                    pages_cached=0,
                    initiated_at=state.last_activity,
                    last_activity=state.last_activity,
                    queue_since=state.queue_since,
                )
            )
        token = self.tokens.issue(session_id)
        ready = threading.Event()
        job = _Export(self, account, session_id, query, request, ready)
        threading.Thread(
            target=job.run, args=(warehouse,), name=f"runyard-export-{session_id[:8]}", daemon=True
        ).start()
        return token, ready

    # -- pages -----------------------------------------------------------------------------------------------

    def page(
        self,
        account_id: int,
        account: str,
        token: str,
        view: str,
        number: int,
        *,
        asked: Mapping[str, str | None] | None = None,
    ) -> Page:
        """Page `number` of the session the token names, from the cache.

        A page is served as soon as its file exists: the cache writes each page whole under its final name. A page
        this process is about to cache is waited for up to `page_wait_seconds` before answering "not yet cached".
        `asked`, the query parameters (fromDate, toDate, pageSize, outputType) as sent: those repeated must be
        page 1's (a filter changed mid-paging: 400)."""
        session_id = self.tokens.session_of(token)
        row, state = self._requested(session_id, account_id, view)
        if asked is not None:
            _check_same_query(row, asked)
        if state is None or not queues.accepts_pages(state):
            self._forget(account, session_id, removed=state is None)
            raise ExportError(404, "this export session has ended (canceled or expired): ask for page 1 again")
        output_type: OutputType = row["output_type"]
        data = self.staging.read_export_page(account, session_id, number)
        if data is None and self._wait_for_page(session_id, number):
            data = self.staging.read_export_page(account, session_id, number)
        if data is not None:
            return Page(data, output_type, number, token, row["total_pages"], row["total_rows"])
        row = self._row(session_id, account_id) or row  # the export may have ended meanwhile
        total_pages, total_rows = row["total_pages"], row["total_rows"]
        if total_pages is not None and number > total_pages:
            raise ExportError(404, WILL_NOT_EXIST, total_pages=total_pages, total_rows=total_rows)
        if row["status"] == ExportStatus.FAILED.value:
            raise ExportError(400, f"the export failed: {row['message']}")
        raise ExportError(400, NOT_CACHED, token=token)

    def _requested(self, session_id: str, account_id: int, view: str) -> tuple[RowMapping, SessionState | None]:
        """The session's row and its state once a page was requested (activity). The request is written only when
        it moves the session, or its last activity is older than ACTIVITY_SECONDS: a client paging fast costs one
        read per page, not one write."""
        with self.store.read() as conn:
            row = _select(conn, session_id, account_id)
            now = self.store.now(conn)
        if row is None:
            raise ExportError(404, "no export session has this continuation token in your account")
        if row["object_name"].lower() != view.lower():
            raise ExportError(400, f"this continuation token is for an export of {row['object_name']}, not of {view}")
        stored = _state(row)
        state = queues.page_requested(stored, now, self.timers)
        unmoved = state is not None and state.queue == stored.queue and state.status == stored.status
        if unmoved and (now - stored.last_activity).total_seconds() < ACTIVITY_SECONDS:
            return row, state
        with self.store.write() as conn:
            locked = _locked(conn, session_id, account_id)
            if locked is None:
                return row, None
            state = self._save(conn, locked, queues.page_requested(_state(locked), self.store.now(conn), self.timers))
        return locked, state

    def _row(self, session_id: str, account_id: int) -> RowMapping | None:
        with self.store.read() as conn:
            return _select(conn, session_id, account_id)

    def _wait_for_page(self, session_id: str, number: int) -> bool:
        """Wait until this process's export of the session has cached page `number` or ended (False at once when
        another process exports it, or none does)."""
        deadline = time.monotonic() + self.page_wait_seconds
        with self._progress_changed:
            while True:
                cached = self._cached.get(session_id)
                if cached is None:
                    return False
                if cached >= number:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress_changed.wait(left)

    def cached(self, session_id: str, pages: int | None) -> None:
        """The export of this process has cached `pages` pages (None: it ended); wakes the requests waiting."""
        with self._progress_changed:
            if pages is None:
                self._cached.pop(session_id, None)
            else:
                self._cached[session_id] = pages
            self._progress_changed.notify_all()

    # -- sessions --------------------------------------------------------------------------------------------

    def sessions(self, account: str, account_id: int, *, progress: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Every session of the account, grouped by queue, oldest first (timers applied); with `progress`, each also
        says its pages cached, totals, page size and output type (the Exports page shows them)."""
        grouped: dict[str, list[dict[str, Any]]] = {queue.value: [] for queue in queues.QUEUES}
        removed: list[str] = []
        with self.store.write() as conn:
            now = self.store.now(conn)
            rows = (
                conn.execute(
                    sa.select(export_sessions)
                    .where(export_sessions.c.account_id == account_id)
                    .order_by(export_sessions.c.initiated_at, export_sessions.c.id)
                )
                .mappings()
                .all()
            )
            for row in rows:
                state = self._save(conn, row, queues.advance(_state(row), now, self.timers))
                if state is None:
                    removed.append(row["id"])
                else:
                    described = self._describe(row, state, now)
                    if progress:
                        described |= {key: row[key] for key in _PROGRESS}
                    grouped[state.queue.value].append(described)
        for session_id in removed:
            self._forget(account, session_id, removed=True)
        return grouped

    def session(self, account: str, account_id: int, task_id: str) -> dict[str, Any]:
        """One session (with its queue), timers applied; ExportError 400 for a bad token, 404 when absent."""
        session_id = self.tokens.session_of(task_id)
        with self.store.write() as conn:
            row = _locked(conn, session_id, account_id)
            now = self.store.now(conn)
            state = None if row is None else self._save(conn, row, queues.advance(_state(row), now, self.timers))
        if row is None or state is None:
            if row is not None:
                self._forget(account, session_id, removed=True)
            raise ExportError(404, "no export session has this task_id in your account")
        return {**self._describe(row, state, now), "queue": state.queue.value}

    def cancel(self, account: str, account_id: int, task_id: str) -> dict[str, Any]:
        """Cancel a session: its caching stops, it drains, and its pages are deleted now."""
        session_id = self.tokens.session_of(task_id)
        with self.store.write() as conn:
            row = _locked(conn, session_id, account_id)
            now = self.store.now(conn)
            current = None if row is None else queues.advance(_state(row), now, self.timers)
            if row is None or current is None:
                raise ExportError(404, "no export session has this task_id in your account")
            state = queues.canceled(current, now)
            self._save(conn, row, state)
            message = row["message"]
            if state.status == ExportStatus.CANCELED and current.status != ExportStatus.CANCELED:
                message = "canceled by a client"  # a session that had drained on its own keeps its message
                conn.execute(export_sessions.update().where(export_sessions.c.id == session_id).values(message=message))
        self._interrupt(session_id)
        self.staging.remove_export(account, session_id)
        described = self._describe({**row, "message": message}, state, now)
        return {**described, "queue": state.queue.value}

    def sweep(self) -> int:
        """Apply every session's timers; delete the sessions that left the draining queue, with their pages.
        Returns how many were deleted."""
        with self.store.read() as conn:
            rows = conn.execute(sa.select(export_sessions.c.id, export_sessions.c.account_id)).all()
        removed = 0
        for session_id, account_id in rows:
            with self.store.write() as conn:
                row = _locked(conn, session_id, account_id)
                if row is None:
                    continue
                state = self._save(conn, row, queues.advance(_state(row), self.store.now(conn), self.timers))
                account = _account_name(conn, account_id)
            if state is None:
                removed += 1
                self._forget(account, session_id, removed=True)
            elif state.queue == Queue.DRAINING:
                self._interrupt(session_id)
        return removed

    def close(self) -> None:
        """Stop this process's exports (their sessions end FAILED, saying the server stopped)."""
        with self._lock:
            running = list(self._running.values())
        for interrupt, _ in running:
            interrupt()

    # -- the background export's records ---------------------------------------------------------------------

    def record_page(self, session_id: str, number: int, rows: int, accumulated: int) -> bool:
        """A page is cached: progress and activity. False when the session no longer takes pages (stop)."""
        with self.store.write() as conn:
            row = _locked(conn, session_id)
            if row is None:
                return False
            now = self.store.now(conn)
            current = queues.advance(_state(row), now, self.timers)
            if current is None or not queues.accepts_pages(current):
                self._save(conn, row, current)
                return False
            state = queues.page_cached(current, now)
            conn.execute(
                export_sessions.update()
                .where(export_sessions.c.id == session_id)
                .values(pages_cached=number, accumulate=accumulated, metric=rows, **_columns(state))
            )
        return True

    def record_end(self, session_id: str, pages: int, rows: int, last: int, failure: str | None) -> None:
        """The export ended: every page cached (`pages`, `rows`, `last` rows on the last page), or failed with
        `failure` (a sentence) after caching them."""
        with self.store.write() as conn:
            row = _locked(conn, session_id)
            if row is None:
                return
            now = self.store.now(conn)
            current = queues.advance(_state(row), now, self.timers)
            if current is None or not queues.accepts_pages(current):
                self._save(conn, row, current)
                return
            if failure is None:
                values: dict[str, Any] = {
                    "total_pages": pages,
                    "total_rows": rows,
                    **_columns(queues.finished(current, now)),
                }
            else:
                values = {"message": failure, **_columns(queues.failed(current, now))}
            values |= {"pages_cached": pages, "accumulate": rows, "metric": last if pages else None}
            conn.execute(export_sessions.update().where(export_sessions.c.id == session_id).values(**values))

    @contextmanager
    def running(self, session_id: str, interrupt: Callable[[], None]) -> Iterator[None]:
        """While an export of this process runs: it can be interrupted, and waited for (`_interrupt`)."""
        done = threading.Event()
        with self._lock:
            self._running[session_id] = (interrupt, done)
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(session_id, None)
            done.set()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _warehouse(self, account: str) -> Warehouse:
        if self.warehouses is None:
            raise ExportError(
                503, "this process holds no warehouse: exports start in the first `runyard serve` process"
            )
        return self.warehouses.for_account(account)

    def _query(self, account: str, request: ExportRequest) -> ExportQuery:
        source = self._source(account, request.view)
        if source.time_column is None and (request.from_date or request.to_date):
            raise ExportError(400, f"{request.view} has no time column: fromDate and toDate cannot apply to it")
        return ExportQuery(
            source=source.name,
            sql=source.sql,
            time_column=source.time_column,
            from_time=_naive(request.from_date),
            to_time=_naive(request.to_date),
        )

    def _source(self, account: str, view: str) -> Source:
        declared = self._resolve(account, view) if self._resolve is not None else None
        if declared is not None:
            return declared
        warehouse = self._warehouse(account)
        for table in warehouse.tables():
            if table.name.lower() == view.lower():
                names = {column.name for column in table.columns}
                return Source(table.name, None, LOADED_AT_COLUMN if LOADED_AT_COLUMN in names else None)
        raise ExportError(404, "there is no view or table of that name in your account")

    def _save(self, conn: Connection, row: RowMapping, state: SessionState | None) -> SessionState | None:
        """Store `state` if it moved (None: delete the row; the caller deletes the pages after the commit)."""
        if state is None:
            conn.execute(export_sessions.delete().where(export_sessions.c.id == row["id"]))
        elif state != _state(row):
            conn.execute(export_sessions.update().where(export_sessions.c.id == row["id"]).values(**_columns(state)))
        return state

    def _forget(self, account: str, session_id: str, *, removed: bool) -> None:
        self._interrupt(session_id)
        if removed:
            self.staging.remove_export(account, session_id)

    def _interrupt(self, session_id: str, wait_seconds: float = STOP_SECONDS) -> None:
        """Stop the session's export if this process runs it, and wait until it has let go of its pages (so that
        deleting them races with no write). An export in another process stops at its next page."""
        with self._lock:
            running = self._running.get(session_id)
        if running is not None:
            interrupt, done = running
            interrupt()
            done.wait(wait_seconds)

    def _describe(self, row: RowMapping | dict[str, Any], state: SessionState, now: datetime) -> dict[str, Any]:
        """A session as spec 004 answers it."""
        return {
            "accumulate": row["accumulate"],
            "activity_tracker": {
                "elapsed_time": queues.elapsed(row["initiated_at"], now),
                "initated_time": queues.stamp(row["initiated_at"]),  # the document's spelling
                "last_activity": queues.stamp(state.last_activity),
            },
            "message": row["message"],
            "metric": row["metric"],
            "query_config": {
                "filter_params": {"fromDate": row["from_date"], "toDate": row["to_date"]},
                "object_name": row["object_name"],
            },
            "status": state.status.value,
            "task_id": self.tokens.issue(row["id"]),
        }


class _Export:
    """One session's background export: read the snapshot page by page, cache each page, record progress."""

    def __init__(
        self,
        service: ExportService,
        account: str,
        session_id: str,
        query: ExportQuery,
        request: ExportRequest,
        ready: threading.Event,
    ) -> None:
        self.service = service
        self.account = account
        self.session_id = session_id
        self.query = query
        self.request = request
        self.ready = ready

    def run(self, warehouse: Warehouse) -> None:
        pages = rows = last = 0
        failure: str | None = None
        staging = self.service.staging
        recorded = 0.0
        try:
            with warehouse.export(self.query) as reader, self.service.running(self.session_id, reader.interrupt):
                for table in reader.pages(self.request.page_size):
                    pages, last = pages + 1, table.num_rows
                    rows += last
                    staging.write_export_page(
                        self.account, self.session_id, pages, encode_page(table, self.request.output_type)
                    )
                    self.service.cached(self.session_id, pages)
                    if pages == 1 or time.monotonic() - recorded >= PROGRESS_SECONDS:
                        if not self.service.record_page(self.session_id, pages, last, rows):
                            staging.remove_export(self.account, self.session_id)  # canceled or expired meanwhile
                            return
                        recorded = time.monotonic()
                    self.ready.set()
                if pages == 0:  # no row: page 1 is the header alone
                    pages = 1
                    names = [column.name for column in reader.columns]
                    staging.write_export_page(
                        self.account, self.session_id, 1, empty_page(names, self.request.output_type)
                    )
        except QueryFailed as error:
            failure = "the export was stopped" if error.interrupted else error.reason
        except Exception as error:  # recorded on the session for the client; the traceback goes to the log
            log.exception("export %s of %s failed", self.session_id, self.request.view)
            failure = f"the export failed: {type(error).__name__}: {error}"
        finally:
            try:
                self.service.record_end(self.session_id, pages, rows, last, failure)
            except Exception:
                log.exception("export %s: its end could not be recorded", self.session_id)
            self.service.cached(self.session_id, None)
            self.ready.set()


def _select(conn: Connection, session_id: str, account_id: int) -> RowMapping | None:
    query = sa.select(export_sessions).where(
        export_sessions.c.id == session_id, export_sessions.c.account_id == account_id
    )
    return conn.execute(query).mappings().first()


def _locked(conn: Connection, session_id: str, account_id: int | None = None) -> RowMapping | None:
    """The session's row, locked for this transaction (PostgreSQL; SQLite's writer already is alone)."""
    query = sa.select(export_sessions).where(export_sessions.c.id == session_id)
    if account_id is not None:
        query = query.where(export_sessions.c.account_id == account_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


def _account_name(conn: Connection, account_id: int) -> str:
    from runyard.store.tables import accounts

    return str(conn.execute(sa.select(accounts.c.name).where(accounts.c.id == account_id)).scalar_one())


def _state(row: RowMapping | dict[str, Any]) -> SessionState:
    return SessionState(
        queue=Queue(row["queue"]),
        status=ExportStatus(row["status"]),
        last_activity=row["last_activity"],
        queue_since=row["queue_since"],
    )


def _columns(state: SessionState) -> dict[str, Any]:
    return {
        "queue": state.queue.value,
        "status": state.status.value,
        "last_activity": state.last_activity,
        "queue_since": state.queue_since,
    }


def _check_same_query(row: RowMapping, asked: Mapping[str, str | None]) -> None:
    """A later page may repeat page 1's parameters but not change them: the pages would no longer fit together."""
    started: dict[str, object] = {
        "fromDate": row["from_date"], "toDate": row["to_date"],
        "pageSize": row["page_size"], "outputType": row["output_type"],
    }  # fmt: skip
    readers: dict[str, Callable[[str], object]] = {
        "fromDate": lambda value: _text(parse_date("fromDate", value)),
        "toDate": lambda value: _text(parse_date("toDate", value)),
        "pageSize": lambda value: _whole_number("pageSize", value, DEFAULT_PAGE_SIZE),
        "outputType": lambda value: value.strip().lower() or "csv",
    }
    changed = [
        name
        for name, read in readers.items()
        if (value := asked.get(name)) is not None and read(value) != started[name]
    ]
    if changed:
        was = ", ".join(f"{name}={started[name]}" for name in changed)
        raise ExportError(
            400,
            f"this continuation token pages an export started with {was}: parameters cannot change between "
            "pages; ask for page 1 again for another export",
        )


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _naive(moment: datetime | None) -> datetime | None:
    """Warehouse time columns are naive UTC (TIMESTAMP)."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def export_service(context: AppContext) -> ExportService:
    """The export service of an app: the context's store, staging and warehouses, the timers of its settings."""
    settings = context.settings
    store = context.store

    def declared(account: str, view: str) -> Source | None:
        found = find_view(store, account, view)
        return None if found is None else Source(found.name, found.sql, found.time_column)

    return ExportService(
        store,
        context.staging,
        context.warehouses,
        signing_key=settings.signing_key,
        timers=export_timers(settings),
        first_page_seconds=settings.export_first_page_seconds,
        resolve=declared,
        starts_per_minute=settings.exports_per_minute,
    )


def export_timers(settings: Settings) -> QueueTimers:
    return QueueTimers(
        completed_seconds=settings.export_completed_seconds,
        draining_seconds=settings.export_draining_seconds,
        stale_after_seconds=settings.export_stale_after_seconds,
        stale_seconds=settings.export_stale_seconds,
    )
