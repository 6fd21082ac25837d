"""Real-time metrics of running tasks (spec 001): records, rates and latencies, and their one-line summary.

What each metrics type's latency measures: extract, the time a source page took to arrive; load, the time
the warehouse took to load (the Data Load's commit, an ingestion's staging); stream, the delay from the
source's change to its load; hwm, the time reading the watermark took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from runyard.domain.statuses import TaskStatus
from runyard.store import dialect
from runyard.store.tables import accounts, metrics_last_checks, runs, tasks, users

METRICS_TYPES = ("stream", "extract", "load", "task", "hwm")


@dataclass(frozen=True)
class RunningTask:
    task_id: int
    run_id: int
    run_key: str
    name: str
    metrics_type: str
    account: str
    owner: str
    started_at: datetime
    records: int
    last_record_at: datetime | None
    latency_last: float | None
    latency_min: float | None
    latency_max: float | None
    latency_avg: float | None
    note: str | None = None


def running_tasks(
    conn: Connection, account_id: int, *, run_id: int | None = None, metrics_type: str | None = None
) -> list[RunningTask]:
    query = (
        sa.select(
            tasks,
            runs.c.run_key,
            accounts.c.name.label("account"),
            sa.func.coalesce(users.c.login, "runyard").label("owner"),
        )
        .join(runs, runs.c.id == tasks.c.run_id)
        .join(accounts, accounts.c.id == runs.c.account_id)
        .outerjoin(users, users.c.id == runs.c.created_by)
        .where(runs.c.account_id == account_id, tasks.c.status == TaskStatus.RUNNING.value)
        .order_by(tasks.c.id)
    )
    if run_id is not None:
        query = query.where(tasks.c.run_id == run_id)
    if metrics_type is not None:
        query = query.where(tasks.c.metrics_type == metrics_type)
    return [_running(row) for row in conn.execute(query)]


def _running(row: Any) -> RunningTask:
    average = row.latency_ms_sum / row.latency_count if row.latency_count else None
    return RunningTask(
        task_id=row.id,
        run_id=row.run_id,
        run_key=row.run_key,
        name=row.name,
        metrics_type=row.metrics_type,
        account=row.account,
        owner=row.owner,
        started_at=row.started_at or row.claimed_at,
        records=int(row.records_processed),
        last_record_at=row.last_record_at,
        latency_last=row.latency_ms_last,
        latency_min=row.latency_ms_min,
        latency_max=row.latency_ms_max,
        latency_avg=average,
        note=row.metrics_note,
    )


# --- recordsProcessedSinceLastCheck, per user across processes ----------------------------------------------------
#
# Each check remembers, per user and task, the recordsProcessed it showed (the store's metrics_last_checks), so the
# next check by the same user counts from there whichever HTTP process or server answers it. A user's first check of
# a task counts every record of it so far: spec 001 names no other starting point than the last check, and before
# the first one there is none, so the records since the task started are all "since the last check" (the sum of a
# user's since-last-check values over their checks is then the task's recordsProcessed). Records of a new attempt
# start again from 0: a check that sees fewer records than the last one reports 0 and counts from there.

#: A user's rows of tasks whose runs ended this long ago are deleted at that user's next check. A run that ended
#: never runs its tasks again, so their rows are never read again; the margin keeps the rows a check writes (tasks
#: it saw running) out of the ones it deletes.
FORGET_AFTER = timedelta(days=1)
_ROWS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit, four per row


@dataclass(frozen=True)
class CheckedTask:
    task: RunningTask
    records_since_last_check: int


def check_running(
    conn: Connection,
    user_id: int,
    account_id: int,
    *,
    run_id: int | None = None,
    metrics_type: str | None = None,
) -> list[CheckedTask]:
    """The account's running tasks (`running_tasks`) as `user_id`'s check sees them, inside the caller's write
    transaction: the records each processed since this user's previous check of it, in any process. Remembers what
    this check showed (one statement per 500 tasks) and forgets the user's tasks of runs ended over a day ago.

    The user's checks are one at a time (a lock per user, on PostgreSQL; SQLite has one writer), so two concurrent
    checks never both report the same records."""
    dialect.lock_names(conn, [f"metrics-last-check:{user_id}"])
    now = dialect.database_now(conn)
    found = running_tasks(conn, account_id, run_id=run_id, metrics_type=metrics_type)
    _forget_ended(conn, user_id, now)
    if not found:
        return []
    previous = _last_seen(conn, user_id, [task.task_id for task in found])
    _remember(conn, user_id, {task.task_id: task.records for task in found}, now)
    return [CheckedTask(task, since_last(previous.get(task.task_id), task.records)) for task in found]


def since_last(previous: int | None, records: int) -> int:
    """Records since the last check that showed `previous` (None: no check yet, so every record so far)."""
    if previous is None:
        return records
    return max(0, records - previous)


def _last_seen(conn: Connection, user_id: int, task_ids: list[int]) -> dict[int, int]:
    seen: dict[int, int] = {}
    table = metrics_last_checks
    for start in range(0, len(task_ids), _ROWS_PER_STATEMENT):
        chunk = task_ids[start : start + _ROWS_PER_STATEMENT]
        rows = conn.execute(
            sa.select(table.c.task_id, table.c.records_seen).where(
                table.c.user_id == user_id, table.c.task_id.in_(chunk)
            )
        )
        seen.update({int(row.task_id): int(row.records_seen) for row in rows})
    return seen


def _remember(conn: Connection, user_id: int, records: dict[int, int], now: datetime) -> None:
    """Upsert (user, task) -> records, in task order (PostgreSQL locks the rows in the order written)."""
    rows = [
        {"user_id": user_id, "task_id": task_id, "records_seen": records[task_id], "checked_at": now}
        for task_id in sorted(records)
    ]
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        conn.execute(_upsert(conn, rows[start : start + _ROWS_PER_STATEMENT]))


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (user_id, task_id) DO UPDATE, one statement for all `rows` (both dialects spell it
    alike; SQLAlchemy has one construct per dialect)."""
    insert = postgresql.insert if dialect.is_postgresql(conn) else sqlite.insert
    statement = insert(metrics_last_checks).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[metrics_last_checks.c.user_id, metrics_last_checks.c.task_id],
        set_={"records_seen": statement.excluded.records_seen, "checked_at": statement.excluded.checked_at},
    )


