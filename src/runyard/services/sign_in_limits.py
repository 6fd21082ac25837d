"""Sign-in throttling: failed sign-ins counted per login and per client address, in the store, in a sliding window.

Every path that checks a password goes through `sign_in` (the API's two token routes and the UI's login form).
The counts live in the store's `sign_in_attempts` table, so every HTTP process of every server shares them (the
store is the coordinator; PostgreSQL advisory locks make the count-then-record one at a time per key).

An attempt is recorded *before* its password is checked and deleted, with every earlier failure of its login, when
it succeeds: so concurrent guesses cannot all slip under the limit while their hashes are computed. A throttled
attempt checks no password at all (no timing oracle), and is answered the same whether or not the login exists.
The window slides: a failure stops counting `window` after it happened, so nobody is locked out for ever.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.rate_limits import SlidingWindow, whole_seconds
from runyard.errors import SignInThrottled
from runyard.services.tokens import Principal, authenticate
from runyard.settings import Settings
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import sign_in_attempts

UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True)
class SignInLimits:
    """How many failed sign-ins a login and a client address may have within the same window."""

    per_login: SlidingWindow
    per_address: SlidingWindow

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInLimits:
        window = timedelta(seconds=settings.sign_in_window_seconds)
        return cls(
            per_login=SlidingWindow(settings.sign_in_failures_per_login, window),
            per_address=SlidingWindow(settings.sign_in_failures_per_address, window),
        )


def client_address(peer: str | None, forwarded_for: str | None, *, trust_forwarded_for: bool) -> str:
    """The address a sign-in is counted against: the socket peer, or, when the setting says a reverse proxy in front
    sets it, the last X-Forwarded-For entry (the one that proxy added; earlier entries are the client's own word)."""
    if trust_forwarded_for and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        if last:
            return last[:100]
    return peer or UNKNOWN_ADDRESS


def sign_in(store: Store, limits: SignInLimits, login: str, password: str, address: str) -> Principal | None:
    """The active user with this login and password, or None; SignInThrottled (the password unchecked) when the
    login or the address has had too many failures lately."""
    login_key, address_key = _key("login", login), _key("address", address)
    _reserve(store, limits, login_key, address_key)
    principal = authenticate(store, login, password)
    if principal is not None:
        with store.write() as conn:
            # This attempt and the login's earlier failures: a real user who found their password starts afresh.
            conn.execute(sign_in_attempts.delete().where(sign_in_attempts.c.login_key == login_key))
    return principal


def _reserve(store: Store, limits: SignInLimits, login_key: str, address_key: str) -> None:
    """Record the attempt, unless the login or the address is over its limit (SignInThrottled, nothing recorded)."""
    with store.write() as conn:
        dialect.lock_names(conn, [f"sign-in:{login_key}", f"sign-in:{address_key}"])
        now = store.now(conn)
        waits = [
            limits.per_login.wait(_recent(conn, sign_in_attempts.c.login_key, login_key, limits.per_login, now), now),
            limits.per_address.wait(
                _recent(conn, sign_in_attempts.c.address_key, address_key, limits.per_address, now), now
            ),
        ]
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise SignInThrottled(whole_seconds(wait))
        oldest = now - max(limits.per_login.window, limits.per_address.window)
        conn.execute(sign_in_attempts.delete().where(sign_in_attempts.c.attempted_at <= oldest))
        conn.execute(sign_in_attempts.insert().values(login_key=login_key, address_key=address_key, attempted_at=now))


def _recent(conn: Connection, column: sa.Column[str], key: str, window: SlidingWindow, now: datetime) -> list[datetime]:
    """The newest `window.limit` attempts of `key` inside the window: all `window.wait` needs."""
    query = (
        sa.select(sign_in_attempts.c.attempted_at)
        .where(column == key, sign_in_attempts.c.attempted_at > window.cutoff(now))
        .order_by(sign_in_attempts.c.attempted_at.desc())
        .limit(window.limit)
    )
    return list(conn.execute(query).scalars())


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
