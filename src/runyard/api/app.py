"""create_app(settings): the ASGI app `runyard serve` runs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from runyard import __version__
from runyard.store.database import Store


def create_app(store: Store) -> FastAPI:
    app = FastAPI(title="runyard", version=__version__)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """200 when the runs database answers, 503 when it does not."""
        try:
            with store.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError:
            return JSONResponse({"status": "unavailable", "detail": "the runs database does not answer"}, 503)
        body: dict[str, Any] = {"status": "ok", "version": __version__, "database": store.backend}
        return JSONResponse(body)

    return app