def _forget_ended(conn: Connection, user_id: int, now: datetime) -> None:
    """Delete the user's rows of tasks whose runs ended more than FORGET_AFTER ago."""
    table = metrics_last_checks
    ended = (
        sa.select(tasks.c.id)
        .join(runs, runs.c.id == tasks.c.run_id)
        .where(tasks.c.id == table.c.task_id, runs.c.completed_at < now - FORGET_AFTER)
        .exists()
    )
    conn.execute(table.delete().where(table.c.user_id == user_id, ended))


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def now_utc() -> datetime:
    return datetime.now(UTC)


def rate_per_second(records: int, started_at: datetime | None, now: datetime) -> float:
    """Records per second since the task started (0 before its first second has a start to count from)."""
    if started_at is None or not records:
        return 0.0
    return records / max((now - started_at).total_seconds(), 0.001)


def code_summary(task: RunningTask, now: datetime) -> str:
    """Spec 001's `code` for a running task."""
    rate = rate_per_second(task.records, task.started_at, now)
    return summary(task.metrics_type, task.records, rate, task.latency_last, task.note)


def summary(metrics_type: str, records: int, rate: float, latency_ms: float | None, note: str | None) -> str:
    """One line a data admin reads at a glance: what the task does, how much, how fast, how late."""
    if metrics_type == "hwm":
        return f"High watermark: {note or 'reading the stored value'}"
    if metrics_type == "load" and note:
        took = "" if latency_ms is None else f" in {format_latency(latency_ms)}"
        return f"Loading: {note}{took}"
    verb, unit, latency_label = _WORDS.get(metrics_type, _WORDS["task"])
    parts = [f"{records:,} {unit}", format_rate(rate)]
    if latency_ms is not None:
        seconds = metrics_type == "stream"
        parts.append(f"{latency_label} {format_latency(latency_ms, seconds=seconds)}".lstrip())
    if note:
        parts.append(note)
    return f"{verb}: {', '.join(parts)}"


#: metrics type -> (what the task is doing, what it counts, what its latency is called)
_WORDS = {
    "extract": ("Extracting", "records", "page latency"),
    "load": ("Loading", "records", "load latency"),
    "stream": ("Streaming", "changes", "latency"),
    "task": ("Running", "records", "latency"),
}


def format_rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s" if per_second >= 10 or per_second == 0 else f"{per_second:.1f}/s"


def format_latency(milliseconds: float, *, seconds: bool = False) -> str:
    """42 ms below a second; 1.3 s above (or always in seconds, as a stream's delay reads best)."""
    if seconds or milliseconds >= 1000:
        return f"{milliseconds / 1000:,.1f} s"
    return f"{milliseconds:,.0f} ms"
