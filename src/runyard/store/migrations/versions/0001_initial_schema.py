"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 01:36:06.078980
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import runyard.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=50), nullable=False),
        sa.Column("configuration_type", sa.String(length=50), nullable=False),
        sa.Column("configuration_id", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec", runyard.store.types.json_type(), nullable=False),
        sa.Column("activated", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_operations_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint(
            "account_id",
            "environment",
            "configuration_type",
            "configuration_id",
            name=op.f("uq_operations_account_id_environment_configuration_type_configuration_id"),
        ),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operations_account_id_configuration_id"),
            ["account_id", "configuration_id"],
            unique=False,
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_users_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", name=op.f("uq_users_login")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_account_id"), ["account_id"], unique=False)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_api_tokens_account_id_accounts")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("job_name", sa.String(length=400), nullable=False),
        sa.Column("run_type", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("blocked_by", sa.Integer(), nullable=True),
        sa.Column("execution_date", sa.Date(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_runs_account_id_accounts")),
        sa.ForeignKeyConstraint(["blocked_by"], ["runs.id"], name=op.f("fk_runs_blocked_by_runs")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_runs_created_by_users")),
        sa.ForeignKeyConstraint(["operation_id"], ["operations.id"], name=op.f("fk_runs_operation_id_operations")),
        sa.ForeignKeyConstraint(["retry_of"], ["runs.id"], name=op.f("fk_runs_retry_of_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("job_name", name=op.f("uq_runs_job_name")),
        sa.UniqueConstraint("run_key", name=op.f("uq_runs_run_key")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runs_account_id_completed_at"), ["account_id", "completed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_account_id_id"), ["account_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_runs_account_id_run_type_id"), ["account_id", "run_type", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_account_id_started_at"), ["account_id", "started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_account_id_status_id"), ["account_id", "status", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_operation_id_id"), ["operation_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_runs_status_cancel_requested_at"), ["status", "cancel_requested_at"], unique=False
        )
        batch_op.create_index(
            "uq_runs_one_active_per_operation",
            ["operation_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('canceling', 'running', 'waiting_to_start')"),
            postgresql_where=sa.text("status IN ('canceling', 'running', 'waiting_to_start')"),
        )

    op.create_table(
        "data_loads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tables", runyard.store.types.json_type(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_data_loads_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_data_loads_operation_id_operations")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_data_loads_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_loads")),
        sa.UniqueConstraint("run_id", name=op.f("uq_data_loads_run_id")),
    )
    with op.batch_alter_table("data_loads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_loads_account_id_id"), ["account_id", "id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("stage", sa.String(length=30), nullable=False),
        sa.Column("metrics_type", sa.String(length=20), nullable=False),
        sa.Column("executor", sa.String(length=50), nullable=False),
        sa.Column("params", runyard.store.types.json_type(), nullable=False),
        sa.Column("table_name", sa.String(length=300), nullable=True),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("reusable", sa.Boolean(), nullable=False),
        sa.Column("reused_from", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("ready_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("started_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("records_processed", sa.BigInteger(), nullable=False),
        sa.Column("last_record_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("latency_ms_last", sa.Float(), nullable=True),
        sa.Column("latency_ms_min", sa.Float(), nullable=True),
        sa.Column("latency_ms_max", sa.Float(), nullable=True),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reused_from"], ["tasks.id"], name=op.f("fk_tasks_reused_from_tasks")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_tasks_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_tasks_run_id_name")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tasks_status_lease_expires_at"), ["status", "lease_expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tasks_status_ready_at"), ["status", "ready_at"], unique=False)

    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_events_run_id_runs")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_run_events_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
    )
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_events_run_id_id"), ["run_id", "id"], unique=False)

    op.create_table(
        "task_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("started_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", runyard.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_attempts_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_attempts")),
        sa.UniqueConstraint("task_id", "attempt", name=op.f("uq_task_attempts_task_id_attempt")),
    )
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("upstream_id", sa.Integer(), nullable=False),
        sa.Column("soft", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_dependencies_task_id_tasks")),
        sa.ForeignKeyConstraint(["upstream_id"], ["tasks.id"], name=op.f("fk_task_dependencies_upstream_id_tasks")),
        sa.PrimaryKeyConstraint("task_id", "upstream_id", name=op.f("pk_task_dependencies")),
    )
    op.create_table(
        "task_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", runyard.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_task_messages_run_id_runs")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_messages_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_messages")),
    )
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_messages_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_messages_task_id"), ["task_id"], unique=False)

    op.create_table(
        "task_tables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=300), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_task_tables_run_id_runs")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_tables_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_tables")),
        sa.UniqueConstraint("task_id", "table_name", name=op.f("uq_task_tables_task_id_table_name")),
    )
    with op.batch_alter_table("task_tables", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_tables_run_id"), ["run_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("task_tables", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_tables_run_id"))

    op.drop_table("task_tables")
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_messages_task_id"))
        batch_op.drop_index(batch_op.f("ix_task_messages_run_id"))

    op.drop_table("task_messages")
    op.drop_table("task_dependencies")
    op.drop_table("task_attempts")
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_events_run_id_id"))

    op.drop_table("run_events")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_status_ready_at"))
        batch_op.drop_index(batch_op.f("ix_tasks_status_lease_expires_at"))

    op.drop_table("tasks")
    with op.batch_alter_table("data_loads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_loads_account_id_id"))

    op.drop_table("data_loads")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_runs_one_active_per_operation",
            sqlite_where=sa.text("status IN ('canceling', 'running', 'waiting_to_start')"),
            postgresql_where=sa.text("status IN ('canceling', 'running', 'waiting_to_start')"),
        )
        batch_op.drop_index(batch_op.f("ix_runs_status_cancel_requested_at"))
        batch_op.drop_index(batch_op.f("ix_runs_operation_id_id"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_status_id"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_started_at"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_run_type_id"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_id"))
        batch_op.drop_index(batch_op.f("ix_runs_account_id_completed_at"))

    op.drop_table("runs")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_tokens_account_id"))

    op.drop_table("api_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_account_id"))

    op.drop_table("users")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations_account_id_configuration_id"))

    op.drop_table("operations")
    op.drop_table("accounts")
