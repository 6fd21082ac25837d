"""One active run per operation, under 50 launches racing from 5 processes, and as a database constraint."""

from __future__ import annotations

import multiprocessing
import queue
import uuid
from collections import Counter
from multiprocessing.queues import Queue

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RUN_ACTIVE, RunStatus
from runyard.errors import RunRejected
from runyard.services.runs import LaunchRequest, RunService
from runyard.store.database import Store
from runyard.store.tables import runs
from tests.factories import make_operation
from tests.reliability.db import launch, run_status
from tests.reliability.procs import Outcome, launch_many

PROCESSES = 5
LAUNCHES_EACH = 10
TOTAL = PROCESSES * LAUNCHES_EACH


def race(database_url: str, operation_id: int) -> list[Outcome]:
    """Start the racers, release them together, and gather what each one saw."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results: Queue[list[Outcome] | str] = context.Queue()
    racers = [
        context.Process(target=launch_many, args=(database_url, operation_id, LAUNCHES_EACH, start, results))
        for _ in range(PROCESSES)
    ]
    seen: list[Outcome] = []
    failures: list[str] = []
    try:
        for racer in racers:
            racer.start()
        for _ in racers:
            try:
                got = results.get(timeout=60)
            except queue.Empty:
                pytest.fail("a launching process did not report within 60 s")
            if isinstance(got, str):
                failures.append(got)
            else:
                seen.extend(got)
        for racer in racers:
            racer.join(timeout=10)
    finally:
        for racer in racers:
            if racer.is_alive():
                racer.kill()
                racer.join(timeout=10)
            racer.close()
        results.close()
        results.join_thread()
    assert failures == []
    return seen


def test_fifty_racing_launches_accept_exactly_one(store: Store, database_url: str) -> None:
    operation_id = make_operation(store)

    seen = race(database_url, operation_id)

    assert Counter(kind for kind, _, _ in seen) == {"accepted": 1, "rejected": TOTAL - 1}
    accepted = next(run_id for kind, run_id, _ in seen if kind == "accepted")
    assert {blocker for kind, _, blocker in seen if kind == "rejected"} == {accepted}
    with store.read() as conn:
        rows = conn.execute(sa.select(runs).where(runs.c.operation_id == operation_id)).mappings().all()
    assert len(rows) == TOTAL
    active = [row for row in rows if RunStatus(row["status"]) in RUN_ACTIVE]
    assert [row["id"] for row in active] == [accepted]
    assert active[0]["status"] == RunStatus.WAITING_TO_START.value
    rejected = [row for row in rows if row["status"] == RunStatus.REJECTED.value]
    assert len(rejected) == TOTAL - 1
    assert sorted(row["id"] for row in rejected) == sorted(run_id for kind, run_id, _ in seen if kind == "rejected")
    for row in rejected:
        assert row["blocked_by"] == accepted
        assert row["completed_at"] is not None
        assert str(accepted) in row["message"]


@pytest.mark.parametrize("copy_status", sorted(RUN_ACTIVE))
def test_one_active_run_is_a_database_constraint(store: Store, copy_status: RunStatus) -> None:
    operation_id = make_operation(store)
    first = launch(store, operation_id)
    with store.read() as conn:
        row = dict(conn.execute(sa.select(runs).where(runs.c.id == first)).mappings().one())
    del row["id"]
    row = {name: value for name, value in row.items() if runs.c[name].computed is None}  # the database computes those
    key = f"manual-{uuid.uuid4()}"
    row.update(run_key=key, job_name=f"op#{key}", status=copy_status.value)

    with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
        conn.execute(runs.insert().values(**row))

    with store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).where(runs.c.operation_id == operation_id)).scalar_one()
    assert count == 1
    service = RunService(store)
    with pytest.raises(RunRejected) as rejected:
        service.launch(LaunchRequest(operation_id=operation_id))
    assert rejected.value.active_run_id == first

    assert service.cancel(first).status is RunStatus.CANCELED
    second = launch(store, operation_id)
    assert second != first
    assert run_status(store, second) is RunStatus.WAITING_TO_START
    assert run_status(store, first) is RunStatus.CANCELED
