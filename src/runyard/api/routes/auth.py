"""Logging in: a short-lived JWT for a login and password (native and spec 001 shapes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from runyard.api.auth import AuthFailed, TokenService
from runyard.api.deps import StoreDep
from runyard.api.schemas import AccessToken, LoginBody
from runyard.services.tokens import Principal, authenticate
from runyard.store.database import Store

router = APIRouter(tags=["auth"])


class IssuedToken(BaseModel):
    token: str


def _login(request: Request, store: Store, body: LoginBody) -> tuple[str, int]:
    principal: Principal | None = authenticate(store, body.login, body.password)
    if principal is None:
        raise AuthFailed("wrong login or password")
    tokens: TokenService = request.app.state.tokens
    return tokens.issue(principal), tokens.ttl_seconds


@router.post("/api/v1/auth/token", response_model=AccessToken, responses={401: {"description": "Wrong credentials"}})
def token(body: LoginBody, request: Request, store: StoreDep) -> AccessToken:
    """A JWT for about ten minutes: send it as `Authorization: Bearer <token>`."""
    issued, ttl = _login(request, store, body)
    return AccessToken(access_token=issued, expires_in=ttl)


@router.post(
    "/rest/v1/token-auth/issue", response_model=IssuedToken, responses={401: {"description": "Wrong credentials"}}
)
def issue(body: LoginBody, request: Request, store: StoreDep) -> IssuedToken:
    """Spec 001's login: `{"login", "password"}` answers `{"token"}`."""
    issued, _ = _login(request, store, body)
    return IssuedToken(token=issued)
