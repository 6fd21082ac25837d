"""Real-time metrics of running tasks (spec 001): records, rates and latencies, and their one-line summary.

What each metrics type's latency measures: extract, the time a source page took to arrive; load, the time
the warehouse took to load (the Data Load's commit, an ingestion's staging); stream, the delay from the
source's change to its load; hwm, the time reading the watermark took.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import TaskStatus
from runyard.store.tables import accounts, runs, tasks, users

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


class LastChecks:
    """What each caller saw last time, so `recordsProcessedSinceLastCheck` means what it says."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def since_last(self, caller: int, task_id: int, records: int) -> int:
        with self._lock:
            previous = self._seen.get((caller, task_id), 0)
            self._seen[(caller, task_id)] = records
            if len(self._seen) > 100_000:  # a bound, not a cache policy: forget everything
                self._seen.clear()
        return max(0, records - previous)


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
