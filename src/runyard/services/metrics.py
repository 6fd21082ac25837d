"""Real-time metrics of running tasks (spec 001): records, rates and request latencies."""

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
