"""Accounts and users: creation, password hashing, and the first administrator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from runyard.domain.statuses import Role
from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.store.database import Store
from runyard.store.tables import accounts, users

DEFAULT_ACCOUNT = "default"
DEFAULT_ADMIN = "admin"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_account(store: Store, name: str) -> int:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("name", "an account name has 1 to 100 characters")
    with store.write() as conn:
        if conn.execute(sa.select(accounts.c.id).where(accounts.c.name == name)).first():
            raise Conflict(f"account {name} already exists")
        return _insert_account(conn, name, store.now(conn))


def _insert_account(conn: Connection, name: str, now: object) -> int:
    return int(conn.execute(accounts.insert().values(name=name, created_at=now).returning(accounts.c.id)).scalar_one())


def account_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(accounts.c.id).where(accounts.c.name == name)).scalar()
    if found is None:
        raise NotFound("account", name)
    return int(found)


def create_user(store: Store, *, account: str, login: str, password: str, role: str) -> int:
    if role not in {r.value for r in Role}:
        raise InvalidInput("role", f"'{role}' is not a role; use one of: {', '.join(r.value for r in Role)}")
    if not login.strip():
        raise InvalidInput("login", "must not be empty")
    if len(password) < 8:
        raise InvalidInput("password", "must have at least 8 characters")
    with store.write() as conn:
        owner = account_id(conn, account)
        if conn.execute(sa.select(users.c.id).where(users.c.login == login)).first():
            raise Conflict(f"login {login} is taken (logins are unique across accounts)")
        return _insert_user(conn, owner, login, password, Role(role), store.now(conn))


def _insert_user(conn: Connection, account: int, login: str, password: str, role: Role, now: object) -> int:
    return int(
        conn.execute(
            users.insert()
            .values(
                account_id=account,
                login=login,
                password_hash=hash_password(password),
                role=role.value,
                active=True,
                created_at=now,
            )
            .returning(users.c.id)
        ).scalar_one()
    )


@dataclass(frozen=True)
class Bootstrap:
    created: bool
    login: str
    generated_password: str | None  # shown once, when runyard made it up


def bootstrap_admin(store: Store, password: str | None) -> Bootstrap:
    """On an empty store, create the account `default` and its administrator `admin`."""
    with store.write() as conn:
        if conn.execute(sa.select(accounts.c.id).limit(1)).first():
            return Bootstrap(created=False, login=DEFAULT_ADMIN, generated_password=None)
        generated = None if password else secrets.token_urlsafe(12)
        now = store.now(conn)
        owner = _insert_account(conn, DEFAULT_ACCOUNT, now)
        _insert_user(conn, owner, DEFAULT_ADMIN, password or generated or "", Role.ADMINISTRATOR, now)
        return Bootstrap(created=True, login=DEFAULT_ADMIN, generated_password=generated)


def deactivate_user(store: Store, account: int, user_id: int, *, acting_user_id: int | None = None) -> None:
    """A deactivated user can no longer log in; their tokens stop working at once.

    Nobody deactivates themselves: an account must not lose its last administrator by a slip.
    """
    if acting_user_id == user_id:
        raise Conflict("you cannot deactivate your own user; another administrator can")
    with store.write() as conn:
        updated = conn.execute(
            users.update().where(users.c.id == user_id, users.c.account_id == account).values(active=False)
        ).rowcount
    if not updated:
        raise NotFound("user", user_id)
