"""rate limit events

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:30:00.000000

rate_limit_events: one row per SQL Explorer query and per export started, by kind and account, so every HTTP process
of every server counts the same events in its sliding window (RUNYARD_SQL_QUERIES_PER_MINUTE,
RUNYARD_EXPORTS_PER_MINUTE); an account's rows older than the window are deleted as its new ones come.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("happened_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_events")),
    )
    op.create_index(
        "ix_rate_limit_events_kind_account_id_happened_at", "rate_limit_events", ["kind", "account_id", "happened_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_rate_limit_events_kind_account_id_happened_at", table_name="rate_limit_events")
    op.drop_table("rate_limit_events")
