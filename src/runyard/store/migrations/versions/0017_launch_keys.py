"""launch keys

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 04:00:00.000000

launch_keys: the Idempotency-Key a client sent with a launch or a retry, and the run that request made, so the same
request sent again (its answer was lost) answers that run instead of making another. Kept a day.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "launch_keys",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_launch_keys")),
    )
    op.create_index("ix_launch_keys_account_id_created_at", "launch_keys", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_launch_keys_account_id_created_at", table_name="launch_keys")
    op.drop_table("launch_keys")
