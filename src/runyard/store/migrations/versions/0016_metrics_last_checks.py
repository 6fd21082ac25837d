"""metrics last checks

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 23:05:00.000000

metrics_last_checks: for each user and running task, the recordsProcessed that user's last spec 001 check showed, so
`recordsProcessedSinceLastCheck` counts from that user's previous check whichever HTTP process or server answered
it. A user's rows of tasks whose runs ended more than a day ago are deleted at that user's next check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metrics_last_checks",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("records_seen", sa.BigInteger(), nullable=False),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "task_id", name=op.f("pk_metrics_last_checks")),
    )


def downgrade() -> None:
    op.drop_table("metrics_last_checks")
