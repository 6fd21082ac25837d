"""Runs and tasks as the CLI's embedded mode lists them: every account, straight from the local store.

The API's lists, scoped to the caller's account and paged, are in runyard.services.listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RunStatus, RunType
from runyard.errors import InvalidInput
from runyard.services.listing import messages_of, tables_of, task_view
from runyard.services.runs import RUN_COLUMNS
from runyard.services.views import RunView, TaskView
from runyard.store.tables import operations, runs, tasks

RUN_SORTS: dict[str, Any] = {
    "id": runs.c.id,
    "operation": operations.c.configuration_id,
    "type": runs.c.run_type,
    "status": runs.c.status,
    "started_at": runs.c.started_at,
    "completed_at": runs.c.completed_at,
    "created_at": runs.c.created_at,
}


@dataclass(frozen=True)
class RunFilter:
    account_id: int | None = None
    operation_id: int | None = None
    status: RunStatus | None = None
    run_type: RunType | None = None


def _sort_column(sort: str, allowed: dict[str, Any]) -> Any:
    if sort not in allowed:
        raise InvalidInput("sort", f"cannot sort by '{sort}'; allowed: {', '.join(allowed)}")
    return allowed[sort]


def list_runs(
    conn: Connection,
    where: RunFilter,
    *,
    sort: str = "id",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[RunView], int]:
    column = _sort_column(sort, RUN_SORTS)
    query = sa.select(*RUN_COLUMNS).join(operations, operations.c.id == runs.c.operation_id)
    conditions = []
    if where.account_id is not None:
        conditions.append(runs.c.account_id == where.account_id)
    if where.operation_id is not None:
        conditions.append(runs.c.operation_id == where.operation_id)
    if where.status is not None:
        conditions.append(runs.c.status == where.status.value)
    if where.run_type is not None:
        conditions.append(runs.c.run_type == where.run_type.value)
    order = column.desc() if descending else column.asc()
    rows = conn.execute(
        query.where(*conditions).order_by(order.nulls_last(), runs.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    total = conn.execute(sa.select(sa.func.count()).select_from(runs).where(*conditions)).scalar_one()
    return [RunView.from_row(row) for row in rows], int(total)


def list_tasks(conn: Connection, run_id: int) -> list[TaskView]:
    """Every task of a run, in plan order, with its tables and messages (no account check: local use)."""
    rows = conn.execute(sa.select(tasks).where(tasks.c.run_id == run_id).order_by(tasks.c.position)).all()
    ids = [row.id for row in rows]
    tables, messages = tables_of(conn, ids), messages_of(conn, ids)
    return [task_view(row, tables[row.id], messages[row.id]) for row in rows]
