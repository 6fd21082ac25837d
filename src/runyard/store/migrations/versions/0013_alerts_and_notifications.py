"""alerts and notifications

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 19:00:00.000000

alerts: one row per alert episode (a failed run, a slow run, unusual row counts, an overdue source), open until it
resolves by itself, with its evidence; at most one open alert per operation and key. notification_channels,
notification_rules and notification_deliveries: where an account's alerts are sent, which go where, and each
event's delivery with its attempts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.store.types import UtcDateTime, json_type

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_OPEN = sa.text("resolved_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("run_type", sa.String(length=20), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("opened_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("resolution", sa.String(length=300), nullable=True),
        sa.Column("silenced_until", UtcDateTime(), nullable=True),
        sa.Column("silenced_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_alerts_account_id_accounts")),
        sa.ForeignKeyConstraint(["operation_id"], ["operations.id"], name=op.f("fk_alerts_operation_id_operations")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_alerts_run_id_runs")),
        sa.ForeignKeyConstraint(["silenced_by"], ["users.id"], name=op.f("fk_alerts_silenced_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(
        "uq_alerts_one_open_per_key",
        "alerts",
        ["operation_id", "key"],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )
    op.create_index("ix_alerts_account_id_resolved_at_id", "alerts", ["account_id", "resolved_at", "id"])
    op.create_index("ix_alerts_account_id_id", "alerts", ["account_id", "id"])
    op.create_index("ix_alerts_run_id", "alerts", ["run_id"])

    op.create_table(
        "notification_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notification_channels_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channels")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_notification_channels_account_id_name")),
    )

    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("kinds", json_type(), nullable=True),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("notify_resolved", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notification_rules_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["notification_channels.id"],
            name=op.f("fk_notification_rules_channel_id_notification_channels"),
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name=op.f("fk_notification_rules_operation_id_operations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_rules")),
    )
    op.create_index("ix_notification_rules_account_id", "notification_rules", ["account_id"])

    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notification_deliveries_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notification_deliveries_alert_id_alerts")),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["notification_channels.id"],
            name=op.f("fk_notification_deliveries_channel_id_notification_channels"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "alert_id", "channel_id", "event", name=op.f("uq_notification_deliveries_alert_id_channel_id_event")
        ),
    )
    op.create_index(
        "ix_notification_deliveries_status_next_attempt_at", "notification_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_notification_deliveries_account_id_id", "notification_deliveries", ["account_id", "id"])


def downgrade() -> None:
    op.drop_table("notification_deliveries")
    op.drop_table("notification_rules")
    op.drop_table("notification_channels")
    op.drop_index("ix_alerts_run_id", table_name="alerts")
    op.drop_index("ix_alerts_account_id_id", table_name="alerts")
    op.drop_index("ix_alerts_account_id_resolved_at_id", table_name="alerts")
    op.drop_index("uq_alerts_one_open_per_key", table_name="alerts")
    op.drop_table("alerts")
