"""Bring a database to the latest schema: `runyard db upgrade`, and on every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from runyard.store.database import Store

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(store: Store) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["store"] = store
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    config = alembic_config(store)
    with store.write() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(store: Store, revision: str) -> None:
    """Back to `revision`, as `runyard` never does on its own: for tests of a migration's backfill."""
    config = alembic_config(store)
    with store.write() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(store: Store) -> str | None:
    with store.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(store: Store) -> str | None:
    return ScriptDirectory.from_config(alembic_config(store)).get_current_head()
