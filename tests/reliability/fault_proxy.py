"""A fault proxy: an HTTP/1.1 proxy on loopback that breaks a source's answers on purpose, request by request.

It sits between runyard and a real source (the demo HR API): runyard's base_url points at the proxy, which
forwards each request to the upstream and passes its answer on, unless the plan says to break it::

    with DemoSourceServer(config) as source, FaultProxy(source.base_url) as proxy:
        proxy.plan("/employees", Status(503), times=2)      # the first two requests to /employees answer 503
        proxy.plan("/employees", SelfNext(), after=3, times=None)  # the fourth and every later one: a self next
        ... deploy an operation whose base_url is proxy.base_url, run it ...
        assert proxy.count("/employees") == 4  # page 1 three times, page 2 once: its loop is caught

The faults (each a small frozen dataclass):

- ``Silence()``: read the request, never answer (the connection stays open until the client drops it);
- ``Trickle(interval)``: the upstream's status line and headers at once, then its body one byte per ``interval``;
- ``Reset(after_bytes)``: send the first ``after_bytes`` bytes of the upstream's answer, then reset the connection
  (RST, through SO_LINGER 0);
- ``Status(code, retry_after)``: answer ``code`` (503, 429...) with a small JSON body and, if set, ``Retry-After``,
  without asking the upstream;
- ``Truncate(keep, honest_length)``: the upstream's headers and the first ``keep`` fraction of its body, then close.
  By default the ``Content-Length`` stays the whole body's (the answer is cut short in transit); with
  ``honest_length`` it is the cut body's (a complete HTTP answer whose JSON is malformed);
- ``SelfNext()``: the upstream's answer with its next link pointing at the very page requested: a body's ``next``
  (next_url style) and a ``Link: rel="next"`` header become this request's URL, a body's ``next_cursor`` becomes
  this request's ``cursor`` parameter (so plan it after the first page, which has no cursor).

Plans match a request by its path (the query is not considered) and by its ordinal among the requests to that
path (1-based, retries included): a plan covers the ordinals ``after + 1`` to ``after + times`` (``times=None``: every
later one). The first plan added that covers a request applies; a request no plan covers is passed through.

Every request is recorded (`requests`, `count`) with the monotonic times it was read and answered, so a test can
assert that a retry happened, and how long the client waited before it. The proxy runs its own event loop in a
background thread and closes every connection when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = ["Fault", "FaultProxy", "Reset", "Seen", "SelfNext", "Silence", "Status", "Trickle", "Truncate"]

UPSTREAM_SECONDS = 30.0  # how long the upstream may take to answer (it is a local demo source)
HEAD_BYTES = 64 * 1024
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


# --------------------------------------------------------------------------------------------------
# Faults


@dataclass(frozen=True)
class Silence:
    """Read the request, never answer."""


@dataclass(frozen=True)
class Trickle:
    """Headers at once, then the body one byte every `interval` seconds."""

    interval: float = 0.2


@dataclass(frozen=True)
class Reset:
    """The first `after_bytes` bytes of the answer, then a connection reset."""

    after_bytes: int = 0


@dataclass(frozen=True)
class Status:
    """Answer `code` (and `Retry-After: retry_after` when set) without asking the upstream."""

    code: int = 503
    retry_after: str | None = None


@dataclass(frozen=True)
class Truncate:
    """The headers and the first `keep` fraction of the body, then close; see the module docstring."""

    keep: float = 0.5
    honest_length: bool = False


@dataclass(frozen=True)
class SelfNext:
    """The answer, its next link or cursor pointing at the page requested."""


Fault = Silence | Trickle | Reset | Status | Truncate | SelfNext


@dataclass(frozen=True)
class _Plan:
    path: str
    fault: Fault
    after: int
    times: int | None

    def covers(self, path: str, ordinal: int) -> bool:
        last = None if self.times is None else self.after + self.times
        return path == self.path and ordinal > self.after and (last is None or ordinal <= last)


@dataclass
class Seen:
    """One request the proxy read: its path and query, which fault it got (None: passed through), when it was read
    and when its answer began to go out (``time.monotonic()``; ``answered`` stays None while nothing is sent, for ever
    for silence), and whether the whole answer went out (``complete``: never for a reset, a cut or a cut-off trickle).
    """

    ordinal: int
    path: str
    query: str
    fault: Fault | None
    received: float
    answered: float | None = None
    complete: bool = False

    @property
    def params(self) -> dict[str, str]:
        return {name: values[-1] for name, values in parse_qs(self.query).items()}


# --------------------------------------------------------------------------------------------------
# HTTP/1.1 messages, as far as a proxy in front of a JSON API needs them


@dataclass
class _Message:
    start: bytes  # the request or status line
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key.lower() == name), None)

    def without(self, *names: bytes) -> list[tuple[bytes, bytes]]:
        return [(key, value) for key, value in self.headers if key.lower() not in names]

    def head_bytes(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        lines = [self.start, *(key + b": " + value for key, value in headers)]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(raw: bytes) -> _Message:
    start, *lines = raw.split(b"\r\n")
    headers = []
    for line in lines:
        if line:
            key, _, value = line.partition(b":")
            headers.append((key.strip(), value.strip()))
    return _Message(start, headers)


async def _read_request(reader: asyncio.StreamReader) -> _Message | None:
    """The next request on a client connection; None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    message = _parse_head(head[:-4])
    length = int(message.header(b"content-length") or b"0")
    message.body = await reader.readexactly(length) if length else b""
    return message


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def _parse_response(raw: bytes) -> _Message:
    head, _, body = raw.partition(b"\r\n\r\n")
    message = _parse_head(head)
    if (message.header(b"transfer-encoding") or b"").lower() == b"chunked":
        body = _dechunk(body)
    message.body = body
    return message


