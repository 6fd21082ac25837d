"""Logging in: a short-lived JWT for a login and password (native and spec 001 shapes), throttled per login and
per client address (runyard.services.sign_in_limits): 429 with Retry-After past the limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from runyard.api.auth import AuthFailed, TokenService
from runyard.api.deps import StoreDep
from runyard.api.schemas import AccessToken, LoginBody
from runyard.services.app_context import AppContext
from runyard.services.sign_in_limits import SignInLimits, client_address, sign_in
from runyard.store.database import Store

router = APIRouter(tags=["auth"])

LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong credentials"},
    429: {"description": "Too many failed sign-ins for this login or from this address: see Retry-After"},
}


class IssuedToken(BaseModel):
    token: str


def _login(request: Request, store: Store, body: LoginBody) -> tuple[str, int]:
    context: AppContext = request.app.state.context
    settings = context.settings
    peer = request.client.host if request.client is not None else None
    address = client_address(
        peer, request.headers.get("x-forwarded-for"), trust_forwarded_for=settings.trust_forwarded_for
    )
    principal = sign_in(store, SignInLimits.from_settings(settings), body.login, body.password, address)
    if principal is None:
        raise AuthFailed("wrong login or password")
    tokens: TokenService = request.app.state.tokens
    return tokens.issue(principal), tokens.ttl_seconds


@router.post("/api/v1/auth/token", response_model=AccessToken, responses=LOGIN_RESPONSES)
def token(body: LoginBody, request: Request, store: StoreDep) -> AccessToken:
    """A JWT for about ten minutes: send it as `Authorization: Bearer <token>`."""
    issued, ttl = _login(request, store, body)
    return AccessToken(access_token=issued, expires_in=ttl)


@router.post("/rest/v1/token-auth/issue", response_model=IssuedToken, responses=LOGIN_RESPONSES)
def issue(body: LoginBody, request: Request, store: StoreDep) -> IssuedToken:
    """Spec 001's login: `{"login", "password"}` answers `{"token"}`."""
    issued, _ = _login(request, store, body)
    return IssuedToken(token=issued)
