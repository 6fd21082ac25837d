"""create_app(runtime): the ASGI app `runyard serve` runs: the JSON API, the spec adapters, health."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

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
    app.middleware("http")(_access_log_and_headers)
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


async def _access_log_and_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    access_log.info(
        "%s %s %d %.1fms",
        request.method,
        auth.redact_query_token(target),
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response