def _framed(response: _Message, body: bytes, length: int | None = None) -> tuple[bytes, bytes]:
    """Head and body of `response` with `body`, announced as `length` bytes (default its own), connection closing."""
    headers = response.without(b"content-length", b"transfer-encoding", b"connection", b"keep-alive")
    headers += [(b"Content-Length", str(len(body) if length is None else length).encode()), (b"Connection", b"close")]
    return response.head_bytes(headers), body


def _status(fault: Status) -> tuple[bytes, bytes]:
    reason = _REASONS.get(fault.code, "Error")
    body = orjson.dumps({"error": "fault_proxy", "message": f"{fault.code} {reason} (injected by the fault proxy)"})
    response = _Message(f"HTTP/1.1 {fault.code} {reason}".encode(), [(b"Content-Type", b"application/json")])
    if fault.retry_after is not None:
        response.headers.append((b"Retry-After", fault.retry_after.encode()))
    return _framed(response, body)


_LINK_NEXT = re.compile(rb"<[^>]*>(\s*;[^,]*\brel\s*=\s*\"?next\"?)", re.IGNORECASE)


def _self_next(response: _Message, request_url: str, cursor: str | None) -> _Message:
    """`response` with its next link (body `next`, `Link` header) or `next_cursor` pointing at `request_url`."""
    body = response.body
    parsed = orjson.loads(body) if body else None
    if isinstance(parsed, dict):
        if parsed.get("next") is not None:
            parsed["next"] = request_url
        if parsed.get("next_cursor") is not None and cursor is not None:
            parsed["next_cursor"] = cursor
        body = orjson.dumps(parsed)
    headers = [
        (key, _LINK_NEXT.sub(b"<" + request_url.encode() + b">\\1", value) if key.lower() == b"link" else value)
        for key, value in response.headers
    ]
    return replace(response, headers=headers, body=body)


# --------------------------------------------------------------------------------------------------
# The proxy


