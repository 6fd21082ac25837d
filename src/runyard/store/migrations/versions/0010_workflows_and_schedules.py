"""workflow counts and schedule ticks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 01:30:00.000000

workflow_upstreams: per workflow operation, one row per upstream job it waits for, with the successes counted
since its last trigger (spec 003's "JA(0), JB(0), JC(1)"). workflow_states: per workflow, whether a counted
success still has to be evaluated, and its last trigger. operation_schedules: per scheduled operation, the last
cron tick the scheduler handled, so that no tick fires twice whichever process leads.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_upstreams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=50), nullable=False),
        sa.Column("configuration_type", sa.String(length=50), nullable=False),
        sa.Column("configuration_id", sa.String(length=300), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_success_at", UtcDateTime(), nullable=True),
        sa.Column("last_success_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["operations.id"], name=op.f("fk_workflow_upstreams_workflow_id_operations")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_workflow_upstreams_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["last_success_run_id"], ["runs.id"], name=op.f("fk_workflow_upstreams_last_success_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_upstreams")),
        sa.UniqueConstraint("workflow_id", "position", name=op.f("uq_workflow_upstreams_workflow_id_position")),
    )
    op.create_index(
        "ix_workflow_upstreams_upstream",
        "workflow_upstreams",
        ["account_id", "configuration_id", "environment", "configuration_type"],
    )
    op.create_table(
        "workflow_states",
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_triggered_at", UtcDateTime(), nullable=True),
        sa.Column("last_trigger_run_id", sa.Integer(), nullable=True),
        sa.Column("reset_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["operations.id"], name=op.f("fk_workflow_states_workflow_id_operations")
        ),
        sa.ForeignKeyConstraint(
            ["last_trigger_run_id"], ["runs.id"], name=op.f("fk_workflow_states_last_trigger_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_workflow_states")),
    )
    op.create_index("ix_workflow_states_pending", "workflow_states", ["pending"])
    op.create_table(
        "operation_schedules",
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("last_tick_at", UtcDateTime(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_operation_schedules_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(["last_run_id"], ["runs.id"], name=op.f("fk_operation_schedules_last_run_id_runs")),
        sa.PrimaryKeyConstraint("operation_id", name=op.f("pk_operation_schedules")),
    )


def downgrade() -> None:
    op.drop_table("operation_schedules")
    op.drop_index("ix_workflow_states_pending", table_name="workflow_states")
    op.drop_table("workflow_states")
    op.drop_index("ix_workflow_upstreams_upstream", table_name="workflow_upstreams")
    op.drop_table("workflow_upstreams")
