"""message counts kept on runs and tasks, so the Message column sorts by an index, not a count per row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            batch_op.f("ix_runs_account_id_message_count"), ["account_id", "message_count"], unique=False
        )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_count", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE runs SET message_count = (SELECT count(*) FROM task_messages WHERE task_messages.run_id = runs.id)"
    )
    op.execute(
        "UPDATE tasks SET message_count = (SELECT count(*) FROM task_messages WHERE task_messages.task_id = tasks.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("message_count")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_account_id_message_count"))
        batch_op.drop_column("message_count")