class FaultProxy:
    """The proxy (see the module docstring): a context manager; `base_url` is where runyard should point."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the upstream must be http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._plans: list[_Plan] = []
        self._seen: list[Seen] = []
        self._ordinals: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # -- the test's side --

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fault proxy is not started")
        return f"http://127.0.0.1:{self._port}"

    def plan(self, path: str, fault: Fault, *, times: int | None = 1, after: int = 0) -> None:
        """Give `fault` to the requests to `path` numbered `after + 1` .. `after + times` (None: all later ones)."""
        with self._lock:
            self._plans.append(_Plan(path, fault, after, times))

    def requests(self, path: str | None = None) -> list[Seen]:
        """The requests read so far (to `path`, if given), oldest first; copies."""
        with self._lock:
            return [replace(seen) for seen in self._seen if path is None or seen.path == path]

    def count(self, path: str | None = None) -> int:
        """How many requests (to `path`, if given) the proxy has read."""
        return len(self.requests(path))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._port = started.result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- the loop's side --

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=HEAD_BYTES)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            request = await _read_request(reader)
            if request is not None:
                await self._answer(request, reader, writer)
        except OSError:  # the client went away: nothing left to answer
            pass
        finally:
            self._handlers.discard(handler)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _record(self, request: _Message) -> tuple[Seen, str]:
        """Note the request, pick its fault; the record and the request's target (path and query)."""
        target = request.start.split(b" ")[1].decode("latin-1")
        parts = urlsplit(target)
        with self._lock:
            ordinal = self._ordinals.get(parts.path, 0) + 1
            self._ordinals[parts.path] = ordinal
            fault = next((p.fault for p in self._plans if p.covers(parts.path, ordinal)), None)
            seen = Seen(ordinal, parts.path, parts.query, fault, time.monotonic())
            self._seen.append(seen)
        return seen, target

    async def _send(self, writer: asyncio.StreamWriter, seen: Seen, data: bytes) -> None:
        """Write `data`; the first write of an answer stamps `seen.answered` (before the bytes can reach the
        client, so a client's wait measured from it is never overstated)."""
        if seen.answered is None:
            with self._lock:
                seen.answered = time.monotonic()
        writer.write(data)
        await writer.drain()

    def _complete(self, seen: Seen) -> None:
        with self._lock:
            seen.complete = True

    async def _answer(self, request: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen, target = self._record(request)
        fault = seen.fault
        if isinstance(fault, Silence):
            await reader.read()  # until the client gives up and closes its end
            return
        if isinstance(fault, Status):
            await self._send(writer, seen, b"".join(_status(fault)))
            self._complete(seen)
            return
        response = await self._forward(request)
        if isinstance(fault, SelfNext):
            host = (request.header(b"host") or b"").decode("latin-1")
            response = _self_next(response, f"http://{host}{target}", seen.params.get("cursor"))
        if isinstance(fault, Trickle):
            head, body = _framed(response, response.body)
            await self._send(writer, seen, head)
            for index in range(len(body)):
                await asyncio.sleep(fault.interval)
                if reader.at_eof() or writer.is_closing():  # the client gave up
                    return
                await self._send(writer, seen, body[index : index + 1])
        elif isinstance(fault, Reset):
            head, body = _framed(response, response.body)
            await self._send(writer, seen, (head + body)[: fault.after_bytes])
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        elif isinstance(fault, Truncate):
            cut = response.body[: int(len(response.body) * fault.keep)]
            head, body = _framed(response, cut, None if fault.honest_length else len(response.body))
            await self._send(writer, seen, head + body)
            if not fault.honest_length:
                return
        else:
            await self._send(writer, seen, b"".join(_framed(response, response.body)))
        self._complete(seen)

    async def _forward(self, request: _Message) -> _Message:
        """Ask the upstream, on a connection of its own that it closes after answering; its whole answer."""
        reader, writer = await asyncio.open_connection(*self._upstream)
        try:
            headers = [*request.without(b"connection", b"keep-alive"), (b"Connection", b"close")]
            writer.write(request.head_bytes(headers) + request.body)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), UPSTREAM_SECONDS)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return _parse_response(raw)
