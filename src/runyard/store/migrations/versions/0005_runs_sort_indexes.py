"""the API Runs page's time and message count indexes end with the filtered columns: walks skip rejected runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TAIL = ["id", "operation_id", "status", "run_type"]

# name -> (columns before, columns after): the names stay, the indexes gain the tie-breaker and filtered columns.
_INDEXES: dict[str, tuple[list[str], list[str]]] = {
    "ix_runs_account_id_started_at": (["account_id", "started_at"], ["account_id", "started_at", *_TAIL]),
    "ix_runs_account_id_completed_at": (["account_id", "completed_at"], ["account_id", "completed_at", *_TAIL]),
    "ix_runs_account_id_created_at": (["account_id", "created_at"], ["account_id", "created_at", *_TAIL]),
    "ix_runs_account_id_message_count": (["account_id", "message_count"], ["account_id", "message_count", *_TAIL]),
}


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name, (_, after) in _INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, after, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name, (before, _) in _INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, before, unique=False)
