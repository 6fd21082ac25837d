"""One table from runyard's errors to HTTP answers: every error is JSON with a `detail` naming what is wrong."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
)

log = logging.getLogger("runyard.api")

STATUS_FOR: tuple[tuple[type[RunyardError], int], ...] = (
    (NotFound, 404),
    (InvalidInput, 400),
    (ConfigError, 400),
    (RunRejected, 409),
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


def install(app: FastAPI) -> None:
    @app.exception_handler(RunyardError)
    async def _runyard_error(_request: Request, error: RunyardError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status_for(error))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _describe(error)}, status_code=422)

    @app.exception_handler(sa.exc.OperationalError)
    async def _database_down(_request: Request, error: sa.exc.OperationalError) -> JSONResponse:
        log.warning("runs database unavailable: %s", str(error.orig).splitlines()[0] if error.orig else error)
        return JSONResponse(
            {"detail": "The runs database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(sa.exc.DataError)
    async def _out_of_range(_request: Request, error: sa.exc.DataError) -> JSONResponse:
        # A value the database cannot hold (a number too large, say): the request is wrong, not the server.
        return JSONResponse({"detail": "A value in the request is out of range"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": "Internal error; it has been logged"}, status_code=500)


def _describe(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",))
        problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return "; ".join(problems) or "invalid request"
