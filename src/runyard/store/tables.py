"""The store's tables. Status columns hold the snake_case values of runyard.domain.statuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from runyard.domain.search import fold_case
from runyard.domain.statuses import RUN_ACTIVE
from runyard.store.types import UtcDateTime, json_type

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_ACTIVE_VALUES = ", ".join(f"'{s.value}'" for s in sorted(RUN_ACTIVE))
_ACTIVE_CLAUSE = sa.text(f"status IN ({_ACTIVE_VALUES})")


def _folded(source: str) -> Callable[[DefaultExecutionContext], str]:
    """An insert default: fold_case() of the row's `source` column, so that every writer keeps the search copy."""

    def folded(context: DefaultExecutionContext) -> str:
        parameters: dict[str, Any] = context.get_current_parameters()  # type: ignore[no-untyped-call]
        return fold_case(parameters[source])

    return folded


def _search_copy(source: str) -> sa.Column[str]:
    """`<source>_lower`: the text the task search matches with LIKE (runyard.domain.search, migration 0008).

    Filled on insert from `source`, which runyard never updates. Text, not a bounded string: lowercasing can
    lengthen a string ("İ" becomes two characters).
    """
    return sa.Column(f"{source}_lower", sa.Text, nullable=False, server_default="", default=_folded(source))


