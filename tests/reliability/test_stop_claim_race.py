"""R20: a worker that was told to stop runs nothing it claims afterwards.

A claim that began before the stop can commit after it: on SQLite it waits its turn for the write lock, and
it may then take a stream that the stop has just given back. (Found in `make test`: `runyard serve --demo`,
stopped by SIGINT, started its badge stream again as attempt 2 and held it for the whole grace.) Here the
claim itself sets the stop flag just before it returns, the narrowest form of that race, on a real store with
the real worker: the claimed task must be given back at once, never started.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from runyard.domain.statuses import TaskStatus
from runyard.runtime import Runtime, engine_resources
from runyard.services.tasks import Claim
from runyard.settings import Settings
from runyard.store.database import Store
from runyard.store.tables import task_attempts
from tests.factories import make_operation, sleep_task
from tests.reliability.db import launch, task_row
from tests.reliability.procs import wait_until


def test_a_task_claimed_as_the_stop_begins_is_given_back_unstarted(store: Store, tmp_path: Path) -> None:
    operation_id = make_operation(store, tasks=[sleep_task("long", 60.0, units=600)])
    run_id = launch(store, operation_id)
    settings = Settings(home=tmp_path / "home", worker_concurrency=1, poll_seconds=0.05, heartbeat_seconds=0.2)
    runtime = Runtime(settings, store, resources=engine_resources(settings))
    worker = runtime.worker("racing")
    leases = worker.leases
    real_claim = leases.claim

    def claim_then_stop(worker_id: str) -> Claim | None:
        claim = real_claim(worker_id)
        if claim is not None:
            worker._stopping.set()  # the stop arrives while this claim's transaction commits
        return claim

    leases.claim = claim_then_stop  # type: ignore[method-assign]
    worker.start()
    try:
        wait_until(
            lambda: (
                task_row(store, run_id, "long")["status"] == TaskStatus.WAITING_TO_START.value
                and task_row(store, run_id, "long")["attempt"] == 1
            ),
            timeout=30,
            what="the claimed task to be given back",
        )
    finally:
        worker.stop(5)
    with store.read() as conn:
        attempts = conn.execute(sa.select(task_attempts.c.attempt, task_attempts.c.outcome)).all()
    assert [(row.attempt, row.outcome) for row in attempts] == [(1, "released")]
    assert task_row(store, run_id, "long")["records_processed"] == 0  # it never ran
