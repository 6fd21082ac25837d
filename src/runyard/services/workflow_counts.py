"""What workflows count: each upstream's successes since the workflow last launched its target.

These writes sit inside other transactions: a run's success is counted in the transaction that finishes it
(`count_success`, from runyard.services.settle.finish_run), so a success is counted exactly once whatever
happens next; a deploy syncs a workflow's upstreams with its configuration (`sync_upstreams`). Launching the
target is runyard.services.workflows, in a transaction of its own.

Lock order, so that runs ending together and a workflow launching its target never wait on each other in a cycle:
the run (or the workflow's operation row), then the workflow_states rows in workflow id order (`lock_states`), then
the workflow_upstreams rows in id order (`_lock_rows`). A finish that took an upstream row before the state row
deadlocked with a trigger holding the state row and waiting for that upstream row
(tests/reliability/test_workflow_race.py found it on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.operations.job_ids import JobRef
from runyard.operations.workflow.jobs import resolve_jobs
from runyard.services.accounts import account_id
from runyard.store import dialect
from runyard.store.tables import operations, runs, workflow_states, workflow_upstreams


def sync_upstreams(conn: Connection, workflow_id: int, spec: dict[str, Any]) -> None:
    """Make the workflow's upstream rows those its configuration names, in its order. An upstream it names
    still keeps its count; one it no longer names is forgotten; a new one starts at 0."""
    wanted = resolve_jobs(spec).upstreams
    stored = {
        _key(row): row
        for row in conn.execute(sa.select(workflow_upstreams).where(workflow_upstreams.c.workflow_id == workflow_id))
    }
    keep = {_ref_key(conn, ref): ref for ref in wanted}
    gone = [row.id for key, row in stored.items() if key not in keep]
    if gone:
        conn.execute(workflow_upstreams.delete().where(workflow_upstreams.c.id.in_(gone)))
    # Positions are renumbered past the current ones first, so that the unique (workflow, position) holds mid-way.
    offset = len(stored) + len(wanted) + 1
    for position, (key, ref) in enumerate(keep.items()):
        if key in stored:
            conn.execute(
                workflow_upstreams.update()
                .where(workflow_upstreams.c.id == stored[key].id)
                .values(position=offset + position)
            )
        else:
            conn.execute(
                workflow_upstreams.insert().values(
                    workflow_id=workflow_id,
                    position=offset + position,
                    account_id=key[0],
                    environment=ref.environment,
                    configuration_type=ref.configuration_type,
                    configuration_id=ref.configuration_id,
                    successes=0,
                )
            )
    conn.execute(
        workflow_upstreams.update()
        .where(workflow_upstreams.c.workflow_id == workflow_id)
        .values(position=workflow_upstreams.c.position - offset)
    )
    exists = conn.execute(
        sa.select(workflow_states.c.workflow_id).where(workflow_states.c.workflow_id == workflow_id)
    ).first()
    if exists is None:
        conn.execute(workflow_states.insert().values(workflow_id=workflow_id, pending=False))


def _key(row: sa.Row[Any]) -> tuple[int, str, str, str]:
    return (row.account_id, row.environment, row.configuration_type, row.configuration_id)


def _ref_key(conn: Connection, ref: JobRef) -> tuple[int, str, str, str]:
    return (account_id(conn, str(ref.account)), str(ref.environment), ref.configuration_type, ref.configuration_id)


def count_success(conn: Connection, run_id: int, now: datetime) -> list[int]:
    """Count run `run_id`'s success for every workflow waiting for its operation; those workflows are marked
    pending (to be evaluated). Returns their ids. Called once per run, when it finishes successfully."""
    operation = conn.execute(
        sa.select(
            operations.c.account_id,
            operations.c.environment,
            operations.c.configuration_type,
            operations.c.configuration_id,
        )
        .join(runs, runs.c.operation_id == operations.c.id)
        .where(runs.c.id == run_id)
    ).one()
    matching = sa.select(workflow_upstreams.c.id).where(
        workflow_upstreams.c.account_id == operation.account_id,
        workflow_upstreams.c.configuration_id == operation.configuration_id,
        workflow_upstreams.c.environment == operation.environment,
        workflow_upstreams.c.configuration_type == operation.configuration_type,
    )
    workflows = sorted(
        {int(wid) for wid in conn.execute(matching.with_only_columns(workflow_upstreams.c.workflow_id)).scalars()}
    )
    if not workflows:
        return []
    lock_states(conn, workflows)
    ids = _lock_rows(conn, matching)
    conn.execute(
        workflow_upstreams.update()
        .where(workflow_upstreams.c.id.in_(ids))
        .values(successes=workflow_upstreams.c.successes + 1, last_success_at=now, last_success_run_id=run_id)
    )
    conn.execute(workflow_states.update().where(workflow_states.c.workflow_id.in_(workflows)).values(pending=True))
    return workflows


def lock_states(conn: Connection, workflow_ids: Sequence[int]) -> None:
    """Lock the workflows' state rows, in id order: before any of their upstream rows (this module's lock order)."""
    query = (
        sa.select(workflow_states.c.workflow_id)
        .where(workflow_states.c.workflow_id.in_(list(workflow_ids)))
        .order_by(workflow_states.c.workflow_id)
    )
    conn.execute(dialect.lock_for_write(query, conn)).all()


def counted_workflows(conn: Connection, run_id: int) -> list[int]:
    """The workflows run `run_id`'s success was counted for (none until it succeeds)."""
    query = sa.select(workflow_upstreams.c.workflow_id).where(workflow_upstreams.c.last_success_run_id == run_id)
    return sorted({int(value) for value in conn.execute(query).scalars()})


def upstream_rows(conn: Connection, workflow_id: int, *, lock: bool = False) -> list[sa.Row[Any]]:
    """The workflow's upstream rows in its order; locked in id order when `lock`."""
    if lock:
        _lock_rows(conn, sa.select(workflow_upstreams.c.id).where(workflow_upstreams.c.workflow_id == workflow_id))
    return list(
        conn.execute(
            sa.select(workflow_upstreams)
            .where(workflow_upstreams.c.workflow_id == workflow_id)
            .order_by(workflow_upstreams.c.position)
        )
    )


def consume_one_each(conn: Connection, ids: Sequence[int]) -> None:
    conn.execute(
        workflow_upstreams.update()
        .where(workflow_upstreams.c.id.in_(list(ids)))
        .values(successes=workflow_upstreams.c.successes - 1)
    )


def forget_counts(conn: Connection, workflow_id: int) -> None:
    """Every upstream back to 0 successes (when each last succeeded stays: it is a fact, not a count)."""
    lock_states(conn, [workflow_id])
    upstream_rows(conn, workflow_id, lock=True)
    conn.execute(workflow_upstreams.update().where(workflow_upstreams.c.workflow_id == workflow_id).values(successes=0))


def _lock_rows(conn: Connection, ids_query: sa.Select[Any]) -> list[int]:
    query = dialect.lock_for_write(ids_query.order_by(workflow_upstreams.c.id), conn)
    return [int(value) for value in conn.execute(query).scalars()]
