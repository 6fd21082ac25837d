"""run_counts: the runs of each (account, operation, status, type), kept by triggers, for the API Runs totals

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KEY = "account_id, operation_id, status, run_type"
_CHANGED = (
    "OLD.account_id IS DISTINCT FROM NEW.account_id OR OLD.operation_id IS DISTINCT FROM NEW.operation_id"
    " OR OLD.status IS DISTINCT FROM NEW.status OR OLD.run_type IS DISTINCT FROM NEW.run_type"
)


def _add(row: str) -> str:
    return (
        f"INSERT INTO run_counts ({_KEY}, runs)"  # noqa: S608 - built from this module's constants only
        f" VALUES ({row}.account_id, {row}.operation_id, {row}.status, {row}.run_type, 1)"
        f" ON CONFLICT ({_KEY}) DO UPDATE SET runs = run_counts.runs + 1"
    )


def _remove(row: str) -> str:
    return (
        f"UPDATE run_counts SET runs = runs - 1 WHERE account_id = {row}.account_id"  # noqa: S608 - as _add
        f" AND operation_id = {row}.operation_id AND status = {row}.status AND run_type = {row}.run_type"
    )


_POSTGRESQL = [
    f"""CREATE FUNCTION runyard_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {_remove("OLD")};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {_add("NEW")};
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER runs_counted AFTER INSERT OR DELETE ON runs FOR EACH ROW EXECUTE FUNCTION runyard_count_runs()",
    f"CREATE TRIGGER runs_recounted AFTER UPDATE OF {_KEY} ON runs FOR EACH ROW WHEN ({_CHANGED})"
    " EXECUTE FUNCTION runyard_count_runs()",
]
# SQLite reads `IS NOT` where PostgreSQL reads `IS DISTINCT FROM`; its UPSERT inside a trigger is the same.
_SQLITE = [
    f"CREATE TRIGGER runs_counted_insert AFTER INSERT ON runs BEGIN {_add('NEW')}; END",
    f"CREATE TRIGGER runs_counted_delete AFTER DELETE ON runs BEGIN {_remove('OLD')}; END",
    f"CREATE TRIGGER runs_recounted AFTER UPDATE OF {_KEY} ON runs"
    f" WHEN ({_CHANGED.replace('IS DISTINCT FROM', 'IS NOT')}) BEGIN {_remove('OLD')}; {_add('NEW')}; END",
]


def upgrade() -> None:
    op.create_table(
        "run_counts",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("run_type", sa.String(length=20), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "operation_id", "status", "run_type", name=op.f("pk_run_counts")),
    )
    op.execute(f"INSERT INTO run_counts ({_KEY}, runs) SELECT {_KEY}, count(*) FROM runs GROUP BY {_KEY}")  # noqa: S608
    for statement in _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER runs_recounted ON runs")
        op.execute("DROP TRIGGER runs_counted ON runs")
        op.execute("DROP FUNCTION runyard_count_runs()")
    else:
        for trigger in ("runs_counted_insert", "runs_counted_delete", "runs_recounted"):
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_table("run_counts")
