"""task search: tasks.initials, and the indexes of the API Runs and API Run Details pages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.domain.search import initials

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BACKFILL_CHUNK = 1000

# A lightweight view of tasks for the backfill: the migration does not depend on runyard.store.tables.
_tasks = sa.table("tasks", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("initials", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("initials", sa.String(length=100), server_default="", nullable=False))
        batch_op.create_index(batch_op.f("ix_tasks_run_id_position"), ["run_id", "position"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_run_id_status"), ["run_id", "status"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_account_id_created_at"), ["account_id", "created_at"], unique=False)

    _backfill_initials()


def _backfill_initials() -> None:
    """Fill tasks.initials from the names of the tasks that existed before this revision, a chunk at a time."""
    conn = op.get_bind()
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(_tasks.c.id, _tasks.c.name)
            .where(_tasks.c.id > last_id)
            .order_by(_tasks.c.id)
            .limit(_BACKFILL_CHUNK)
        ).all()
        if not rows:
            return
        conn.execute(
            _tasks.update().where(_tasks.c.id == sa.bindparam("task_id")).values(initials=sa.bindparam("value")),
            [{"task_id": row.id, "value": initials(row.name)} for row in rows],
        )
        last_id = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_account_id_created_at"))

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_run_id_status"))
        batch_op.drop_index(batch_op.f("ix_tasks_run_id_position"))
        batch_op.drop_column("initials")
