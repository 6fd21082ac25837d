"""Who is calling: password login, long-lived API tokens, and the Principal every request acts as.

No FastAPI here: the API layer (runyard.api.auth) turns headers into calls to these functions.

API token secrets look like `ry_<prefix>_<random>`. Only the sha256 hex of the whole secret
and the 8-character prefix are stored, so the secret is shown once, at creation, and a leaked
database does not leak usable tokens. A sha256 (not argon2) is enough here because the secret
carries 256 random bits: there is nothing to brute-force, and the lookup stays one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from runyard.domain.statuses import Role
from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.services.accounts import hash_password, verify_password
from runyard.store.database import Store
from runyard.store.tables import accounts, api_tokens, users

Via = Literal["jwt", "api_token", "session"]

API_CREDENTIAL_MARK = "ry_"
PREFIX_HEX_CHARS = 8
SECRET_RANDOM_BYTES = 32
MAX_SECRET_CHARS = 128  # longer than any secret we make: refuse before hashing attacker-sized input
TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is refreshed at most this often
MAX_TOKEN_NAME = 200


@dataclass(frozen=True)
class Principal:
    """An authenticated, active user, with the role the store holds for them now."""

    user_id: int
    account_id: int
    account: str
    login: str
    role: Role
    via: Via

    @property
    def can_operate(self) -> bool:
        """Launch, retry and cancel runs."""
        return self.role in (Role.OPERATOR, Role.ADMINISTRATOR)

    @property
    def is_admin(self) -> bool:
        """Manage users and tokens."""
        return self.role is Role.ADMINISTRATOR


@dataclass(frozen=True)
class UserView:
    id: int
    login: str
    role: Role
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiTokenView:
    """An API token as lists show it: never the secret, only its prefix."""

    id: int
    name: str
    prefix: str
    user_id: int
    login: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


# --- principals and passwords ---------------------------------------------------------------------

_PRINCIPAL_COLUMNS = (
    users.c.id.label("user_id"),
    users.c.account_id,
    accounts.c.name.label("account"),
    users.c.login,
    users.c.role,
    users.c.active,
)


def _principal_query() -> sa.Select[Any]:
    return sa.select(*_PRINCIPAL_COLUMNS).join(accounts, accounts.c.id == users.c.account_id)


def _principal(row: RowMapping, via: Via) -> Principal:
    return Principal(
        user_id=int(row["user_id"]),
        account_id=int(row["account_id"]),
        account=str(row["account"]),
        login=str(row["login"]),
        role=Role(row["role"]),
        via=via,
    )


@cache
def _dummy_hash() -> str:
    """An argon2 hash of nothing anyone knows, made once, so unknown logins cost what known ones do."""
    return hash_password(secrets.token_urlsafe(16))


def authenticate(store: Store, login: str, password: str) -> Principal | None:
    """The active user with this login and password, or None (unknown login, wrong password, inactive).

    The password is always verified against some argon2 hash, so the answer takes about the
    same time whether or not the login exists.
    """
    with store.read() as conn:
        row = conn.execute(_principal_query().add_columns(users.c.password_hash).where(users.c.login == login))
        found = row.mappings().first()
    if found is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(str(found["password_hash"]), password) or not found["active"]:
        return None
    return _principal(found, "jwt")


# Built once: every authenticated request runs it, and building the statement costs more than the lookup.
_PRINCIPAL_BY_ID = _principal_query().where(users.c.id == sa.bindparam("user_id"))


def get_principal(store: Store, user_id: int, *, via: Via = "jwt") -> Principal | None:
    """The user as a Principal with their current role; None when they are unknown or inactive."""
    with store.read() as conn:
        found = conn.execute(_PRINCIPAL_BY_ID, {"user_id": user_id}).mappings().first()
    if found is None or not found["active"]:
        return None
    return _principal(found, via)


def list_users(store: Store, account_id: int) -> list[UserView]:
    """The account's users, by id; no password hashes."""
    query = (
        sa.select(users.c.id, users.c.login, users.c.role, users.c.active, users.c.created_at)
        .where(users.c.account_id == account_id)
        .order_by(users.c.id)
    )
    with store.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        UserView(id=r["id"], login=r["login"], role=Role(r["role"]), active=r["active"], created_at=r["created_at"])
        for r in rows
    ]


