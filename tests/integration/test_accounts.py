"""Accounts and users in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.services import accounts
from runyard.store.database import Store
from runyard.store.tables import users


def test_users_are_created_hashed_and_deactivated_by_someone_else(store: Store) -> None:
    boot = accounts.bootstrap_admin(store, "first-admin-password")
    assert boot.created
    assert boot.generated_password is None
    assert not accounts.bootstrap_admin(store, None).created  # only on an empty store
    other = accounts.create_user(store, account="default", login="ops", password="ops-password", role="operator")
    with store.read() as conn:
        admin_id, stored = conn.execute(
            sa.select(users.c.id, users.c.password_hash).where(users.c.login == "admin")
        ).one()
    assert "first-admin-password" not in stored
    assert accounts.verify_password(stored, "first-admin-password")
    assert not accounts.verify_password(stored, "wrong")

    with pytest.raises(Conflict, match="cannot deactivate your own user"):
        accounts.deactivate_user(store, 1, admin_id, acting_user_id=admin_id)
    accounts.deactivate_user(store, 1, other, acting_user_id=admin_id)
    with store.read() as conn:
        active = dict(conn.execute(sa.select(users.c.login, users.c.active)).all())
    assert active == {"admin": True, "ops": False}
    with pytest.raises(NotFound):
        accounts.deactivate_user(store, 2, other, acting_user_id=admin_id)  # another account's user


def test_logins_are_unique_across_accounts_and_roles_are_checked(store: Store) -> None:
    accounts.bootstrap_admin(store, "first-admin-password")
    accounts.create_account(store, "other")
    with pytest.raises(Conflict, match="login admin is taken"):
        accounts.create_user(store, account="other", login="admin", password="another-password", role="viewer")
    with pytest.raises(InvalidInput, match="'boss' is not a role"):
        accounts.create_user(store, account="other", login="b", password="another-password", role="boss")
    with pytest.raises(Conflict, match="account other already exists"):
        accounts.create_account(store, "other")
