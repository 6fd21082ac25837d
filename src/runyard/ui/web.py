"""What every page shares: templates, the signed-in user, CSRF-checked forms, redirects with a flash message."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.services.alerts import open_alert_counts
from runyard.services.app_context import AppContext
from runyard.services.session_revocations import is_revoked
from runyard.services.tokens import Principal, get_principal
from runyard.ui.charts import format_seconds
from runyard.ui.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    FLASH_COOKIE,
    SESSION_COOKIE,
    FlashLink,
    Session,
    SessionSigner,
)

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZES = (10, 25, 50, 100, 200)

# Pages allow only our own scripts and styles: no inline script, no eval (htmx's allowEval is off too).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@dataclass(frozen=True)
class UiState:
    context: AppContext
    signer: SessionSigner
    secure_cookies: bool
    htmx_available: bool


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page request, with the CSRF token their forms carry."""

    principal: Principal
    session: Session
    csrf_token: str

    @property
    def can_operate(self) -> bool:
        return self.principal.can_operate


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class FormRejected(Exception):
    """A form post without a valid CSRF token, or from another origin, or not a form at all."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def ui_state(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def format_datetime(value: datetime | None) -> str:
    """Every time the UI shows, in UTC as the API gives it, and saying so: "2026-12-05 14:03:12 UTC".

    A naive value is taken to be UTC already (what the store hands back on SQLite), not the machine's local time."""
    if value is None:
        return "—"
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def time_element(value: datetime | None) -> Markup:
    """The `when` filter: a time as `dt` writes it, in a <time> element (kept on one line by the stylesheet) that
    carries the ISO form for scripts and tests; "—" when there is none."""
    if value is None:
        return Markup("—")
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(utc.isoformat(), format_datetime(utc))


def _format_number(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}"