# --- API tokens -----------------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """The sha256 hex the api_tokens table keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    """True for `ry_...` strings: how the API layer tells an API token from a JWT."""
    return credential.startswith(API_CREDENTIAL_MARK)


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(PREFIX_HEX_CHARS // 2)
    return prefix, f"{API_CREDENTIAL_MARK}{prefix}_{secrets.token_urlsafe(SECRET_RANDOM_BYTES)}"


def _token_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME:
        raise InvalidInput("name", f"a token name has 1 to {MAX_TOKEN_NAME} characters")
    return name


def _token_owner(conn: Connection, user_id: int) -> int:
    owner = conn.execute(sa.select(users.c.account_id, users.c.active).where(users.c.id == user_id)).first()
    if owner is None:
        raise NotFound("user", user_id)
    if not owner.active:
        raise Conflict(f"user {user_id} is inactive: activate them before giving them a token")
    return int(owner.account_id)


def create_api_token(store: Store, user_id: int, name: str) -> tuple[int, str]:
    """A new token acting as `user_id`: (its id, the secret). The secret is never stored nor shown again."""
    name = _token_name(name)
    prefix, secret = _new_secret()
    with store.write() as conn:
        values = {
            "account_id": _token_owner(conn, user_id),
            "user_id": user_id,
            "name": name,
            "token_hash": hash_secret(secret),
            "prefix": prefix,
            "created_at": store.now(conn),
        }
        token_id = conn.execute(api_tokens.insert().values(**values).returning(api_tokens.c.id)).scalar_one()
    return int(token_id), secret


def list_api_tokens(store: Store, account_id: int) -> list[ApiTokenView]:
    """The account's tokens, revoked ones included, by id."""
    query = (
        sa.select(
            api_tokens.c.id,
            api_tokens.c.name,
            api_tokens.c.prefix,
            api_tokens.c.user_id,
            users.c.login,
            api_tokens.c.created_at,
            api_tokens.c.last_used_at,
            api_tokens.c.revoked_at,
        )
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.account_id == account_id)
        .order_by(api_tokens.c.id)
    )
    with store.read() as conn:
        return [ApiTokenView(**row) for row in conn.execute(query).mappings()]


def revoke_api_token(store: Store, account_id: int, token_id: int) -> None:
    """Revoke a token of this account (again is a no-op); NotFound for any other account's token."""
    mine = (api_tokens.c.id == token_id) & (api_tokens.c.account_id == account_id)
    with store.write() as conn:
        if conn.execute(sa.select(api_tokens.c.id).where(mine)).first() is None:
            raise NotFound("API token", token_id)
        update = api_tokens.update().where(mine & api_tokens.c.revoked_at.is_(None))
        conn.execute(update.values(revoked_at=store.now(conn)))


def principal_for_api_token(store: Store, secret: str) -> Principal | None:
    """The token's user as a Principal; None for an unknown, revoked or malformed token or an inactive user."""
    if not looks_like_api_token(secret) or len(secret) > MAX_SECRET_CHARS:
        return None
    query = (
        _principal_query()
        .add_columns(api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at)
        .join(api_tokens, api_tokens.c.user_id == users.c.id)
        .where(api_tokens.c.token_hash == hash_secret(secret), api_tokens.c.revoked_at.is_(None))
    )
    with store.read() as conn:
        found = conn.execute(query).mappings().first()
        now = store.now(conn)
    if found is None or not found["active"]:
        return None
    _touch(store, int(found["token_id"]), found["last_used_at"], now)
    return _principal(found, "api_token")


def _touch(store: Store, token_id: int, last_used_at: datetime | None, now: datetime) -> None:
    """Record use at most once per TOUCH_INTERVAL: a busy token must not cost a write per request."""
    if last_used_at is not None and now - last_used_at < TOUCH_INTERVAL:
        return
    stale = api_tokens.c.last_used_at.is_(None) | (api_tokens.c.last_used_at < now - TOUCH_INTERVAL)
    with store.write() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.id == token_id, stale).values(last_used_at=now))
