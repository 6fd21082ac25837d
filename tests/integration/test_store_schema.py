"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import metadata


def test_migrations_match_the_tables(store: Store) -> None:
    with store.read() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert migrate.current_revision(store) == migrate.head_revision(store)


def test_upgrade_is_idempotent(store: Store) -> None:
    migrate.upgrade(store)
    assert migrate.current_revision(store) == migrate.head_revision(store)


def test_the_runs_page_indexes_exist(store: Store) -> None:
    with store.read() as conn:
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("runs")}
    assert "uq_runs_one_active_per_operation" in indexes
    assert {
        "ix_runs_account_id_status_id",
        "ix_runs_account_id_started_at",
        "ix_runs_account_id_completed_at",
    } <= indexes


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    store = Store(f"sqlite:///{tmp_path}/wal.db")
    try:
        with store.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.dispose()
