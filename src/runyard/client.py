"""A small client of runyard's JSON API, for the CLI: operations, runs, tasks, and a run's events stream."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson
from pydantic import TypeAdapter, ValidationError

from runyard.api.compat.dag import WhoAmI
from runyard.api.routes.sql import SqlResult, SqlTable, SqlTables
from runyard.api.schemas import OperationPublic, RunPublic, RunsPage, TaskPublic, TasksPage
from runyard.domain.statuses import RunStatus, RunType
from runyard.errors import InvalidInput, NotFound, RunyardError
from runyard.services.export_format import NOT_CACHED, TOKEN_HEADER, WILL_NOT_EXIST
from runyard.services.operations import AMBIGUOUS_HINT

API = "/api/v1"
EXPORTS = "/api/integrations/v2"
EXPORT_RETRY_FIRST = 0.05  # seconds before asking again for a page not cached yet, doubled up to EXPORT_RETRY_MOST
EXPORT_RETRY_MOST = 1.0


@dataclass(frozen=True)
class ExportPage:
    """One page of an export: its number, its bytes, and the export's page count once the export is done."""

    number: int
    data: bytes
    total_pages: int | None
    total_rows: int | None


MAX_RUNS_PAGE = 200  # the API's largest page of runs
MAX_RECONNECTS = 5  # consecutive failed attempts to resume an events stream before giving up
RECONNECT_DELAY_SECONDS = 0.5
RESENDS = 3  # times a launch or retry whose answer was lost is sent again, with the same Idempotency-Key
RESEND_PAUSE_SECONDS = 0.5  # before sending again after a failed connection
MAX_RESEND_PAUSE_SECONDS = 5.0  # the most of a 503's Retry-After the client waits before sending again
STREAM_READ_SECONDS = 60.0  # the server sends a keep-alive comment every 15 s of quiet
_OPERATIONS = TypeAdapter(list[OperationPublic])

Event = tuple[str, Any]


