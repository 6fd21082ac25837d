"""sign-in attempts and revoked UI sessions

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 09:00:00.000000

sign_in_attempts: one row per sign-in that has not succeeded (a failure, or one being checked), keyed by the
sha256 of the login and of the client address, so every HTTP process and server counts the same failures in its
sliding window; rows older than the window are deleted as new ones come. revoked_sessions: the UI sessions signed
out before they expired (the sha256 of the cookie's nonce), refused on every request until they would have expired.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login_key", sa.String(length=64), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
    )
    op.create_index("ix_sign_in_attempts_login_key_attempted_at", "sign_in_attempts", ["login_key", "attempted_at"])
    op.create_index("ix_sign_in_attempts_address_key_attempted_at", "sign_in_attempts", ["address_key", "attempted_at"])
    op.create_index("ix_sign_in_attempts_attempted_at", "sign_in_attempts", ["attempted_at"])
    op.create_table(
        "revoked_sessions",
        sa.Column("nonce_key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce_key", name=op.f("pk_revoked_sessions")),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_revoked_sessions_expires_at", table_name="revoked_sessions")
    op.drop_table("revoked_sessions")
    op.drop_index("ix_sign_in_attempts_attempted_at", table_name="sign_in_attempts")
    op.drop_index("ix_sign_in_attempts_address_key_attempted_at", table_name="sign_in_attempts")
    op.drop_index("ix_sign_in_attempts_login_key_attempted_at", table_name="sign_in_attempts")
    op.drop_table("sign_in_attempts")
