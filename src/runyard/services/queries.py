"""Lists of runs and tasks, filtered and sorted by allow-listed columns only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.errors import InvalidInput
from runyard.services.runs import RUN_COLUMNS
from runyard.services.views import RunView, TaskMessage, TaskView
from runyard.store.tables import operations, runs, task_messages, task_tables, tasks

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
    tables: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for row in conn.execute(
        sa.select(task_tables.c.task_id, task_tables.c.table_name, task_tables.c.record_count)
        .where(task_tables.c.run_id == run_id)
        .order_by(task_tables.c.id)
    ):
        tables[row.task_id].append((row.table_name, int(row.record_count)))
    messages: dict[int, list[TaskMessage]] = defaultdict(list)
    for row in conn.execute(
        sa.select(task_messages).where(task_messages.c.run_id == run_id).order_by(task_messages.c.id)
    ):
        messages[row.task_id].append(TaskMessage(row.level, row.text, row.created_at))
    rows = conn.execute(sa.select(tasks).where(tasks.c.run_id == run_id).order_by(tasks.c.position))
    return [
        TaskView(
            id=row.id,
            run_id=row.run_id,
            position=row.position,
            name=row.name,
            stage=row.stage,
            metrics_type=row.metrics_type,
            status=TaskStatus(row.status),
            attempt=row.attempt,
            worker_id=row.worker_id,
            started_at=row.started_at,
            completed_at=row.completed_at,
            records_processed=int(row.records_processed),
            reused_from=row.reused_from,
            tables=tuple(tables[row.id]),
            messages=tuple(messages[row.id]),
        )
        for row in rows
    ]