class SecondsBetween(FunctionElement[float]):
    """`end - start` in seconds (NULL when either is NULL): runs.duration_seconds and the tasks' duration sort."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(SecondsBetween, "sqlite")
def _seconds_between_sqlite(element: SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    # Exact to the microsecond, as the API shows it (julianday() keeps milliseconds): whole seconds and
    # microseconds subtracted as integers. SQLAlchemy stores SQLite times as 'YYYY-MM-DD HH:MM:SS.ffffff'.
    seconds = f"(CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER)) * 1000000"
    micros = f"CAST(substr({end}, 21, 6) AS INTEGER) - CAST(substr({start}, 21, 6) AS INTEGER)"
    return f"({seconds} + {micros}) / 1000000.0"


@compiles(SecondsBetween)
def _seconds_between_default(element: SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


#: What follows the sort key in the runs page's sort indexes: the tie-breaker, then the filtered columns.
_SORT_INDEX_TAIL = ("id", "operation_id", "status", "run_type")


def _created() -> sa.Column[object]:
    return sa.Column("created_at", UtcDateTime(), nullable=False)


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    _created(),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("login", sa.String(200), nullable=False, unique=True),  # unique across accounts
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    _created(),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the secret
    sa.Column("prefix", sa.String(12), nullable=False),  # shown in lists so people can tell tokens apart
    _created(),
    sa.Column("last_used_at", UtcDateTime()),
    sa.Column("revoked_at", UtcDateTime()),
)

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("environment", sa.String(50), nullable=False),
    sa.Column("configuration_type", sa.String(50), nullable=False),
    sa.Column("configuration_id", sa.String(300), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("spec", json_type(), nullable=False),
    sa.Column("activated", sa.Boolean, nullable=False, default=True),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("schedule", sa.String(100)),
    _created(),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "environment", "configuration_type", "configuration_id"),
    sa.Index(None, "account_id", "configuration_id"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("operation_id", sa.ForeignKey("operations.id"), nullable=False),
    sa.Column("run_key", sa.String(64), nullable=False, unique=True),
    sa.Column("job_name", sa.String(400), nullable=False, unique=True),
    sa.Column("run_type", sa.String(20), nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("retry_of", sa.ForeignKey("runs.id")),
    sa.Column("blocked_by", sa.ForeignKey("runs.id")),  # the active run that got this one rejected
    sa.Column("execution_date", sa.Date),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.ForeignKey("users.id")),
    _created(),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("cancel_requested_at", UtcDateTime()),
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),  # kept by add_message
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # completed_at - started_at, computed by the database so that the Duration column sorts by an index.
    # Migration 0004 makes it STORED on PostgreSQL and VIRTUAL on SQLite (whose ALTER TABLE cannot add a
    # stored one); the index on it holds the values either way.
    sa.Column(
        "duration_seconds",
        sa.Float,
        sa.Computed(SecondsBetween(sa.column("started_at"), sa.column("completed_at")), persisted=True),
    ),
    # The one-active-run rule, enforced by the database whatever the application does.
    sa.Index(
        "uq_runs_one_active_per_operation",
        "operation_id",
        unique=True,
        sqlite_where=_ACTIVE_CLAUSE,
        postgresql_where=_ACTIVE_CLAUSE,
    ),
    # The API Runs page: filters by operation, status, type, and any mix of them. (The 0004 pair was added to
    # count totals within an index; run_counts answers those now, except under time bounds.)
    sa.Index(None, "account_id", "id"),
    sa.Index(None, "operation_id", "id"),
    sa.Index(None, "account_id", "status", "id"),
    sa.Index(None, "account_id", "run_type", "id"),
    sa.Index(None, "account_id", "operation_id", "status", "run_type"),  # migration 0004
    sa.Index(None, "account_id", "status", "run_type"),  # migration 0004
    # Sorts by time, message count and duration (migrations 0002, 0004, 0005): after the sort key, each index
    # has the tie-breaker id, then the filtered columns, so that walking it in order skips the runs the
    # filters reject without reading them.
    sa.Index("ix_runs_account_id_started_at", "account_id", "started_at", *_SORT_INDEX_TAIL),
    sa.Index("ix_runs_account_id_completed_at", "account_id", "completed_at", *_SORT_INDEX_TAIL),
    sa.Index("ix_runs_account_id_created_at", "account_id", "created_at", *_SORT_INDEX_TAIL),
    sa.Index("ix_runs_account_id_message_count", "account_id", "message_count", *_SORT_INDEX_TAIL),
    sa.Index("ix_runs_duration_sort", "account_id", "duration_seconds", *_SORT_INDEX_TAIL),
    sa.Index(None, "status", "cancel_requested_at"),
)

# How many runs each (account, operation, status, type) has: the API Runs page's totals, read from a few rows
# instead of counted over the runs. Kept by database triggers on runs (migration 0007), so every writer of runs
# keeps it right. (On SQLite a batch migration that copies the runs table drops its triggers: such a migration
# must create them again; tests/integration/test_run_counts.py fails if they are missing.)
run_counts = sa.Table(
    "run_counts",
    metadata,
    sa.Column("account_id", sa.Integer, primary_key=True),
    sa.Column("operation_id", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(30), primary_key=True),
    sa.Column("run_type", sa.String(20), primary_key=True),
    sa.Column("runs", sa.Integer, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # order in the plan
    sa.Column("name", sa.String(300), nullable=False),
    # runyard.domain.search.initials(name): the acronym the API Run Details search matches (migration 0002).
    sa.Column("initials", sa.String(100), nullable=False, server_default=""),
    _search_copy("name"),
    sa.Column("stage", sa.String(30), nullable=False),
    sa.Column("metrics_type", sa.String(20), nullable=False),
    sa.Column("executor", sa.String(50), nullable=False),
    sa.Column("params", json_type(), nullable=False),
    sa.Column("table_name", sa.String(300)),
    sa.Column("required", sa.Boolean, nullable=False, default=True),
    sa.Column("reusable", sa.Boolean, nullable=False, default=False),
    sa.Column("reused_from", sa.ForeignKey("tasks.id")),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("ready_at", UtcDateTime()),  # set once its dependencies allow it to be claimed
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=3),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_expires_at", UtcDateTime()),
    sa.Column("claimed_at", UtcDateTime()),
    sa.Column("heartbeat_at", UtcDateTime()),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("records_processed", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_processed", sa.BigInteger, nullable=False, default=0, server_default="0"),  # migration 0009
    sa.Column("last_record_at", UtcDateTime()),
    sa.Column("latency_ms_last", sa.Float),
    sa.Column("latency_ms_min", sa.Float),
    sa.Column("latency_ms_max", sa.Float),
    sa.Column("latency_ms_sum", sa.Float, nullable=False, default=0.0),
    sa.Column("latency_count", sa.Integer, nullable=False, default=0),
    sa.Column("metrics_note", sa.String(200)),  # the running task's own words on where it is (migration 0012)
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),  # kept by add_message
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("run_id", "name"),
    sa.Index(None, "status", "ready_at"),  # the claim query
    sa.Index(None, "status", "lease_expires_at"),  # the lease sweep
    # The API Run Details page: a run's tasks in plan order. Its task search reads the run's ids, initials, names
    # and statuses from this index alone, not from the wide rows (migrations 0006 and 0008).
    sa.Index("ix_tasks_run_id_position", "run_id", "position", "id", "initials", "name_lower", "status"),
    sa.Index(None, "run_id", "status"),  # ... filtered or sorted by status
)

task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("upstream_id", sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("soft", sa.Boolean, nullable=False, default=False),
)

task_tables = sa.Table(
    "task_tables",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("table_name", sa.String(300), nullable=False),
    _search_copy("table_name"),
    sa.Column("record_count", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("task_id", "table_name"),
    sa.Index("ix_task_tables_run_id", "run_id", "table_name_lower", "task_id"),  # the task search, from the index
)

task_messages = sa.Table(
    "task_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("tasks.id"), nullable=False, index=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("level", sa.String(10), nullable=False),  # info, warning, error
    sa.Column("text", sa.Text, nullable=False),
    _search_copy("text"),
    _created(),
)

# One row per (task, attempt): the execution log that shows nothing ran twice.
task_attempts = sa.Table(
    "task_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime()),
    sa.Column("outcome", sa.String(30)),
    sa.UniqueConstraint("task_id", "attempt"),
)

# Appended in the same transaction as every status change: the history of a run.
run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("task_id", sa.ForeignKey("tasks.id")),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("status", sa.String(30)),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    _created(),
    sa.Index(None, "run_id", "id"),
)

data_loads = sa.Table(
    "data_loads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("operation_id", sa.ForeignKey("operations.id"), nullable=False),
    sa.Column("run_id", sa.ForeignKey("runs.id"), nullable=False, unique=True),
    sa.Column("tables", json_type(), nullable=False),  # [{"name": ..., "rows": ...}]
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    _created(),
    sa.Index(None, "account_id", "id"),
)

# A workflow's upstream jobs (by identity: the upstream may be deployed after the workflow), each with the
# successes counted since the workflow last triggered its target (migration 0010).
workflow_upstreams = sa.Table(
    "workflow_upstreams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workflow_id", sa.ForeignKey("operations.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("environment", sa.String(50), nullable=False),
    sa.Column("configuration_type", sa.String(50), nullable=False),
    sa.Column("configuration_id", sa.String(300), nullable=False),
    sa.Column("successes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_success_at", UtcDateTime()),
    sa.Column("last_success_run_id", sa.ForeignKey("runs.id")),
    sa.UniqueConstraint("workflow_id", "position"),
    sa.Index("ix_workflow_upstreams_upstream", "account_id", "configuration_id", "environment", "configuration_type"),
)

# Per workflow: a counted success not evaluated yet (`pending`), and its last trigger.
workflow_states = sa.Table(
    "workflow_states",
    metadata,
    sa.Column("workflow_id", sa.ForeignKey("operations.id"), primary_key=True),
    sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_triggered_at", UtcDateTime()),
    sa.Column("last_trigger_run_id", sa.ForeignKey("runs.id")),
    sa.Column("reset_at", UtcDateTime()),
    sa.Index("ix_workflow_states_pending", "pending"),
)

# Per scheduled operation: the last cron tick handled (fired, rejected or skipped), whichever process led.
operation_schedules = sa.Table(
    "operation_schedules",
    metadata,
    sa.Column("operation_id", sa.ForeignKey("operations.id"), primary_key=True),
    sa.Column("last_tick_at", UtcDateTime()),
    sa.Column("last_run_id", sa.ForeignKey("runs.id")),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# An export session of spec 004 (BI Views v2): one continuation token, its queue (runyard.domain.exports) and
# how far the background export has cached its pages in staging.
export_sessions = sa.Table(
    "export_sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("user_id", sa.ForeignKey("users.id")),
    sa.Column("object_name", sa.String(300), nullable=False),
    sa.Column("from_date", sa.String(30)),
    sa.Column("to_date", sa.String(30)),
    sa.Column("page_size", sa.Integer, nullable=False),
    sa.Column("output_type", sa.String(10), nullable=False),
    sa.Column("queue", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("accumulate", sa.BigInteger, nullable=False, default=0),
    sa.Column("metric", sa.Integer),
    sa.Column("pages_cached", sa.Integer, nullable=False, default=0),
    sa.Column("total_pages", sa.Integer),
    sa.Column("total_rows", sa.BigInteger),
    sa.Column("initiated_at", UtcDateTime(), nullable=False),
    sa.Column("last_activity", UtcDateTime(), nullable=False),
    sa.Column("queue_since", UtcDateTime(), nullable=False),
    sa.Index("ix_export_sessions_account_id_queue", "account_id", "queue"),
)

_OPEN_ALERT_CLAUSE = sa.text("resolved_at IS NULL")

# An alert (runyard.domain.alerts): something about an operation's runs a data admin should hear of. One row per
# episode: it opens, carries its evidence, and resolves by itself (resolved_at); an administrator may silence it
# until a time. `key` names the episode (a run's alert: its run; an overdue source: its operation), and at most one
# open alert has a key within an operation (the partial unique index), so evaluating twice opens nothing twice.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("operation_id", sa.ForeignKey("operations.id"), nullable=False),
    sa.Column("run_id", sa.ForeignKey("runs.id")),
    sa.Column("run_type", sa.String(20)),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("key", sa.String(100), nullable=False),
    sa.Column("summary", sa.String(300), nullable=False),
    sa.Column("evidence", sa.Text, nullable=False, default=""),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("resolution", sa.String(300)),
    sa.Column("silenced_until", UtcDateTime()),
    sa.Column("silenced_by", sa.ForeignKey("users.id")),
    sa.Index(
        "uq_alerts_one_open_per_key",
        "operation_id",
        "key",
        unique=True,
        sqlite_where=_OPEN_ALERT_CLAUSE,
        postgresql_where=_OPEN_ALERT_CLAUSE,
    ),
    sa.Index(None, "account_id", "resolved_at", "id"),
    sa.Index(None, "account_id", "id"),
    sa.Index(None, "run_id"),
)

# Where an account's notifications go: a webhook (JSON that Slack and Microsoft Teams incoming webhooks accept) or
# email over SMTP. `target` is the webhook URL or the comma-separated addresses; a webhook URL is a secret (it
# carries the receiver's token) and never leaves the store whole.
notification_channels = sa.Table(
    "notification_channels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    _created(),
    sa.UniqueConstraint("account_id", "name"),
)

# Which alerts go to which channel: alert kinds (JSON list; null: every kind) and, optionally, one operation.
notification_rules = sa.Table(
    "notification_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("channel_id", sa.ForeignKey("notification_channels.id"), nullable=False),
    sa.Column("kinds", json_type()),
    sa.Column("operation_id", sa.ForeignKey("operations.id")),
    sa.Column("notify_resolved", sa.Boolean, nullable=False, default=True),
    _created(),
    sa.Index(None, "account_id"),
)

# One notification to send: an alert's event (opened or resolved) for one channel. Unique per (alert, channel,
# event), so an event is delivered once however often it is enqueued; retried with backoff until sent or given up.
notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("alert_id", sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("channel_id", sa.ForeignKey("notification_channels.id"), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime()),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", UtcDateTime()),
    _created(),
    sa.UniqueConstraint("alert_id", "channel_id", "event"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "account_id", "id"),
)

# A sign-in that has not succeeded: a failure, or one whose password is being checked (migration 0014). Keys are
# sha256 hex of the login and of the client address: the store never keeps what was typed as a login (sometimes a
# password). Counted per key in a sliding window (runyard.services.sign_in_limits); a success deletes its login's.
sign_in_attempts = sa.Table(
    "sign_in_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("login_key", sa.String(64), nullable=False),
    sa.Column("address_key", sa.String(64), nullable=False),
    sa.Column("attempted_at", UtcDateTime(), nullable=False),
    sa.Index(None, "login_key", "attempted_at"),
    sa.Index(None, "address_key", "attempted_at"),
    sa.Index(None, "attempted_at"),
)

# UI sessions signed out before they expired (sha256 hex of the cookie's nonce), refused until their expiry.
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("nonce_key", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Index(None, "expires_at"),
)

# SQL Explorer queries and export starts, one row each, counted per account in a sliding window
# (runyard.services.account_limits); an account's rows past the window are deleted as its new ones come.
rate_limit_events = sa.Table(
    "rate_limit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("account_id", sa.Integer, nullable=False),
    sa.Column("happened_at", UtcDateTime(), nullable=False),
    sa.Index(None, "kind", "account_id", "happened_at"),
)

# Spec 001's last check per user and task (migration 0016): the recordsProcessed the user's previous check showed,
# so recordsProcessedSinceLastCheck is the same whichever process answers (runyard.services.metrics.check_running).
# A user's rows of tasks whose runs ended more than a day ago are deleted at that user's next check.
metrics_last_checks = sa.Table(
    "metrics_last_checks",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.Integer, primary_key=True),
    sa.Column("records_seen", sa.BigInteger, nullable=False),
    sa.Column("checked_at", UtcDateTime(), nullable=False),
)

# An Idempotency-Key a client sent with a launch or a retry (migration 0017, runyard.services.launch_keys): the run
# that request made, so the same request sent again, because its answer was lost, answers that run instead of making
# another. An account's keys older than launch_keys.KEY_TTL are deleted when it stores a new one.
launch_keys = sa.Table(
    "launch_keys",
    metadata,
    sa.Column("account_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request", sa.String(200), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_launch_keys_account_id_created_at", "account_id", "created_at"),
)
