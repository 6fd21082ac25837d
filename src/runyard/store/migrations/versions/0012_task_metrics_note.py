"""a running task's own words on where it is, shown with its live metrics

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00.000000

tasks.metrics_note holds a short line an executor reports while it runs (the high watermark it read, the
tables a load committed); spec 001's `code` and the run page show it with the records, rate and latency.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (a nullable column without a default): a batch copy of tasks would fail on the foreign keys
    # that point at it.
    op.add_column("tasks", sa.Column("metrics_note", sa.String(200), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE tasks DROP COLUMN metrics_note")
