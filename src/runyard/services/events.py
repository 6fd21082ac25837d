"""A run's history as a stream: what changed since the last event a client saw."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.store.tables import run_events, tasks


@dataclass(frozen=True)
class RunEvent:
    id: int
    run_id: int
    task_id: int | None
    task_name: str | None
    kind: str
    status: str | None
    detail: str
    created_at: datetime


def events_after(conn: Connection, run_id: int, after: int, limit: int = 500) -> list[RunEvent]:
    rows = conn.execute(
        sa.select(run_events, tasks.c.name.label("task_name"))
        .outerjoin(tasks, tasks.c.id == run_events.c.task_id)
        .where(run_events.c.run_id == run_id, run_events.c.id > after)
        .order_by(run_events.c.id)
        .limit(limit)
    )
    return [
        RunEvent(
            id=row.id,
            run_id=row.run_id,
            task_id=row.task_id,
            task_name=row.task_name,
            kind=row.kind,
            status=row.status,
            detail=row.detail,
            created_at=row.created_at,
        )
        for row in rows
    ]
