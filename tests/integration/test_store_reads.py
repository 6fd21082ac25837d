"""What a Store.read() block sees: one snapshot on SQLite; on PostgreSQL, no transaction (READ COMMITTED)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from runyard.store.database import Store
from runyard.store.tables import accounts


def _add_account(store: Store, name: str) -> None:
    with store.write() as conn:
        conn.execute(sa.insert(accounts).values(name=name, created_at=datetime.now(UTC)))


def _accounts(conn: sa.Connection) -> set[str]:
    return set(conn.execute(sa.select(accounts.c.name)).scalars())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_reads_one_snapshot(store: Store) -> None:
    _add_account(store, "before")
    with store.read() as conn:
        assert "before" in _accounts(conn)
        # Committed by another connection while the read is open: WAL lets it write beside the reader (without
        # WAL, or with one shared connection, this would wait for the read to end instead).
        _add_account(store, "during")
        assert "during" not in _accounts(conn)  # the page and its total agree
    with store.read() as conn:
        assert "during" in _accounts(conn)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_reads_run_outside_a_transaction(store: Store) -> None:
    """Each statement sees what was committed when it started, as it would inside a READ COMMITTED
    transaction, without the BEGIN and COMMIT round trips. now() is the transaction's start: it moves."""
    with store.read() as conn:
        first = conn.execute(sa.text("SELECT now()")).scalar_one()
        time.sleep(0.01)
        second = conn.execute(sa.text("SELECT now()")).scalar_one()
        _add_account(store, "during")
        assert "during" in _accounts(conn)
    assert second > first
    with store.write() as conn:  # writes stay one transaction: now() does not move
        first = conn.execute(sa.text("SELECT now()")).scalar_one()
        time.sleep(0.01)
        assert conn.execute(sa.text("SELECT now()")).scalar_one() == first
