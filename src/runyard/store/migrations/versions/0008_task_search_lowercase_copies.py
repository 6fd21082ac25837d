"""task search: lowercased copies of task names, table names and messages, matched with LIKE instead of ILIKE

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 10:10:00.000000

PostgreSQL's ILIKE lowercases both sides for every row it reads; a stored copy, lowercased once on insert, is
matched with a plain LIKE, and Unicode letters then match their other case on SQLite too. The search indexes
cover the copies instead of the names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.domain.search import fold_case

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BACKFILL_CHUNK = 1000

# table -> the column whose lowercased copy `<column>_lower` the search matches
_COPIED = {"tasks": "name", "task_tables": "table_name", "task_messages": "text"}

# table -> index name -> (columns before, columns after)
_INDEXES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "tasks": {
        "ix_tasks_run_id_position": (
            ["run_id", "position", "id", "initials", "name", "status"],
            ["run_id", "position", "id", "initials", "name_lower", "status"],
        ),
    },
    "task_tables": {
        "ix_task_tables_run_id": (["run_id", "table_name", "task_id"], ["run_id", "table_name_lower", "task_id"]),
    },
}


def upgrade() -> None:
    for table, source in _COPIED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(f"{source}_lower", sa.Text(), server_default="", nullable=False))
        _backfill(table, source)
    _replace_indexes(after=True)


def _backfill(table: str, source: str) -> None:
    """Fill `<source>_lower` for the rows written before this revision.

    ASCII text is lowercased by the database in one statement (lower() under the C collation maps A-Z only, as
    Python does for ASCII); text with other characters, rare in practice, is lowercased by fold_case() in Python,
    a chunk at a time, so that every row holds exactly what runyard writes on insert.
    """
    conn = op.get_bind()
    postgresql = conn.dialect.name == "postgresql"
    ascii_lower = f'lower({source} COLLATE "C")' if postgresql else f"lower({source})"
    bytes_ = f"octet_length({source})" if postgresql else f"length(CAST({source} AS BLOB))"
    conn.execute(sa.text(f"UPDATE {table} SET {source}_lower = {ascii_lower}"))  # noqa: S608 - module constants
    rows = sa.table(table, sa.column("id", sa.Integer), sa.column(source, sa.Text), sa.column(f"{source}_lower"))
    not_ascii = sa.text(f"{bytes_} <> length({source})")
    last_id = 0
    while True:
        found = conn.execute(
            sa.select(rows.c.id, rows.c[source])
            .where(rows.c.id > last_id, not_ascii)
            .order_by(rows.c.id)
            .limit(_BACKFILL_CHUNK)
        ).all()
        if not found:
            return
        conn.execute(
            rows.update().where(rows.c.id == sa.bindparam("row_id")).values({f"{source}_lower": sa.bindparam("copy")}),
            [{"row_id": row_id, "copy": fold_case(text)} for row_id, text in found],
        )
        last_id = found[-1][0]


def _replace_indexes(*, after: bool) -> None:
    for table, indexes in _INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, (before_columns, after_columns) in indexes.items():
                batch_op.drop_index(name)
                batch_op.create_index(name, after_columns if after else before_columns, unique=False)


def downgrade() -> None:
    _replace_indexes(after=False)
    for table, source in _COPIED.items():
        # Not a batch copy of the table: SQLite (3.35+) drops an unindexed column in place, and copying tasks would
        # drop a table that other tables' foreign keys point at.
        op.execute(f"ALTER TABLE {table} DROP COLUMN {source}_lower")
