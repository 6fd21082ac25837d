"""Past run durations of a source, for its run time history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RUN_SUCCEEDED, RunStatus, RunType
from runyard.store.tables import runs

HISTORY_LIMIT = 200


@dataclass(frozen=True)
class RunDuration:
    run_id: int
    run_type: RunType
    status: RunStatus
    started_at: datetime
    completed_at: datetime

    @property
    def seconds(self) -> float:
        return (self.completed_at - self.started_at).total_seconds()


def run_durations(
    conn: Connection, account_id: int, operation_id: int, *, limit: int = HISTORY_LIMIT
) -> list[RunDuration]:
    """The source's last `limit` runs that loaded (Completed, or with Errors), oldest first."""
    rows = conn.execute(
        sa.select(runs.c.id, runs.c.run_type, runs.c.status, runs.c.started_at, runs.c.completed_at)
        .where(
            runs.c.account_id == account_id,
            runs.c.operation_id == operation_id,
            runs.c.status.in_([status.value for status in RUN_SUCCEEDED]),
            runs.c.started_at.is_not(None),
            runs.c.completed_at.is_not(None),
        )
        .order_by(runs.c.id.desc())
        .limit(limit)
    ).all()
    return [
        RunDuration(row.id, RunType(row.run_type), RunStatus(row.status), row.started_at, row.completed_at)
        for row in reversed(rows)
    ]
