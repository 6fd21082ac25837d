"""Authentication for the HTTP API: access JWTs, the credentials a request may carry, and role gates.

A request may carry, checked in this order, and the first one present decides:

1. `Authorization: Bearer <access JWT>` (spec 001);
2. `Authorization: Bearer ry_...` (a long-lived API token);
3. `TOKEN: <API token or access JWT>` (spec 002);
4. `?Authorization=Bearer%20<access JWT>` (spec 001), only when the query token is allowed.

Nothing present raises CredentialsMissing; anything present but not valid raises AuthFailed (the
next credential in the list is not tried, so a bad header is never masked by another one). API
tokens are never accepted in a URL (RFC 6750 §2.3; RELIABILITY S5, S6): query strings end up in
access logs, browser history and Referer headers, and an API token lives for months.

Roles are read from the store on every request, not from the JWT: the token only says who the
caller is. A user whose role changes, or who is deactivated or deleted, is treated accordingly
on their very next request, instead of after the token's lifetime. That costs one indexed read
per request, which the route would do anyway to scope its queries to the account.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders

from runyard.errors import RunyardError
from runyard.services.tokens import Principal, get_principal, looks_like_api_token, principal_for_api_token
from runyard.store.database import Store

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key has at least 256 bits
LEEWAY_SECONDS = 10
MAX_JWT_CHARS = 4096  # ours are ~350: refuse anything huge before parsing it
ACCESS = "access"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "typ", "jti"]
# Header parameters we accept. Everything else (kid, jku, jwk, x5u, x5c, crit, ...) is refused:
# we have one key and never look a key up from what the token says (RFC 8725 §3.1, §3.10).
ALLOWED_HEADERS = frozenset({"alg", "typ"})
VERIFIED_CACHE_SIZE = 4096  # tokens remembered as verified (each about 1 KB with its claims)

QUERY_PARAMETER = "Authorization"
LONG_LIVED_HEADER = "TOKEN"
REDACTED = "[redacted]"
# Query parameters whose values are secrets, compared lowercased, for the access log.
SECRET_QUERY_PARAMETERS = frozenset({"authorization", "token", "access_token"})

FAILED_BODY = {"detail": "Authentication failed"}
MISSING_BODY = {"detail": "Authentication credentials were not provided."}
CHALLENGE = {"WWW-Authenticate": "Bearer"}

logger = logging.getLogger(__name__)


class CredentialsMissing(RunyardError):
    """The request carries no credential at all: 401 with spec 002's "not provided" body."""

    def __init__(self) -> None:
        super().__init__("no credentials were provided")


class AuthFailed(RunyardError):
    """A credential is present but not valid. `reason` is for logs only; the response never says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"authentication failed: {reason}")


class Forbidden(RunyardError):
    """Authenticated, but the role does not allow the action: 403."""

    def __init__(self, role: str, needs: str) -> None:
        self.role = role
        self.needs = needs
        super().__init__(f"Your role ({role}) cannot do this: it needs {needs}")


# --- access JWTs ----------------------------------------------------------------------------------


class TokenService:
    """Issues and verifies short-lived HS256 access tokens (RFC 8725 practices)."""

    def __init__(
        self, key: bytes, *, ttl_seconds: int = 600, issuer: str = "runyard", audience: str = "runyard-api"
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the signing key has {len(key)} bytes; HS256 needs at least {MIN_KEY_BYTES}")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self.issuer = issuer
        self.audience = audience
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._verified: dict[str, Mapping[str, Any]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, principal: Principal) -> str:
        """A signed access token for `principal`, valid for ttl_seconds."""
        now = int(time.time())
        claims = {
            "sub": str(principal.user_id),
            "acct": principal.account_id,
            "role": principal.role.value,  # informative only: requests use the store's current role
            "typ": ACCESS,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        return self._jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> Mapping[str, Any]:
        """The claims of a valid access token; AuthFailed for anything else, whatever the reason.

        A token that verified once is remembered (at most VERIFIED_CACHE_SIZE of them, byte for byte the same
        string): its signature, header and claims cannot have changed, so a later use only checks the clock
        again. Every request of a client carries the same token, and this spares it the signature check and
        the parsing. Tokens that fail are never remembered.
        """
        if len(token) > MAX_JWT_CHARS:
            raise AuthFailed("token too long")
        claims = self._verified.get(token)
        if claims is not None:
            _check_times(claims, time.time())
            return claims
        claims = MappingProxyType(self._verify_signed(token))
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # the oldest: tokens are issued with one lifetime
            self._verified[token] = claims
        return claims

    def _verify_signed(self, token: str) -> dict[str, Any]:
        try:
            _check_header(jwt.get_unverified_header(token))
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # pinned: the token's own `alg` never chooses the check
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthFailed(f"{type(exc).__name__}: {exc}") from None
        if claims.get("typ") != ACCESS:
            raise AuthFailed(f"token type {claims.get('typ')!r} is not an access token")
        return claims


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    """PyJWT's checks of iat, nbf and exp, with the same leeway, for a token whose signature was verified."""
    if int(claims["iat"]) > now + LEEWAY_SECONDS or int(claims["nbf"]) > now + LEEWAY_SECONDS:
        raise AuthFailed("the token is not yet valid")
    if int(claims["exp"]) <= now - LEEWAY_SECONDS:
        raise AuthFailed("the token has expired")


