"""Sign in (throttled per login and per client address: runyard.services.sign_in_limits) and sign out (which
revokes the session on the server: a copy of the cookie stops working too)."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runyard.errors import SignInThrottled
from runyard.services.session_revocations import revoke_session
from runyard.services.sign_in_limits import SignInLimits, client_address, sign_in
from runyard.ui.sessions import CSRF_FIELD, LOGIN_CSRF_COOKIE, SESSION_COOKIE, new_login_csrf
from runyard.ui.web import FormDep, ViewerDep, check_form, first, render, safe_next, see_other, ui_state

router = APIRouter(include_in_schema=False)
MAX_LOGIN_CHARS = 200
MAX_PASSWORD_CHARS = 1024


@router.get("/")
def home() -> Response:
    return RedirectResponse("/sources", status_code=303)


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    login: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    state = ui_state(request)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_login_csrf()
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        error=error,
        login=login,
        login_csrf=token,
        next_path=safe_next(request.query_params.get("next"), "/sources"),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path="/login", httponly=True, samesite="strict", secure=state.secure_cookies
    )
    response.headers.update(headers or {})
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
def login(request: Request, form: FormDep) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    given = first(form, CSRF_FIELD) or ""
    if not expected or not hmac.compare_digest(expected, given):
        return _login_page(request, error="The sign-in form expired; please try again.", status_code=400)
    login_name = (first(form, "login") or "").strip()[:MAX_LOGIN_CHARS]
    password = first(form, "password") or ""
    if not login_name or not password:
        return _login_page(request, error="Enter your login and password.", status_code=400, login=login_name)
    state = ui_state(request)
    settings = state.context.settings
    peer = request.client.host if request.client is not None else None
    address = client_address(
        peer, request.headers.get("x-forwarded-for"), trust_forwarded_for=settings.trust_forwarded_for
    )
    # An over-long password is a failed attempt like any other (it is never hashed).
    password = password if len(password) <= MAX_PASSWORD_CHARS else ""
    try:
        principal = sign_in(state.context.store, SignInLimits.from_settings(settings), login_name, password, address)
    except SignInThrottled as throttled:
        return _login_page(
            request,
            error=f"{throttled}.",
            status_code=429,
            login=login_name,
            headers={"Retry-After": str(throttled.retry_after_seconds)},
        )
    if principal is None:
        return _login_page(request, error="That login and password do not match.", status_code=401, login=login_name)
    response = RedirectResponse(safe_next(first(form, "next"), "/sources"), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        state.signer.issue(principal.user_id, principal.account_id, time.time()),
        max_age=state.signer.lifetime_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=state.secure_cookies,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    revoke_session(ui_state(request).context.store, who.session.nonce, who.session.expires_at)
    response = see_other(request, "/login", notice="You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
