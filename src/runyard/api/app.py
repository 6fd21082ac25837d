"""create_app(runtime): the ASGI app `runyard serve` runs: the JSON API, the spec adapters, health."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard import __version__, ui
from runyard.api import auth, errors
from runyard.api.compat import etlworks, jobs
from runyard.api.routes import auth as auth_routes
from runyard.api.routes import events, operations, runs, users
from runyard.runtime import Runtime
from runyard.services.metrics import LastChecks
from runyard.store.database import Store

access_log = logging.getLogger("runyard.access")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings
    app = FastAPI(
        title="runyard",
        version=__version__,
        description="Run data operations and watch them run: operations, runs, tasks, loads and jobs.",
    )
    app.state.runtime = runtime
    app.state.tokens = auth.TokenService(settings.signing_key(), ttl_seconds=settings.token_ttl_seconds)
    app.state.last_checks = LastChecks()
    auth.install(app, auth.Authenticator(runtime.store, app.state.tokens, allow_query_token=settings.query_token_auth))
    errors.install(app)
    for router in (
        auth_routes.router,
        operations.router,
        runs.router,
        events.router,
        users.router,
        jobs.router,
        etlworks.router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.add_api_route("/healthz", _healthz(runtime.store), methods=["GET"], tags=["health"])
    ui.install(app, runtime)
    app.add_middleware(AccessLogAndHeaders)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class ErrorDetail(BaseModel):
    """Every error runyard answers: one sentence that names what is wrong."""

    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorDetail, "description": description}
    for status, description in (
        (400, "A parameter is invalid"),
        (401, "No credentials, or invalid ones"),
        (403, "Your role does not allow this"),
        (404, "Not found (or not in your account)"),
        (409, "The state of the run or operation forbids it"),
        (422, "The request is malformed"),
        (503, "The runs database is unavailable"),
    )
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents 422 as a list of errors; runyard answers every error as {"detail": "..."}."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["HTTPValidationError"] = ErrorDetail.model_json_schema()
        components.pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema


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
    """Adds the security headers (where a response has not set its own) and logs one line per request.

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
    access_log.info(
        "%s %s %d %.1fms",
        scope["method"],
        auth.redact_query_token(target),
        status,
        (time.perf_counter() - started) * 1000,
    )
