"""One table from runyard's errors to HTTP answers: every error is JSON with a `detail` naming what is wrong.

Bad input is 400 under the native API (`/api/v1/`, spec 002's job status included), and its `detail` names
the field: `query.page_size: ...`, `type: ...` for a body field, `body: ...` for the body as a whole. The other
spec adapters keep what they answered before (a request FastAPI could not validate is 422 there), since their
documents name no code for it; spec 003's routes answer in their own shape (compat/dag.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from runyard.errors import (
    CancelNotAllowed,
    ConfigError,
    Conflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
    RetryNotAllowed,
    RunRejected,
    RunyardError,
    TooManyRequests,
)

log = logging.getLogger("runyard.api")

#: The methods a 405's `Allow` may name, in the order it names them.
ALLOW_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

#: Where every bad input answers 400: the native API (spec 002's `/api/v1/bulk_metadata/job/` is under it too).
NATIVE_PREFIX = "/api/v1/"

STATUS_FOR: tuple[tuple[type[RunyardError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 400),
    (ConfigError, 400),
    (RunRejected, 409),
    (TooManyRequests, 429),
    (RetryNotAllowed, 409),
    (CancelNotAllowed, 409),
    (Conflict, 409),
    (IllegalTransition, 409),
)


def status_for(error: RunyardError) -> int:
    for kind, status in STATUS_FOR:
        if isinstance(error, kind):
            return status
    return 400


def headers_for(error: RunyardError) -> dict[str, str] | None:
    """The headers an error's answer carries: Retry-After on a 429."""
    if isinstance(error, TooManyRequests):
        return {"Retry-After": str(error.retry_after_seconds)}
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(RunyardError)
    async def _runyard_error(_request: Request, error: RunyardError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status_for(error), headers=headers_for(error))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _describe(error)}, status_code=bad_input_status(request.url.path))

    @app.exception_handler(sa.exc.OperationalError)
    async def _database_down(_request: Request, error: sa.exc.OperationalError) -> JSONResponse:
        log.warning("runs database unavailable: %s", str(error.orig).splitlines()[0] if error.orig else error)
        return JSONResponse(
            {"detail": "The runs database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(sa.exc.DataError)
    async def _out_of_range(request: Request, error: sa.exc.DataError) -> JSONResponse:
        # A value the database cannot hold (a number too large, say): the request is wrong, not the server.
        status = bad_input_status(request.url.path)
        return JSONResponse({"detail": "A value in the request is out of range"}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = error.headers
        if error.status_code == 405:  # Starlette names the methods of the first route that matched the path only
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": "Internal error; it has been logged"}, status_code=500)


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers, as the OpenAPI document lists them (RFC 9110's `Allow`).

    Each method is routed as the app would route it (GET and POST are separate routes). A path the document
    names literally (`/api/v1/sql/tables`) is that resource: a method that only a template also matching it
    serves (`DELETE /api/v1/sql/{query_id}`) is not one of its methods.
    """
    methods = []
    for method in ALLOW_ORDER:
        # As the request arrived: without what routing it to the route that raised the 405 added.
        scope = {**request.scope, "method": method, "path_params": {}}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.append(method)
    documented = request.app.openapi().get("paths", {}).get(request.url.path)
    if documented:
        named = {method.upper() for method in documented} | ({"HEAD"} if "get" in documented else set())
        methods = [method for method in methods if method in named]
    return methods


def bad_input_status(path: str) -> int:
    """400 for a request the native API could not validate; 422 (FastAPI's) on the spec adapters outside it."""
    return 400 if path.startswith(NATIVE_PREFIX) else 422


def native_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without the 422 that FastAPI documents on every native route: those answer 400 (documented)."""
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith(NATIVE_PREFIX):
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    return schema


def _describe(error: RequestValidationError) -> str:
    """Up to five problems, each `<where>: <what>`: `query.page_size: ...`, `type: ...` (a body field), `body: ...`."""
    return "; ".join(_problem(item) for item in error.errors()[:5]) or "invalid request"


def _problem(item: Mapping[str, Any]) -> str:
    loc = tuple(item.get("loc", ()))
    message = str(item.get("msg", "invalid"))
    if item.get("type") == "json_invalid":  # loc is ("body", <character position>)
        reason = (item.get("ctx") or {}).get("error", message)
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"body: not valid JSON ({reason}{at})"
    where = ".".join(str(part) for part in loc if part != "body") or "body"
    if where == "body" and item.get("type") == "missing":
        message = "required: send a JSON object"
    elif where == "body" and isinstance(item.get("input"), bytes):
        message = f"{message} (send content-type: application/json)"
    return f"{where}: {message}"
