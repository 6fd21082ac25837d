"""The JSON API under /api/v1 and the spec adapters (compat/): routes, auth, schemas, error handling.

`install(app, context)` adds them to the app that runyard.app composes; the API reads and steers
through runyard.services only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from runyard.api import auth, errors
from runyard.api.compat import biviews, dag, etlworks, jobs
from runyard.api.routes import alerts, events, operations, runs, sql, users, workflows
from runyard.api.routes import auth as auth_routes
from runyard.api.routes import notifications as notification_routes
from runyard.services.app_context import AppContext


def install(app: FastAPI, context: AppContext) -> None:
    """The API's routes, authentication and error handlers, on `app`."""
    settings = context.settings
    app.state.context = context
    app.state.tokens = auth.TokenService(settings.signing_key(), ttl_seconds=settings.token_ttl_seconds)
    app.state.exports = exports = context.exports
    _close_on_shutdown(app, exports.close)
    auth.install(app, auth.Authenticator(context.store, app.state.tokens, allow_query_token=settings.query_token_auth))
    errors.install(app)
    for router in (
        auth_routes.router,
        operations.router,
        runs.router,
        alerts.router,
        events.router,
        users.router,
        workflows.router,
        sql.router,
        notification_routes.router,
        jobs.router,
        etlworks.router,
        biviews.router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(dag.router)  # spec 003: its own error shape, {"code", "data", "message"} (compat/dag.py)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]


def _close_on_shutdown(app: FastAPI, close: Callable[[], None]) -> None:
    """Run `close` when the app's lifespan ends, after whatever the lifespan already did."""
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with previous(app_) as state:
            try:
                yield state
            finally:
                close()

    app.router.lifespan_context = lifespan


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
        app.openapi_schema = errors.native_openapi(schema)  # native routes answer bad input 400, never 422
    return app.openapi_schema
