"""durations exact to the microsecond on SQLite, and the bytes a task moved

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 15:00:00.000000

SQLite's julianday() keeps milliseconds, so runs.duration_seconds and the tasks' duration sort could order
two durations differently from the microseconds the API shows. Both now subtract whole seconds and
microseconds as integers: the value sorted is exactly the value shown (PostgreSQL's EXTRACT(EPOCH) already
was). tasks.bytes_processed counts what a copying task moved (storage-to-storage).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# What runyard.store.tables.SecondsBetween compiles to on SQLite, before and after (copies: a migration must not
# change when the code does). SQLAlchemy stores SQLite times as 'YYYY-MM-DD HH:MM:SS.ffffff'.
_SQLITE_MILLISECONDS = "round((julianday(completed_at) - julianday(started_at)) * 86400.0, 3)"
_SQLITE_MICROSECONDS = (
    "((CAST(strftime('%s', completed_at) AS INTEGER) - CAST(strftime('%s', started_at) AS INTEGER)) * 1000000"
    " + CAST(substr(completed_at, 21, 6) AS INTEGER) - CAST(substr(started_at, 21, 6) AS INTEGER)) / 1000000.0"
)
_SORT_INDEX = ["account_id", "duration_seconds", "id", "operation_id", "status", "run_type"]


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bytes_processed", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "sqlite":
        _recompute_run_durations(_SQLITE_MICROSECONDS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recompute_run_durations(_SQLITE_MILLISECONDS)
    # In place (SQLite 3.35+): a batch copy of tasks would fail on the foreign keys that point at it.
    op.execute("ALTER TABLE tasks DROP COLUMN bytes_processed")


def _recompute_run_durations(expression: str) -> None:
    """SQLite cannot alter a generated column: drop its index and the column, add it back, index it again.

    In place, not in a batch: copying runs would drop the run_counts triggers and check every foreign key that
    points at a run. A VIRTUAL column is the only generated one SQLite's ALTER TABLE can add.
    """
    op.drop_index("ix_runs_duration_sort", table_name="runs")
    op.execute("ALTER TABLE runs DROP COLUMN duration_seconds")
    op.execute(f"ALTER TABLE runs ADD COLUMN duration_seconds FLOAT GENERATED ALWAYS AS ({expression}) VIRTUAL")
    op.create_index("ix_runs_duration_sort", "runs", _SORT_INDEX)
