"""export sessions (spec 004's continuation tokens and activity queues)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:00:00.000000

export_sessions: one row per continuation token: what it exports, its queue and status, and how many pages the
background export has cached in staging. Every serving process reads and moves them, so they live in the store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("object_name", sa.String(length=300), nullable=False),
        sa.Column("from_date", sa.String(length=30), nullable=True),
        sa.Column("to_date", sa.String(length=30), nullable=True),
        sa.Column("page_size", sa.Integer(), nullable=False),
        sa.Column("output_type", sa.String(length=10), nullable=False),
        sa.Column("queue", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("accumulate", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.Integer(), nullable=True),
        sa.Column("pages_cached", sa.Integer(), nullable=False),
        sa.Column("total_pages", sa.Integer(), nullable=True),
        sa.Column("total_rows", sa.BigInteger(), nullable=True),
        sa.Column("initiated_at", UtcDateTime(), nullable=False),
        sa.Column("last_activity", UtcDateTime(), nullable=False),
        sa.Column("queue_since", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_export_sessions_account_id_accounts")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_export_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_sessions")),
    )
    op.create_index("ix_export_sessions_account_id_queue", "export_sessions", ["account_id", "queue"])


def downgrade() -> None:
    op.drop_index("ix_export_sessions_account_id_queue", table_name="export_sessions")
    op.drop_table("export_sessions")