class ClientError(RunyardError):
    """The server refused a request (its `detail`, one line), or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RejectedLaunch(ClientError):
    """409 on launch: another run of the operation is active; `run` is the recorded Rejected run."""

    def __init__(self, message: str, run: RunPublic | None) -> None:
        self.run = run
        super().__init__(message, 409)


class RunyardClient:
    """runyard's REST API with one bearer token (an access JWT or a `ry_` API token)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30,
        auth_hint: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`auth_hint` replaces the server's message when it refuses the token (401)."""
        self.base_url = base_url.rstrip("/")
        self.auth_hint = auth_hint
        headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> RunyardClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- operations -----------------------------------------------------------------------------------

    def operations(
        self,
        *,
        type: str | None = None,
        environment: str | None = None,
        state: str | None = None,
        archived: bool = False,
    ) -> list[OperationPublic]:
        """The account's operations the filters select (archived ones only with `archived` or state=archived)."""
        params: dict[str, str] = {"archived": "true"} if archived else {}
        for name, value in (("type", type), ("environment", environment), ("state", state)):
            if value is not None:
                params[name] = str(value)  # StrEnums give their value
        return _OPERATIONS.validate_python(self._json("GET", f"{API}/operations", params=params))

    def operation(self, operation_id: int) -> OperationPublic:
        return OperationPublic.model_validate(self._json("GET", f"{API}/operations/{operation_id}"))

    def find_operation(self, ref: str, *, environment: str | None = None) -> OperationPublic:
        """An operation by id or configuration_id (archived ones too); a name shared by several operations is an
        error listing their ids."""
        if ref.isdigit():
            found = self.operation(int(ref))
            if environment is not None and found.environment != environment:
                raise NotFound("operation", f"{ref} in environment {environment}")
            return found
        listed = self.operations(environment=environment, archived=True)
        matches = [op for op in listed if op.configuration_id == ref]
        if not matches:
            raise NotFound("operation", ref if environment is None else f"{ref} in environment {environment}")
        if len(matches) > 1:
            choices = ", ".join(f"{op.id} ({op.account}/{op.environment}/{op.configuration_type})" for op in matches)
            raise InvalidInput("operation", f"'{ref}' names several operations; {AMBIGUOUS_HINT}: {choices}")
        return matches[0]

    def set_status(self, operation_id: int, *, activated: bool, archived: bool) -> OperationPublic:
        """Activate, deactivate or archive (administrators): POST /operations/{id}/status."""
        body = {"activated": activated, "archived": archived}
        return OperationPublic.model_validate(self._json("POST", f"{API}/operations/{operation_id}/status", json=body))

    def launch(self, operation_id: int, run_type: RunType) -> RunPublic:
        """The new run; RejectedLaunch when another run of the operation is still active. Sent with an
        Idempotency-Key, and sent again with it when the answer is lost (connection, 503), so it launches once."""
        response = self._send_once("POST", f"{API}/operations/{operation_id}/runs", json={"type": run_type.value})
        if response.status_code == httpx.codes.CONFLICT:
            body = _body(response)
            run = body.get("run")
            raise RejectedLaunch(_detail(response), RunPublic.model_validate(run) if run else None)
        return RunPublic.model_validate(self._checked(response).json())

    # --- runs and tasks -------------------------------------------------------------------------------

    def runs(
        self,
        *,
        operation: int | None = None,
        status: RunStatus | None = None,
        type: RunType | None = None,
        page_size: int = 50,
    ) -> RunsPage:
        """The newest `page_size` runs (several API pages when more than one page's worth is asked)."""
        params: dict[str, str | int] = {"page_size": min(page_size, MAX_RUNS_PAGE)}
        for name, value in (("operation", operation), ("status", status), ("type", type)):
            if value is not None:
                params[name] = str(value)  # StrEnums give their value
        first = RunsPage.model_validate(self._json("GET", f"{API}/runs", params=params))
        items, page = list(first.items), 1
        while len(items) < min(page_size, first.total) and len(items) == page * MAX_RUNS_PAGE:
            page += 1
            more = RunsPage.model_validate(self._json("GET", f"{API}/runs", params={**params, "page": page}))
            items.extend(more.items)
        return RunsPage(items=items[:page_size], total=first.total, page=1, page_size=page_size)

    def run(self, run_id: int) -> RunPublic:
        return RunPublic.model_validate(self._json("GET", f"{API}/runs/{run_id}"))

    def tasks(self, run_id: int, page_size: int = 500) -> list[TaskPublic]:
        """Every task of the run, in order (all pages)."""
        items: list[TaskPublic] = []
        page = 1
        while True:
            params = {"page": page, "page_size": page_size}
            found = TasksPage.model_validate(self._json("GET", f"{API}/runs/{run_id}/tasks", params=params))
            items.extend(found.items)
            if not found.items or len(items) >= found.total:
                return items
            page += 1

    def retry(self, run_id: int) -> RunPublic:
        """The new run; sent again when its answer is lost, as `launch` is."""
        return RunPublic.model_validate(self._checked(self._send_once("POST", f"{API}/runs/{run_id}/retry")).json())

    def cancel(self, run_id: int) -> RunPublic:
        return RunPublic.model_validate(self._json("POST", f"{API}/runs/{run_id}/cancel"))

    # --- the SQL Explorer ----------------------------------------------------------------------------

    def sql(self, sql: str, *, limit: int | None = None, query_id: str | None = None) -> SqlResult:
        """Run one read-only query on the account's warehouse: POST /api/v1/sql. The server stops it after its
        RUNYARD_SQL_TIMEOUT_SECONDS, so the answer is awaited without a read timeout of our own."""
        response = self._send("POST", f"{API}/sql", json=_sql_body(sql, limit, query_id), timeout=self._sql_timeout())
        return SqlResult.model_validate(self._checked(response).json())

    def sql_csv(self, sql: str, *, limit: int | None = None, query_id: str | None = None) -> str:
        """The query's rows as CSV (a header row, then the rows)."""
        response = self._send(
            "POST",
            f"{API}/sql",
            params={"format": "csv"},
            json=_sql_body(sql, limit, query_id),
            timeout=self._sql_timeout(),
        )
        return self._checked(response).text

    def sql_tables(self) -> list[SqlTable]:
        """The account's tables and views with their columns."""
        return SqlTables.model_validate(self._json("GET", f"{API}/sql/tables")).tables

    def stop_sql(self, query_id: str) -> bool:
        """Stop our running query `query_id`; False when it is not running (anymore)."""
        response = self._send("DELETE", f"{API}/sql/{query_id}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return False
        self._checked(response)
        return True

    # --- exports (spec 004) -------------------------------------------------------------------------

    def export_pages(
        self,
        view: str,
        *,
        from_date: str | None = None,
        to_date: str | None = None,
        page_size: int | None = None,
        output_type: str = "csv",
    ) -> Iterator[ExportPage]:
        """Every page of an export of `view`, in order: page 1 starts it, the later pages follow its continuation
        token; a page not cached yet is asked again after a short pause."""
        params: dict[str, Any] = {"pagenum": 1, "outputType": output_type}
        params |= {
            name: value
            for name, value in (("fromDate", from_date), ("toDate", to_date), ("pageSize", page_size))
            if value is not None
        }
        path = f"{EXPORTS}/biviews/{view}"
        headers: dict[str, str] = {}
        number, pause = 1, EXPORT_RETRY_FIRST
        while True:
            response = self._send("GET", path, params=params, headers=headers, timeout=self._sql_timeout())
            token = response.headers.get(TOKEN_HEADER)
            if token:
                headers = {TOKEN_HEADER: token}
            if response.status_code == httpx.codes.NOT_FOUND and number > 1:
                body = _body(response)
                if body.get("detail") == WILL_NOT_EXIST:
                    return
            if response.status_code == httpx.codes.BAD_REQUEST and _body(response).get("detail") == NOT_CACHED:
                time.sleep(pause)
                pause = min(pause * 2, EXPORT_RETRY_MOST)
                continue
            self._checked(response)
            pages, rows = response.headers.get("total-pages"), response.headers.get("total-rows")
            yield ExportPage(number, response.content, int(pages) if pages else None, int(rows) if rows else None)
            number, pause = number + 1, EXPORT_RETRY_FIRST
            params = {"pagenum": number}

    def _sql_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._http.timeout.connect, read=None)

    # --- the token -----------------------------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        """Who the token is (spec 003's GET /v1/auth/whoami); ClientError, with `auth_hint`, for a refused token."""
        return WhoAmI.model_validate(self._json("GET", "/v1/auth/whoami"))

    # --- the events stream ----------------------------------------------------------------------------

    def events(self, run_id: int) -> Generator[Event, None, None]:
        """(event, data) pairs of the run's stream until `end`; a dropped connection resumes from Last-Event-ID."""
        stream = _Stream()
        failures = 0
        while True:
            try:
                for item in self._stream_once(run_id, stream):
                    failures = 0
                    yield item
                    if item[0] == "end":
                        return
            except httpx.TransportError as error:
                reason = _transport_reason(error)
            else:
                reason = "the server closed the stream"
            failures += 1
            if failures > MAX_RECONNECTS:
                raise ClientError(f"lost the events of run {run_id}: {reason}")
            time.sleep(RECONNECT_DELAY_SECONDS * failures)

    def _stream_once(self, run_id: int, stream: _Stream) -> Iterator[Event]:
        stream.restart()
        headers = {"Accept": "text/event-stream"}
        if stream.last_id:
            headers["Last-Event-ID"] = stream.last_id
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_SECONDS)
        url = f"{API}/runs/{run_id}/events"
        with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code != httpx.codes.OK:
                response.read()
                self._checked(response)
            for line in response.iter_lines():
                event = stream.feed(line)
                if event is not None:
                    yield event

    # --- plumbing -------------------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._checked(self._send(method, path, **kwargs)).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ClientError(_unreachable(self.base_url, error)) from None

    def _send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that makes a run, with a fresh Idempotency-Key: when the connection fails or the server answers
        503 (its database connection dropped, maybe after the commit), the same request is sent again with the same
        key, at most RESENDS times, so the server answers the run the first one made rather than making another."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for resend in range(RESENDS + 1):
            last = resend == RESENDS
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                if last:
                    raise ClientError(_unreachable(self.base_url, error)) from None
                time.sleep(RESEND_PAUSE_SECONDS)
                continue
            if response.status_code != httpx.codes.SERVICE_UNAVAILABLE or last:
                return response
            time.sleep(min(_retry_after(response), MAX_RESEND_PAUSE_SECONDS))
        raise AssertionError("unreachable")  # pragma: no cover

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        message = _detail(response)
        if response.status_code == httpx.codes.UNAUTHORIZED and self.auth_hint:
            message = self.auth_hint
        raise ClientError(message, response.status_code)


