"""create_app(context): the ASGI app `runyard serve` runs: the JSON API with the spec adapters, the web UI, health.

The one place that composes runyard.api and runyard.ui, which never import each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard import __version__, api, ui
from runyard.api.auth import redact_query_token, strip_redirect_tokens
from runyard.api.compat.dag import refusal
from runyard.limits import RequestLimits
from runyard.logtext import escape_control
from runyard.services.app_context import AppContext
from runyard.store.database import Store

access_log = logging.getLogger("runyard.access")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def create_app(context: AppContext) -> FastAPI:
    app = FastAPI(
        title="runyard",
        version=__version__,
        description="Run data operations and watch them run: operations, runs, tasks, loads and jobs.",
    )
    api.install(app, context)
    app.add_api_route("/healthz", _healthz(context.store), methods=["GET"], tags=["health"])
    ui.install(app, context)
    # Inside the access log: a refused body is logged, with the security headers, like any answer.
    app.add_middleware(RequestLimits, max_body_bytes=context.settings.max_body_bytes, refusal=refusal)
    app.add_middleware(AccessLogAndHeaders)
    return app


def _healthz(store: Store) -> Callable[[], Awaitable[JSONResponse]]:
    def probe() -> bool:
        try:
            with store.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError:
            return False
        return True

    async def healthz() -> JSONResponse:
        """200 when the runs database answers, 503 when it does not."""
        if not await run_in_threadpool(probe):
            return JSONResponse({"status": "unavailable", "detail": "the runs database does not answer"}, 503)
        body: dict[str, Any] = {"status": "ok", "version": __version__, "database": store.backend}
        return JSONResponse(body)

    return healthz


class AccessLogAndHeaders:
    """Adds the security headers (where a response has not set its own), keeps query tokens out of redirects, and logs
    one line per request.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware costs
    about 1 ms of CPU per request and sits between every streamed chunk (the events stream).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def send_with_headers(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                strip_redirect_tokens(headers)
                # Logged before the response leaves, as the old middleware did: a client that reads the log
                # right after its answer finds the line there.
                answered = True
                _log_access(scope, message["status"], started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if not answered:
                _log_access(scope, 500, started)


def _log_access(scope: Scope, status: int, started: float) -> None:
    query = scope.get("query_string", b"").decode("latin-1")
    target = scope["path"] + (f"?{query}" if query else "")
    # Escaped here as well as by the formatter: the line stays one line under any logging configuration.
    access_log.info(
        "%s %s %d %.1fms",
        escape_control(scope["method"]),
        escape_control(redact_query_token(target)),
        status,
        (time.perf_counter() - started) * 1000,
    )
