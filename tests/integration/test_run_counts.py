"""run_counts, kept by triggers on runs (migration 0007), always equals counting the runs, on both backends.

Rows are written with plain SQL here, not through the services: the triggers must hold whoever writes runs.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RunStatus, RunType
from runyard.services.listing import RunQuery, list_runs
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import run_counts, runs
from tests.integration.test_listing import BASE, _insert_run, build_world

Key = tuple[int, int, str, str]


def counted(conn: Connection) -> Counter[Key]:
    """run_counts as a Counter, without the keys whose runs all went elsewhere (their rows stay, at 0)."""
    rows = conn.execute(
        sa.select(
            run_counts.c.account_id,
            run_counts.c.operation_id,
            run_counts.c.status,
            run_counts.c.run_type,
            run_counts.c.runs,
        )
    )
    return Counter({(a, o, s, t): n for a, o, s, t, n in rows if n})


def recounted(conn: Connection) -> Counter[Key]:
    """What run_counts must hold: the runs, counted."""
    key = (runs.c.account_id, runs.c.operation_id, runs.c.status, runs.c.run_type)
    return Counter({(a, o, s, t): n for a, o, s, t, n in conn.execute(sa.select(*key, sa.func.count()).group_by(*key))})


def test_inserts_updates_and_deletes_keep_the_counts(store: Store) -> None:
    world = build_world(store)
    with store.read() as conn:
        assert counted(conn) == recounted(conn)
        assert sum(counted(conn).values()) > 10

    ids = [run["id"] for run in world.runs]
    other_operation = next(iter(world.operations))
    with store.write() as conn:
        conn.execute(sa.update(runs).where(runs.c.id.in_(ids[:3])).values(status=RunStatus.CANCELED.value))
        conn.execute(sa.update(runs).where(runs.c.id == ids[3]).values(run_type=RunType.DESTRUCTIVE.value))
        conn.execute(sa.update(runs).where(runs.c.id == ids[4]).values(operation_id=other_operation))
        conn.execute(sa.update(runs).where(runs.c.id == ids[5]).values(status=runs.c.status))  # a no-op update
        conn.execute(sa.update(runs).where(runs.c.id.in_(ids[6:9])).values(message="only the message"))
        added = [
            _insert_run(
                conn,
                {
                    "account_id": world.acme,
                    "operation_id": other_operation,
                    "run_type": RunType.INCREMENTAL,
                    "status": status,
                    "created_at": BASE + timedelta(days=30, minutes=i),
                    "started_at": None,
                    "completed_at": None,
                },
            )
            for i, status in enumerate((RunStatus.FAILED, RunStatus.REJECTED, RunStatus.REJECTED))
        ]
        conn.execute(sa.delete(runs).where(runs.c.id.in_(added[1:])))

    with store.read() as conn:
        assert counted(conn) == recounted(conn)


def test_a_rolled_back_write_leaves_the_counts_as_they_were(store: Store) -> None:
    world = build_world(store)
    with store.read() as conn:
        before = counted(conn)

    try:
        with store.write() as conn:
            conn.execute(sa.update(runs).where(runs.c.id == world.runs[0]["id"]).values(status="failed"))
            conn.execute(sa.update(runs).where(runs.c.id == world.runs[1]["id"]).values(run_type="destructive"))
            raise RuntimeError("the write fails after changing runs")
    except RuntimeError:
        pass

    with store.read() as conn:
        assert counted(conn) == before == recounted(conn)


def test_totals_without_time_bounds_come_from_the_counts(store: Store) -> None:
    """The proof that list_runs reads run_counts: a count changed behind its back shows in the total."""
    world = build_world(store)
    query = RunQuery(account_id=world.acme, status=RunStatus.COMPLETED)
    with store.read() as conn:
        total = list_runs(conn, query).total
    with store.write() as conn:
        conn.execute(
            sa.update(run_counts)
            .where(run_counts.c.account_id == world.acme, run_counts.c.status == RunStatus.COMPLETED.value)
            .values(runs=run_counts.c.runs + 1000)
        )
    with store.read() as conn:
        tampered = list_runs(conn, query)
        bounded = list_runs(
            conn, RunQuery(account_id=world.acme, status=RunStatus.COMPLETED, started_to=BASE + timedelta(days=3650))
        )

    assert total > 0
    assert tampered.total >= total + 1000  # each (operation, type) row of the status gained 1000
    assert bounded.total == total  # time bounds count the runs themselves


def test_the_migration_counts_the_runs_already_there(store: Store) -> None:
    build_world(store)
    migrate.downgrade(store, "0006")  # no run_counts, no triggers; the runs stay

    migrate.upgrade(store)

    with store.read() as conn:
        assert counted(conn) == recounted(conn)
        assert sum(counted(conn).values()) > 10
