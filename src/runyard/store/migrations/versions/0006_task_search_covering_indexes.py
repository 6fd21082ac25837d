"""the task search reads a run's tasks and table names from indexes alone, not from the table rows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 07:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# table -> index name -> (columns before, columns after): the names stay, the indexes cover what the search reads.
_INDEXES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "tasks": {
        "ix_tasks_run_id_position": (
            ["run_id", "position"],
            ["run_id", "position", "id", "initials", "name", "status"],
        ),
    },
    "task_tables": {
        "ix_task_tables_run_id": (["run_id"], ["run_id", "table_name", "task_id"]),
    },
}


def upgrade() -> None:
    for table, indexes in _INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, (_, after) in indexes.items():
                batch_op.drop_index(name)
                batch_op.create_index(name, after, unique=False)


def downgrade() -> None:
    for table, indexes in _INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, (before, _) in indexes.items():
                batch_op.drop_index(name)
                batch_op.create_index(name, before, unique=False)
