"""What needs a data admin's attention: open alerts with their evidence, sources whose latest run Failed or was
Canceled, and stalled tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.alerts import Alert, AlertState
from runyard.domain.statuses import RUN_RETRYABLE, TaskStatus
from runyard.services.alerts import alerts_by_run, list_alerts
from runyard.services.sources import latest_run_ids, runs_by_id
from runyard.services.views import RunView
from runyard.store.tables import operations, runs, task_messages, tasks


@dataclass(frozen=True)
class AttentionItem:
    run: RunView  # the most recent run of its source, Failed or Canceled
    failing_task: str | None  # the first task (in plan order) that failed, if any did
    first_message: str | None  # that task's first message, else the run's own message


@dataclass(frozen=True)
class StalledTask:
    run_id: int
    configuration_id: str
    task_id: int
    task_name: str
    records_processed: int
    quiet_since: datetime
    quiet_seconds: float


OPEN_ALERTS_SHOWN = 50


@dataclass(frozen=True)
class AttentionAlerts:
    open: list[Alert]  # the account's open (not silenced) alerts, newest first, at most OPEN_ALERTS_SHOWN
    open_total: int  # how many are open in all
    by_run: dict[int, list[Alert]]  # for the failing sources' latest runs: the alerts raised about each


def attention_alerts(conn: Connection, account_id: int, items: list[AttentionItem], now: datetime) -> AttentionAlerts:
    """The alerts Needs attention shows: the open ones, and those of each failing source's latest run."""
    found, total = list_alerts(conn, account_id, now=now, state=AlertState.OPEN, page_size=OPEN_ALERTS_SHOWN)
    by_run = alerts_by_run(conn, [item.run.id for item in items], now)  # items are the account's own runs
    return AttentionAlerts(open=found, open_total=total, by_run=by_run)


def needs_attention(conn: Connection, account_id: int) -> list[AttentionItem]:
    """Sources whose most recent run (Rejected ones aside) Failed or was Canceled, newest run first."""
    latest = runs_by_id(conn, latest_run_ids(conn, account_id).values())
    failing = [run for run in latest.values() if run.status in RUN_RETRYABLE]
    failing.sort(key=lambda run: run.id, reverse=True)
    return [_item(conn, run) for run in failing]


def _item(conn: Connection, run: RunView) -> AttentionItem:
    failing_task, message = first_failure(conn, run.id)
    return AttentionItem(run=run, failing_task=failing_task, first_message=message or run.message or None)


def first_failure(conn: Connection, run_id: int) -> tuple[str | None, str | None]:
    """The run's first failed task (in plan order) and that task's first message, when there are."""
    task = conn.execute(
        sa.select(tasks.c.id, tasks.c.name)
        .where(tasks.c.run_id == run_id, tasks.c.status == TaskStatus.FAILED.value)
        .order_by(tasks.c.position, tasks.c.id)
        .limit(1)
    ).first()
    if task is None:
        return None, None
    message = conn.execute(
        sa.select(task_messages.c.text).where(task_messages.c.task_id == task.id).order_by(task_messages.c.id).limit(1)
    ).scalar()
    return task.name, message


def stalled_tasks(
    conn: Connection, account_id: int, now: datetime, threshold: timedelta, *, run_id: int | None = None
) -> list[StalledTask]:
    """Running tasks that received no record (or, before the first one, started) at least `threshold` ago."""
    cutoff = now - threshold
    quiet = sa.func.coalesce(tasks.c.last_record_at, tasks.c.started_at)
    query = (
        sa.select(
            tasks.c.id,
            tasks.c.run_id,
            tasks.c.name,
            tasks.c.records_processed,
            tasks.c.started_at,
            tasks.c.last_record_at,
            operations.c.configuration_id,
        )
        .join(runs, runs.c.id == tasks.c.run_id)
        .join(operations, operations.c.id == runs.c.operation_id)
        .where(runs.c.account_id == account_id, tasks.c.status == TaskStatus.RUNNING.value, quiet <= cutoff)
        .order_by(tasks.c.run_id, tasks.c.position)
    )
    if run_id is not None:
        query = query.where(tasks.c.run_id == run_id)
    found = []
    for row in conn.execute(query):
        since = row.last_record_at or row.started_at  # never None: the query compared it with the cutoff
        found.append(
            StalledTask(
                run_id=row.run_id,
                configuration_id=row.configuration_id,
                task_id=row.id,
                task_name=row.name,
                records_processed=int(row.records_processed),
                quiet_since=since,
                quiet_seconds=(now - since).total_seconds(),
            )
        )
    return found