@dataclass
class _Stream:
    """Server-Sent Events parsing: fields accumulate until a blank line dispatches them."""

    last_id: str = ""
    event: str = ""
    data: list[str] = field(default_factory=list)

    def restart(self) -> None:
        """Forget a half-received event (a new connection); keep the last id seen."""
        self.event, self.data = "", []

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Event | None:
        event, data = self.event or "message", "\n".join(self.data)
        self.event, self.data = "", []
        if not data:
            return None
        try:
            return event, orjson.loads(data)
        except orjson.JSONDecodeError:
            return event, data


def login(url: str, login: str, password: str, *, timeout: float = 30) -> str:
    """An access JWT for `login` from POST /api/v1/auth/token."""
    base = url.rstrip("/")
    try:
        response = httpx.post(f"{base}{API}/auth/token", json={"login": login, "password": password}, timeout=timeout)
    except httpx.TransportError as error:
        raise ClientError(_unreachable(base, error)) from None
    if response.status_code == httpx.codes.UNAUTHORIZED:
        raise ClientError(f"login refused by {base}: wrong login or password", 401)
    if not response.is_success:
        raise ClientError(_detail(response), response.status_code)
    try:
        return str(response.json()["access_token"])
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"{base} did not answer with a token: is it a runyard server?") from None


