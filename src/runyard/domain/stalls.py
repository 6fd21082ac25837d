"""When a running task counts as stalled: no record received for a while."""

from __future__ import annotations

from datetime import datetime, timedelta

from runyard.domain.statuses import TaskStatus


def quiet_since(started_at: datetime | None, last_record_at: datetime | None) -> datetime | None:
    """The moment since which a task has received nothing: its last record, or its start."""
    return last_record_at or started_at


def is_stalled(
    status: TaskStatus,
    started_at: datetime | None,
    last_record_at: datetime | None,
    now: datetime,
    threshold: timedelta,
) -> bool:
    """A Running task whose last record (or start, before any record) is older than `threshold`."""
    since = quiet_since(started_at, last_record_at)
    return status is TaskStatus.RUNNING and since is not None and now - since >= threshold