def _check_header(header: dict[str, Any]) -> None:
    extra = sorted(set(header) - ALLOWED_HEADERS)
    if extra:
        raise AuthFailed(f"header parameters not accepted: {', '.join(extra)}")
    if header.get("alg") != ALGORITHM:
        raise AuthFailed(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")


# --- requests -------------------------------------------------------------------------------------


class Authenticator:
    """Finds the caller of a request (see the module docstring for what is accepted, in what order)."""

    def __init__(self, store: Store, tokens: TokenService, *, allow_query_token: bool = True) -> None:
        self.store = store
        self.tokens = tokens
        self.allow_query_token = allow_query_token

    def principal(self, request: Request) -> Principal:
        """The active user the request acts as; CredentialsMissing or AuthFailed otherwise."""
        authorization = _single(request.headers.getlist("authorization"), "Authorization header")
        if authorization is not None:
            return self._credential(_bearer(authorization))
        token = _single(request.headers.getlist(LONG_LIVED_HEADER), "TOKEN header")
        if token is not None:
            return self._credential(token.strip())
        if self.allow_query_token:
            query = _single(request.query_params.getlist(QUERY_PARAMETER), "Authorization parameter")
            if query is not None:
                return self._jwt_principal(_bearer(query), where="query")
        raise CredentialsMissing()

    def _credential(self, credential: str) -> Principal:
        if looks_like_api_token(credential):
            found = principal_for_api_token(self.store, credential)
            if found is None:
                raise AuthFailed("unknown or revoked API token, or inactive user")
            return found
        return self._jwt_principal(credential, where="header")

    def _jwt_principal(self, token: str, *, where: str) -> Principal:
        if looks_like_api_token(token):
            raise AuthFailed(f"API tokens are not accepted in the {where}")
        claims = self.tokens.verify(token)
        subject = str(claims["sub"])
        if not (subject.isascii() and subject.isdigit()):
            raise AuthFailed("sub is not a user id")
        user_id = int(subject)
        found = get_principal(self.store, user_id, via="jwt")
        if found is None:
            raise AuthFailed(f"user {user_id} is unknown or inactive")
        if claims.get("acct") != found.account_id:
            raise AuthFailed(f"user {user_id} is not in account {claims.get('acct')!r}")
        return found


def _single(values: list[str], what: str) -> str | None:
    """The one value given, None for none; two of them are ambiguous, so refused."""
    if not values:
        return None
    if len(values) > 1:
        raise AuthFailed(f"more than one {what}")
    return values[0]


def _bearer(value: str) -> str:
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthFailed("not a Bearer credential")
    return credential


# --- FastAPI wiring -------------------------------------------------------------------------------


def require_principal(request: Request) -> Principal:
    """Dependency: the caller, via `request.app.state.authenticator`; 401 when unauthenticated."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.principal(request)


def operator_only(principal: Principal) -> Principal:
    """`principal` if an operator or administrator; Forbidden (403) for a viewer. The one role rule of every API."""
    if not principal.can_operate:
        raise Forbidden(principal.role.value, "operator or administrator")
    return principal


def admin_only(principal: Principal) -> Principal:
    """`principal` if an administrator; Forbidden (403) for anyone else."""
    if not principal.is_admin:
        raise Forbidden(principal.role.value, "administrator")
    return principal


def require_operator(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """Dependency: an operator or administrator; 403 for a viewer."""
    return operator_only(principal)


def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """Dependency: an administrator; 403 for anyone else."""
    return admin_only(principal)


def unauthorized_response(exc: AuthFailed | CredentialsMissing) -> JSONResponse:
    """401 with spec 002's exact body and `WWW-Authenticate: Bearer`; never says why a credential failed."""
    body = MISSING_BODY if isinstance(exc, CredentialsMissing) else FAILED_BODY
    return JSONResponse(body, status_code=401, headers=CHALLENGE)


def forbidden_response(exc: Forbidden) -> JSONResponse:
    """403 naming the caller's role and the roles the action needs."""
    return JSONResponse({"detail": str(exc)}, status_code=403)


async def _on_unauthorized(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthFailed | CredentialsMissing)
    if isinstance(exc, AuthFailed):
        logger.info("%s", exc)  # the reason stays on the server
    return unauthorized_response(exc)


async def _on_forbidden(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    return forbidden_response(exc)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
EXCEPTION_HANDLERS: dict[type[Exception], ExceptionHandler] = {
    AuthFailed: _on_unauthorized,
    CredentialsMissing: _on_unauthorized,
    Forbidden: _on_forbidden,
}


def install(app: FastAPI, authenticator: Authenticator) -> None:
    """Put `authenticator` on app.state and map AuthFailed, CredentialsMissing and Forbidden to 401/403. (Query
    tokens are kept out of redirects by `strip_redirect_tokens`, in app.py's response-header middleware.)"""
    app.state.authenticator = authenticator
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)


# --- redirects ------------------------------------------------------------------------------------

#: The response headers that send a client elsewhere (htmx reads HX-Redirect).
REDIRECT_HEADERS = ("location", "hx-redirect")


def without_query_token(location: str) -> str:
    """`location` without its `Authorization` query parameters (any case), also inside a parameter that is itself
    a URL (the UI's `/login?next=/runs%3FAuthorization%3D...`). Unchanged, byte for byte, when it holds none.

    A redirect that carried the token on (Starlette's trailing-slash redirect copies the query string) would put it
    in one more URL for browsers, proxies and logs to keep; the client is told where to go, without it.
    """
    parts = urlsplit(location)
    if not parts.query:
        return location
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [
        (name, without_query_token(value) if "?" in value else value)
        for name, value in pairs
        if name.strip().lower() != QUERY_PARAMETER.lower()
    ]
    if kept == pairs:
        return location
    return urlunsplit(parts._replace(query=urlencode(kept, safe="/", quote_via=quote)))


def strip_redirect_tokens(headers: MutableHeaders) -> None:
    """Keep `Authorization` query parameters out of a response's Location and HX-Redirect, whichever part of the
    app (API, UI, the router's slash redirects) made them. Called by the app's one response-header middleware."""
    for name in REDIRECT_HEADERS:
        value = headers.get(name)
        if value is not None and "authorization" in value.lower():
            headers[name] = without_query_token(value)


# --- access logs ----------------------------------------------------------------------------------


def redact_query_token(url_or_path: str) -> str:
    """`url_or_path` with the values of Authorization, token and access_token parameters (any case) hidden.

    Only the query string changes, and only those values: everything else stays byte for byte.
    """
    head, mark, rest = url_or_path.partition("?")
    if not mark:
        return url_or_path
    query, hash_mark, fragment = rest.partition("#")
    return f"{head}?{'&'.join(_redact_pair(pair) for pair in query.split('&'))}{hash_mark}{fragment}"


def _redact_pair(pair: str) -> str:
    name = pair.partition("=")[0]
    if unquote_plus(name).strip().lower() in SECRET_QUERY_PARAMETERS:
        return f"{name}={REDACTED}"
    return pair


class AccessLogRedactor(logging.Filter):
    """A filter for the `uvicorn.access` logger: hides tokens in the logged path (RELIABILITY S6).

    uvicorn logs `'%s - "%s %s HTTP/%s" %d'` with args (client, method, path_with_query, version, status).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query_token(args[2]), *args[3:])
        return True