def _format_bytes(value: int | None) -> str:
    """1536 -> "1.5 KB": sizes in powers of 1024, as file browsers show them."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dt"] = format_datetime
    env.filters["when"] = time_element
    env.filters["duration"] = format_seconds
    env.filters["number"] = _format_number
    env.filters["bytes"] = _format_bytes
    env.globals.update(RunStatus=RunStatus, TaskStatus=TaskStatus, RunType=RunType, PAGE_SIZES=PAGE_SIZES)
    return env


templates = _environment()


def current_path(request: Request) -> str:
    """The page's path and query, without `Authorization` (spec 001's query token): it goes into links and forms."""
    query = request.url.query
    if any(_is_query_token(name) for name in request.query_params):
        query = urlencode(
            [(name, value) for name, value in request.query_params.multi_items() if not _is_query_token(name)]
        )
    return request.url.path + (f"?{query}" if query else "")


def _is_query_token(name: str) -> bool:
    """A query parameter carrying a token (`?Authorization=Bearer ...`, any case): never copied into a link."""
    return name.strip().lower() == "authorization"


def viewer(request: Request) -> Viewer:
    """Dependency: the signed-in, active user of a session not signed out; LoginRequired (a redirect to /login)
    otherwise."""
    state = ui_state(request)
    session = state.signer.read(request.cookies.get(SESSION_COOKIE), time.time())
    if session is not None and not is_revoked(state.context.store, session.nonce):
        principal = get_principal(state.context.store, session.user_id, via="session")
        if principal is not None and principal.account_id == session.account_id:
            return Viewer(principal, session, state.signer.csrf_token(session))
    # After signing in, come back to the page; a form post cannot be replayed by a GET, so go home instead.
    raise LoginRequired(current_path(request) if request.method == "GET" else "/sources")


ViewerDep = Annotated[Viewer, Depends(viewer)]


async def form_fields(request: Request) -> dict[str, list[str]]:
    """Dependency: the posted form (application/x-www-form-urlencoded, at most 64 KiB)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRejected("the request is not a form")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise FormRejected("the form is too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise FormRejected("the form could not be read") from None


FormDep = Annotated[dict[str, list[str]], Depends(form_fields)]


def check_form(request: Request, who: Viewer, form: Mapping[str, list[str]]) -> None:
    """Refuse a post from another origin or without this session's CSRF token (FormRejected)."""
    # Host, not scheme: behind a TLS-terminating proxy the browser says https while we see http.
    # "null" is what a browser says when a referrer policy hides the origin: the CSRF token decides then.
    origin = request.headers.get("origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise FormRejected(f"the form was sent from another site ({origin[:100]})")
    token = request.headers.get(CSRF_HEADER) or first(form, CSRF_FIELD)
    if not ui_state(request).signer.csrf_valid(who.session, token):
        raise FormRejected("the form has expired or did not come from runyard")


def first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def refuse_unless_operator(request: Request, who: Viewer, back: str, action: str) -> Response | None:
    """None for an operator or administrator; for a viewer, the way back to `back` saying they cannot `action`."""
    if who.can_operate:
        return None
    return see_other(request, back, error=f"Your role ({who.principal.role.value}) cannot {action}.")


def refuse_unless_admin(request: Request, who: Viewer, back: str, action: str) -> Response | None:
    """None for an administrator; for anyone else, the way back to `back` saying they cannot `action`."""
    if who.principal.is_admin:
        return None
    return see_other(request, back, error=f"Your role ({who.principal.role.value}) cannot {action}.")


def safe_next(value: str | None, default: str) -> str:
    """A local path to go back to: absolute path, same site, no scheme or host tricks."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c in value for c in "\r\n\\"):
        return default
    return value


def url_with(request: Request, **changes: object) -> str:
    """The current page's URL with some query parameters changed (None or "" removes one)."""
    params = {name: value for name, value in request.query_params.items() if not _is_query_token(name)}
    for name, value in changes.items():
        if value is None or value == "":
            params.pop(name, None)
        else:
            params[name] = str(value)
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


def render(
    request: Request,
    template: str,
    who: Viewer | None,
    *,
    status_code: int = 200,
    active: str = "",
    **context: Any,
) -> HTMLResponse:
    state = ui_state(request)
    flash = state.signer.read_flash(request.cookies.get(FLASH_COOKIE))
    html = templates.get_template(template).render(
        request=request,
        viewer=who,
        active=active,
        flash=flash,
        htmx=state.htmx_available,
        open_alerts=lambda: open_alert_count(state.context, who),
        url_with=lambda **changes: url_with(request, **changes),
        here=current_path(request),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    page_headers(response)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def open_alert_count(context: AppContext, who: Viewer | None) -> int:
    """The nav's Alerts badge: the account's open, unsilenced alerts. Called by base.html only when it draws the
    nav, so pages and fragments without one pay nothing."""
    if who is None:
        return 0
    with context.store.read() as conn:
        return sum(open_alert_counts(conn, who.principal.account_id, context.store.now(conn)).values())


def page_headers(response: Response) -> None:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    # The API's no-referrer would make browsers send `Origin: null` on our own form posts.
    response.headers["Referrer-Policy"] = "same-origin"


def see_other(
    request: Request,
    location: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    link: FlashLink | None = None,
) -> Response:
    """303 to `location`, with a one-time message shown there (ending in `link`, if given)."""
    response = RedirectResponse(location, status_code=303)
    state = ui_state(request)
    if notice is not None or error is not None:
        kind, text = ("error", error) if error is not None else ("notice", notice or "")
        response.set_cookie(
            FLASH_COOKIE,
            state.signer.flash(kind, text, link),
            max_age=60,
            path="/",
            httponly=True,
            samesite="lax",
            secure=state.secure_cookies,
        )
    return response


def parse_int(value: str | None, name: str, *, default: int | None = None, low: int = 1) -> int | None:
    """A whole number from the query string; ValueError naming the parameter otherwise."""
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) < low:
        raise ValueError(f"{name} must be a whole number of at least {low}, not {value[:40]!r}")
    return int(value)
