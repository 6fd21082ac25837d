"""runs.duration_seconds computed by the database, and indexes for the API Runs page (duration sort, totals)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# completed_at - started_at in seconds, NULL until both are set: what runyard.store.tables.SecondsBetween
# compiles to on each backend (the migration keeps its own copy: it must not change when the code does).
_DURATION = {
    "sqlite": "round((julianday(completed_at) - julianday(started_at)) * 86400.0, 3)",
    "postgresql": "EXTRACT(EPOCH FROM (completed_at - started_at))",
}


def upgrade() -> None:
    backend = op.get_bind().dialect.name
    # PostgreSQL: STORED (an index needs it; its VIRTUAL columns, from version 18, cannot be indexed).
    # SQLite: VIRTUAL, the only generated column its ALTER TABLE can add, so the table is not copied; the
    # index stores the values all the same.
    computed = sa.Computed(_DURATION[backend], persisted=True if backend == "postgresql" else None)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_seconds", sa.Float(), computed, nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_duration_sort",
            ["account_id", "duration_seconds", "id", "operation_id", "status", "run_type"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_runs_account_id_operation_id_status_run_type"),
            ["account_id", "operation_id", "status", "run_type"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_runs_account_id_status_run_type"), ["account_id", "status", "run_type"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_account_id_status_run_type"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_operation_id_status_run_type"))
        batch_op.drop_index("ix_runs_duration_sort")
    # Not in a batch: on SQLite that would copy the table, and dropping the old one checks every foreign key
    # that points at a run (runs.retry_of has no index). SQLite 3.35+ drops a generated column in place.
    op.execute("ALTER TABLE runs DROP COLUMN duration_seconds")
