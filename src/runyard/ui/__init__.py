"""The web UI: server-rendered pages (Jinja2 + htmx) over the same services as the API."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from runyard.services.app_context import AppContext
from runyard.ui.assets import assets_router, find_htmx, log
from runyard.ui.routes import alerts, attention, auth, exports, loads, runs, sources, sql, workflows
from runyard.ui.sessions import SessionSigner
from runyard.ui.web import FormRejected, LoginRequired, UiState, page_headers, templates


def install(app: FastAPI, context: AppContext) -> None:
    """Add the pages, their static files and their error pages to `app`."""
    settings = context.settings
    htmx = find_htmx()
    if htmx is None:
        log.warning("htmx is not installed (run `make install`): pages work, but do not update live")
    app.state.ui = UiState(
        context=context,
        signer=SessionSigner(settings.signing_key(), lifetime_seconds=settings.session_hours * 3600),
        secure_cookies=settings.cookie_secure,
        htmx_available=htmx is not None,
    )
    app.include_router(assets_router(htmx))
    for module in (auth, sources, workflows, runs, loads, attention, alerts, sql, exports):
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(FormRejected, _form_rejected)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    location = f"/login?next={quote(exc.next_path, safe='/')}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def _form_rejected(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormRejected)
    html = templates.get_template("rejected.html").render(reason=exc.reason)
    response = HTMLResponse(html, status_code=403)
    page_headers(response)
    return response
