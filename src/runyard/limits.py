"""Request limits on every route (API, spec adapters and UI): a body's size and a JSON body's depth.

`RequestLimits` is an ASGI middleware:

- a `Content-Length` over the limit (RUNYARD_MAX_BODY_BYTES) answers 413 at once, before any of the body is read;
- a JSON body (or one without a content type, which FastAPI parses as JSON) is read here, counting bytes as they
  arrive (413 past the limit, chunked bodies included), its depth checked (400 past MAX_JSON_DEPTH: Python's
  parser would recurse once per level), then handed to the app as it was;
- any other body is counted as the app reads it: past the limit, the read raises `BodyTooLarge`, an
  HTTPException(413) that each part of the app answers in its own shape.

So at most the limit (plus one chunk) of a body is ever in memory, and no body is read to find out it is too large.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The deepest nesting of arrays and objects a JSON body may have; runyard's bodies are two or three levels deep.
MAX_JSON_DEPTH = 32

#: The body of a refusal, from the request's path, the status and the message (spec adapters have their own shape).
Refusal = Callable[[str, int, str], Mapping[str, Any]]

# A JSON string, escapes included. The closing quote is optional so that a match never fails: an unterminated
# string runs to the end of the body instead of being retried from every later quote (quadratic).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = [0] * 256
for _open, _close in (b"[]", b"{}"):
    _STEP[_open], _STEP[_close] = 1, -1


def detail(_path: str, _status: int, message: str) -> Mapping[str, Any]:
    """The native API's error body: `{"detail": message}`."""
    return {"detail": message}


class BodyTooLarge(HTTPException):
    """A body that grew past the limit while the app read it (a chunked one, or one without Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit), headers={"Connection": "close"})


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit:,} bytes (RUNYARD_MAX_BODY_BYTES)"


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in `body`, brackets inside strings not counted; no recursion."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class RequestLimits:
    """Refuses bodies over `max_body_bytes` (413) and JSON bodies nested deeper than `max_json_depth` (400)."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = MAX_JSON_DEPTH, refusal: Refusal = detail
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, send, 413, too_large(self.max_body_bytes), close=True)
            return
        has_body = (declared.isdigit() and int(declared) > 0) or b"transfer-encoding" in headers
        if has_body and _is_json(headers.get(b"content-type")):
            await self._json(scope, receive, send)
            return
        await self.app(scope, self._counted(receive), send)

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(scope, send, 413, too_large(self.max_body_bytes), close=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        if json_depth(body) > self.max_json_depth:
            deep = f"the JSON body is nested deeper than {self.max_json_depth} levels"
            await self._refuse(scope, send, 400, deep, close=False)
            return
        await self.app(scope, _replay(body, receive), send)

    def _counted(self, receive: Receive) -> Receive:
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        return counted

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str, *, close: bool) -> None:
        body = json.dumps(self.refusal(scope["path"], status, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:  # the rest of the body is not read: the connection cannot carry another request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _is_json(content_type: bytes | None) -> bool:
    """What FastAPI parses as JSON: no content type, application/json, or application/<anything>+json."""
    if content_type is None:
        return True
    kind = content_type.split(b";")[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read here, as one message; then the client's own messages (a disconnect, say)."""
    pending: bytes | None = body

    async def replayed() -> Message:
        nonlocal pending
        if pending is None:
            return await receive()
        message: Message = {"type": "http.request", "body": pending, "more_body": False}
        pending = None
        return message

    return replayed
