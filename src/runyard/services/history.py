"""Append to a run's history in the same transaction as the change it describes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from runyard.store.tables import run_events, runs, task_attempts, task_messages, tasks


def record_event(
    conn: Connection,
    run_id: int,
    kind: str,
    now: datetime,
    *,
    task_id: int | None = None,
    status: str | None = None,
    detail: str = "",
) -> None:
    conn.execute(
        run_events.insert().values(
            run_id=run_id, task_id=task_id, kind=kind, status=status, detail=detail, created_at=now
        )
    )


def add_message(conn: Connection, run_id: int, task_id: int, level: str, text: str, now: datetime) -> None:
    """A message on a task; the run's and the task's message counts follow in the same transaction."""
    conn.execute(task_messages.insert().values(run_id=run_id, task_id=task_id, level=level, text=text, created_at=now))
    conn.execute(runs.update().where(runs.c.id == run_id).values(message_count=runs.c.message_count + 1))
    conn.execute(tasks.update().where(tasks.c.id == task_id).values(message_count=tasks.c.message_count + 1))


def close_attempt(conn: Connection, task_id: int, attempt: int, outcome: str, now: datetime) -> None:
    """End an attempt in the execution log (one row per task and attempt)."""
    conn.execute(
        task_attempts.update()
        .where(
            task_attempts.c.task_id == task_id, task_attempts.c.attempt == attempt, task_attempts.c.ended_at.is_(None)
        )
        .values(ended_at=now, outcome=outcome)
    )
