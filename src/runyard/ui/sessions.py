"""Web UI sessions: a signed cookie naming the user, and the CSRF token that belongs to it.

The cookie holds `<payload>.<signature>`: the payload is base64url JSON `{"u": user id, "a": account id,
"e": expiry (unix seconds), "n": a random nonce}`, signed with HMAC-SHA256 under a key derived from
runyard's secret key (so a session cookie can never pass for an API token or a JWT, nor the reverse).
Nothing else is trusted from it: every request reads the user's current role and active flag from the
store, so a deactivated user is out on their next click.

The CSRF token is HMAC(key, "csrf:" + nonce): it changes with every login, and a page of another site
can neither read it nor compute it. Every form carries it; htmx sends it as the X-CSRF-Token header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "runyard_session"
LOGIN_CSRF_COOKIE = "runyard_login_csrf"
FLASH_COOKIE = "runyard_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True)
class Session:
    user_id: int
    account_id: int
    expires_at: int
    nonce: str


@dataclass(frozen=True)
class FlashLink:
    """A link at the end of a flash message, e.g. to the run that blocked a launch: text and a local path."""

    text: str
    href: str


@dataclass(frozen=True)
class Flash:
    """A one-time message: "notice" or "error", its text, and an optional link (rendered as escaped text)."""

    kind: str
    text: str
    link: FlashLink | None = None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and reads session cookies, CSRF tokens and signed flash messages."""

    def __init__(self, secret_key: bytes, *, lifetime_seconds: float) -> None:
        self._key = hmac.new(secret_key, b"runyard-ui-session-v1", hashlib.sha256).digest()
        self.lifetime_seconds = int(lifetime_seconds)

    def _sign(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{payload}".encode(), hashlib.sha256).digest()
        return _b64encode(digest)

    def _signed(self, purpose: str, data: dict[str, object]) -> str:
        payload = _b64encode(json.dumps(data, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(purpose, payload)}"

    def _unsigned(self, purpose: str, value: str | None) -> dict[str, object] | None:
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(signature, self._sign(purpose, payload)):
            return None
        try:
            data = json.loads(_b64decode(payload))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def issue(self, user_id: int, account_id: int, now: float) -> str:
        """A new session cookie value, with a fresh nonce (and so a fresh CSRF token)."""
        data = {"u": user_id, "a": account_id, "e": int(now) + self.lifetime_seconds, "n": secrets.token_urlsafe(16)}
        return self._signed("session", data)

    def read(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value, or None when it is missing, tampered with, malformed or expired."""
        data = self._unsigned("session", value)
        if data is None:
            return None
        user_id, account_id, expires_at, nonce = data.get("u"), data.get("a"), data.get("e"), data.get("n")
        if not (isinstance(user_id, int) and isinstance(account_id, int) and isinstance(expires_at, int)):
            return None
        if not isinstance(nonce, str) or expires_at <= now:
            return None
        return Session(user_id=user_id, account_id=account_id, expires_at=expires_at, nonce=nonce)

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.nonce)

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token(session))

    def flash(self, kind: str, text: str, link: FlashLink | None = None) -> str:
        """A signed one-time message for the next page ("notice" or "error"), optionally ending in a link."""
        data: dict[str, object] = {"k": kind, "t": text[:500]}
        if link is not None:
            data["l"] = [link.text[:100], link.href[:200]]
        return self._signed("flash", data)

    def read_flash(self, value: str | None) -> Flash | None:
        data = self._unsigned("flash", value)
        if data is None or data.get("k") not in ("notice", "error") or not isinstance(data.get("t"), str):
            return None
        return Flash(str(data["k"]), str(data["t"]), _flash_link(data.get("l")))


def _flash_link(value: object) -> FlashLink | None:
    """The flash's link, kept only when it is two strings and the address a local path (never another site)."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        return None
    text, href = value
    if not href.startswith("/") or href.startswith(("//", "/\\")) or any(c in href for c in "\r\n\\"):
        return None
    return FlashLink(text, href)


def new_login_csrf() -> str:
    """A random token for the login form (double-submit: the cookie and the form field must match)."""
    return secrets.token_urlsafe(24)
