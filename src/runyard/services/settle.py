"""After any task changes, move the rest of its run along: ready, skipped, canceled, or finished."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.graph import TaskNode, advance, run_outcome
from runyard.domain.statuses import RUN_SUCCEEDED, RunStatus, TaskStatus
from runyard.domain.transitions import run_sources
from runyard.services.history import record_event
from runyard.services.workflow_counts import count_success
from runyard.store import dialect
from runyard.store.tables import runs, task_dependencies, tasks


def load_nodes(conn: Connection, run_id: int) -> list[TaskNode]:
    edges: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    dep_rows = conn.execute(
        sa.select(task_dependencies.c.task_id, task_dependencies.c.upstream_id, task_dependencies.c.soft)
        .join(tasks, tasks.c.id == task_dependencies.c.task_id)
        .where(tasks.c.run_id == run_id)
    )
    for task_id, upstream_id, soft in dep_rows:
        edges[task_id].append((upstream_id, bool(soft)))
    rows = conn.execute(
        sa.select(tasks.c.id, tasks.c.status, tasks.c.ready_at, tasks.c.required).where(tasks.c.run_id == run_id)
    )
    return [
        TaskNode(
            key=row.id,
            status=TaskStatus(row.status),
            ready=row.ready_at is not None,
            required=bool(row.required),
            depends_on=tuple(edges[row.id]),
        )
        for row in rows
    ]


# Lock order. Every transaction that writes about an existing run (claim, finish, release, cancel, sweep)
# locks the run's row first, before it writes or references any of the run's tasks, and locks one run
# per transaction. On PostgreSQL that serializes the writers of one run, so a settle always sees the
# tasks the previous writer of the run ended (two tasks ending at once no longer each see the other
# still running). On SQLite BEGIN IMMEDIATE already runs one writer at a time.
#
# Why it cannot deadlock: a deadlock needs a cycle of transactions each holding a lock while waiting.
# - A claim never waits: it locks a ready task together with its run, skipping locked rows
#   (dialect.lock_for_claim), then writes only rows of that task and run, which nobody else is
#   writing (they would hold the run).
# - A heartbeat writes one task row and nothing else, so it never holds a lock while waiting.
# - Any other writer waits for its run's row while holding nothing; holding it, it can wait only for
#   task rows of that run, held by claims or heartbeats, which never wait: each wait ends. That is
#   also why the order among a run's tasks does not matter once the run is held.
# A launch writes only the run and tasks it inserts, which no one else sees yet.
# The lock is FOR NO KEY UPDATE, so rows inserted by others that reference the run (FOR KEY SHARE)
# neither block it nor are blocked by it. Locking the run inside settle_run only, after the finish had
# written its task and inserted an event referencing the run, is what deadlocked before.


def lock_run(conn: Connection, run_id: int) -> sa.Row[Any]:
    """Lock run `run_id` for the rest of the transaction (PostgreSQL); its status and cancel request."""
    query = sa.select(runs.c.id, runs.c.status, runs.c.cancel_requested_at).where(runs.c.id == run_id)
    return conn.execute(dialect.lock_for_write(query, conn)).one()


def settle_run(conn: Connection, run_id: int, now: datetime, locked: sa.Row[Any] | None = None) -> bool:
    """Apply the graph rules to run `run_id`. Returns True when tasks became ready to claim.

    The caller has locked the run with lock_run before touching its tasks (see the lock order above). `locked`
    is what that lock_run read, when the caller has not changed the run since; without it, the run is read here
    under that lock again, which PostgreSQL grants at once to its holder.
    """
    run = locked if locked is not None else lock_run(conn, run_id)
    status = RunStatus(run.status)
    if status.is_final:
        return False
    canceling = status is RunStatus.CANCELING
    nodes = load_nodes(conn, run_id)
    step = advance(nodes)
    if step.skipped:
        _set_waiting(conn, list(step.skipped), TaskStatus.SKIPPED, now)
    became_ready = False
    if step.ready:
        ready_ids = list(step.ready)
        if canceling:
            _set_waiting(conn, ready_ids, TaskStatus.CANCELED, now)
        else:
            conn.execute(
                tasks.update()
                .where(
                    tasks.c.id.in_(ready_ids),
                    tasks.c.status == TaskStatus.WAITING_TO_START.value,
                    tasks.c.ready_at.is_(None),
                )
                .values(ready_at=now, updated_at=now)
            )
            became_ready = True
    if step.skipped or (step.ready and canceling):
        nodes = load_nodes(conn, run_id)
    outcome = run_outcome(nodes, cancel_requested=run.cancel_requested_at is not None)
    if outcome is not None:
        finish_run(conn, run_id, outcome, now)
    return became_ready


def _set_waiting(conn: Connection, ids: list[int], target: TaskStatus, now: datetime) -> None:
    conn.execute(
        tasks.update()
        .where(tasks.c.id.in_(ids), tasks.c.status == TaskStatus.WAITING_TO_START.value)
        .values(status=target.value, completed_at=now, updated_at=now)
    )


def finish_run(conn: Connection, run_id: int, outcome: RunStatus, now: datetime, message: str = "") -> bool:
    """Give the run its final status, once: a final status never changes again."""
    values: dict[str, object] = {"status": outcome.value, "completed_at": now, "updated_at": now}
    if message:
        values["message"] = message
    result = conn.execute(
        runs.update()
        .where(runs.c.id == run_id, runs.c.status.in_([s.value for s in run_sources(outcome)]))
        .values(**values)
    )
    if result.rowcount:
        record_event(conn, run_id, "run_finished", now, status=outcome.value, detail=message)
        if outcome in RUN_SUCCEEDED:
            count_success(conn, run_id, now)  # the workflows waiting for this job; they launch after the commit
    return bool(result.rowcount)