def _sql_body(sql: str, limit: int | None, query_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"sql": sql}
    if limit is not None:
        body["limit"] = limit
    if query_id is not None:
        body["query_id"] = query_id
    return body


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    """The seconds a 503's Retry-After asks for (RESEND_PAUSE_SECONDS when it gives none, or a date)."""
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else RESEND_PAUSE_SECONDS


def _detail(response: httpx.Response) -> str:
    """The server's `detail`, on one line; the HTTP status when there is none (or a server failure)."""
    body = _body(response)
    detail = body.get("detail") or body.get("message")  # spec 003's routes answer {"code", "data", "message"}
    if isinstance(detail, list):  # FastAPI's own validation answers
        detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    text = " ".join(str(detail).split()) if detail else ""
    status = response.status_code
    if not text:
        return f"runyard answered HTTP {status} {response.reason_phrase}".rstrip()
    return f"runyard failed (HTTP {status}): {text}" if status >= httpx.codes.INTERNAL_SERVER_ERROR else text


def _unreachable(url: str, error: httpx.TransportError) -> str:
    if isinstance(error, httpx.ConnectError):
        return f"cannot reach runyard at {url}: is `runyard serve` running?"
    return f"runyard at {url} did not answer: {_transport_reason(error)}"


def _transport_reason(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return " ".join(str(error).split()) or type(error).__name__


def parse_run(data: Any) -> RunPublic:
    """A run from an events stream's `run` data."""
    try:
        return RunPublic.model_validate(data)
    except ValidationError as error:
        raise ClientError(f"unexpected run event: {error.errors()[0]['msg']}") from None
