"""Write planned tasks into a run: at launch, and when a running task spawns more (a file listing's copies)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.graph import PlannedTask
from runyard.domain.search import initials
from runyard.domain.statuses import TaskStatus
from runyard.errors import ConfigError
from runyard.services.history import add_message
from runyard.store.tables import task_dependencies, tasks


def insert_tasks(
    conn: Connection,
    run_id: int,
    planned: Sequence[PlannedTask],
    now: datetime,
    *,
    reusable: Mapping[str, int] | None = None,
    retry_of: int | None = None,
    after_position: int | None = None,
) -> dict[str, int]:
    """Insert `planned` into run `run_id`; task name -> new task id.

    `reusable`: task name -> the task of run `retry_of` (or earlier) whose output a reusable task takes instead of
    running.
    `after_position`: insert right after the task at that position (later tasks move down), else at the end
    of an empty run. A dependency may name a new task or a task already in the run.
    """
    reusable = reusable or {}
    first = 0 if after_position is None else after_position + 1
    if after_position is not None and planned:
        conn.execute(
            tasks.update()
            .where(tasks.c.run_id == run_id, tasks.c.position >= first)
            .values(position=tasks.c.position + len(planned))
        )
    ids: dict[str, int] = {}
    for offset, task in enumerate(planned):
        reused = reusable.get(task.name) if task.reusable else None
        ids[task.name] = _insert(conn, run_id, first + offset, task, reused, now)
        if reused:
            text = f"Reused the output of task {reused} from run {retry_of}; it was not run again"
            add_message(conn, run_id, ids[task.name], "info", text, now)
    existing = _existing_ids(conn, run_id, planned, ids)
    edges = []
    for task in planned:
        for dependency in task.depends_on:
            upstream = ids.get(dependency.upstream) or existing.get(dependency.upstream)
            if upstream is None:
                raise ConfigError(f"task '{task.name}' depends on '{dependency.upstream}', which is not in the run")
            edges.append({"task_id": ids[task.name], "upstream_id": upstream, "soft": dependency.soft})
    if edges:
        conn.execute(task_dependencies.insert(), edges)
    return ids


def _existing_ids(
    conn: Connection, run_id: int, planned: Sequence[PlannedTask], new: Mapping[str, int]
) -> dict[str, int]:
    wanted = {d.upstream for task in planned for d in task.depends_on if d.upstream not in new}
    if not wanted:
        return {}
    rows = conn.execute(sa.select(tasks.c.name, tasks.c.id).where(tasks.c.run_id == run_id, tasks.c.name.in_(wanted)))
    return {row.name: row.id for row in rows}


def _insert(conn: Connection, run_id: int, position: int, task: PlannedTask, reused: int | None, now: datetime) -> int:
    return int(
        conn.execute(
            tasks.insert()
            .values(
                run_id=run_id,
                position=position,
                name=task.name,
                initials=initials(task.name),
                stage=task.stage,
                metrics_type=task.metrics_type,
                executor=task.executor,
                params=dict(task.params),
                table_name=task.table,
                required=task.required,
                reusable=task.reusable,
                reused_from=reused,
                max_attempts=task.max_attempts,
                attempt=0,
                status=(TaskStatus.COMPLETED if reused else TaskStatus.WAITING_TO_START).value,
                started_at=now if reused else None,
                completed_at=now if reused else None,
                records_processed=0,
                latency_ms_sum=0.0,
                latency_count=0,
                updated_at=now,
            )
            .returning(tasks.c.id)
        ).scalar_one()
    )
