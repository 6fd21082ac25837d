"""Static files the pages load: our stylesheet, and htmx from its npm package (never copied into the repo)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

log = logging.getLogger("runyard.ui")
STATIC = Path(__file__).parent / "static"
HTMX_IN_PACKAGE = Path("htmx.org") / "dist" / "htmx.min.js"
STATIC_MAX_AGE = "public, max-age=3600"


def find_htmx() -> Path | None:
    """htmx.min.js from node_modules: $RUNYARD_NODE_MODULES, then the working directory, then the source tree."""
    roots = [Path(os.environ["RUNYARD_NODE_MODULES"])] if os.environ.get("RUNYARD_NODE_MODULES") else []
    roots += [Path.cwd() / "node_modules", Path(__file__).resolve().parents[3] / "node_modules"]
    for root in roots:
        candidate = root / HTMX_IN_PACKAGE
        if candidate.is_file():
            return candidate
    return None


def assets_router(htmx: Path | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/static/runyard.css")
    def stylesheet() -> Response:
        return FileResponse(STATIC / "runyard.css", media_type="text/css", headers={"Cache-Control": STATIC_MAX_AGE})

    @router.get("/static/runyard.js")
    def script() -> Response:
        return FileResponse(
            STATIC / "runyard.js", media_type="text/javascript", headers={"Cache-Control": STATIC_MAX_AGE}
        )

    @router.get("/static/htmx.min.js")
    def htmx_script() -> Response:
        if htmx is None:
            return Response("// htmx is not installed: run `make install`\n", media_type="text/javascript")
        return FileResponse(htmx, media_type="text/javascript", headers={"Cache-Control": STATIC_MAX_AGE})

    return router
