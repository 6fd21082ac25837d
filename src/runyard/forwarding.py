"""Requests that need the warehouse, forwarded by the extra HTTP processes to the process that holds it.

With RUNYARD_HTTP_PROCESSES > 1 on the embedded DuckDB warehouse, only the first `runyard serve` process may open
the accounts' DuckDB files (DuckDB admits one writing process). The SQL Explorer, the exports and their pages, which
read the warehouse, are therefore answered there: the first process also serves the app on a Unix socket of its own
(`ForwardingSocket`), and every other process passes such a request, whole, to that socket (`ForwardToWarehouse`)
and the answer, whole, back. The first process authenticates it as it would any request: the credentials travel
with it, and nothing is decided by the process that forwards.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The routes that read the warehouse: the SQL Explorer (API and page) and the exports (spec 004, API and page).
WAREHOUSE_PATHS = re.compile(r"^/(?:api/v1/sql|api/integrations?/v2/biviews|sql|exports)(?:[/-]|$)")
MAX_FORWARDED_BODY = 1024 * 1024  # above every body these routes take (a query is at most 100,000 characters)
# Hop-by-hop headers (RFC 9110 §7.6.1) stay on their own connection; content-length is recomputed.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)


@dataclass
class ForwardingSocket:
    """A Unix socket in a private folder, on which the first process serves the app for the others."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="runyard-")))

    def __post_init__(self) -> None:
        os.chmod(self.folder, 0o700)  # only this user's processes can reach the socket
        self.path = str(self.folder / "warehouse.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.set_inheritable(False)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class ForwardToWarehouse:
    """ASGI middleware of an extra HTTP process: a request that reads the warehouse goes to the first process over
    `socket_path`; any other is answered here."""

    def __init__(self, app: ASGIApp, socket_path: str) -> None:
        self.app = app
        self.socket_path = socket_path
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not WAREHOUSE_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:
            await _answer(send, 413, b'{"detail":"the request body is too large"}')
            return
        query = scope.get("query_string", b"")
        target = scope.get("raw_path") or scope["path"].encode()
        url = target.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in _HOP_BY_HOP]
        client = self._connected()
        try:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            response = await client.send(request, stream=True)
        except httpx.TransportError:
            await _answer(send, 503, b'{"detail":"the process that holds the warehouse does not answer"}')
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (name, value) for name, value in response.headers.raw if name.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    def _connected(self) -> httpx.AsyncClient:
        if self._client is None:
            transport = httpx.AsyncHTTPTransport(uds=self.socket_path)
            # No timeout of our own: the first process bounds its queries (RUNYARD_SQL_TIMEOUT_SECONDS) and pages.
            self._client = httpx.AsyncClient(transport=transport, base_url="http://runyard", timeout=None)  # noqa: S113
        return self._client


async def _body(receive: Receive) -> bytes | None:
    """The whole request body; None past MAX_FORWARDED_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORWARDED_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
