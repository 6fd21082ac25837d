"""The invariant checker itself: quiet on a healthy store, and naming the run or task of each violation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus
from runyard.services.runs import RunService
from runyard.services.tasks import TaskLeases
from runyard.store.database import Store
from runyard.store.tables import runs, tasks
from tests.factories import make_operation, sleep_task
from tests.reliability.db import backdate_leases, launch
from tests.reliability.invariants import check_invariants


def running_task(store: Store) -> tuple[int, int]:
    """A run whose one task a (pretend) worker claimed: (run id, task id)."""
    run_id = launch(store, make_operation(store, tasks=[sleep_task("only", max_attempts=2)]))
    claim = TaskLeases(store, lease_seconds=30).claim("worker-a")
    assert claim is not None
    return run_id, claim.task_id


def violations(store: Store, **kwargs: object) -> str:
    with pytest.raises(AssertionError) as raised:
        check_invariants(store, **kwargs)  # type: ignore[arg-type]
    return str(raised.value)


def test_a_healthy_store_passes(store: Store, tmp_path: Path) -> None:
    running_task(store)
    check_invariants(store, staging_root=tmp_path / "staging")


def test_a_task_running_on_an_expired_lease_is_named(store: Store) -> None:
    run_id, task_id = running_task(store)
    backdate_leases(store, run_id, seconds=60)
    assert f"I3: task {task_id} 'only' of run {run_id} is Running on a lease that expired" in violations(store)


def test_attempts_over_the_limit_are_named(store: Store) -> None:
    run_id, task_id = running_task(store)
    with store.write() as conn:
        conn.execute(tasks.update().where(tasks.c.id == task_id).values(attempt=3))
    assert f"I5: task {task_id} 'only' of run {run_id} is at attempt 3" in violations(store)


def test_an_attempt_started_after_the_cancel_is_named(store: Store) -> None:
    run_id, task_id = running_task(store)
    RunService(store).cancel(run_id)
    with store.write() as conn:  # pretend the cancel came before the claim
        requested = conn.execute(sa.select(runs.c.cancel_requested_at).where(runs.c.id == run_id)).scalar_one()
        conn.execute(
            runs.update().where(runs.c.id == run_id).values(cancel_requested_at=requested - timedelta(minutes=1))
        )
    assert f"I7: task {task_id} 'only' of run {run_id} attempt 1 started at" in violations(store)


def test_a_completed_loading_run_without_its_load_record_is_named(store: Store) -> None:
    run_id, task_id = running_task(store)
    with store.write() as conn:
        conn.execute(tasks.update().where(tasks.c.id == task_id).values(status="completed", stage="load"))
        conn.execute(runs.update().where(runs.c.id == run_id).values(status=RunStatus.COMPLETED.value))
    assert f"I4: Completed run {run_id} (" in violations(store)


def test_a_file_staged_outside_an_account_root_is_named(store: Store, tmp_path: Path) -> None:
    running_task(store)
    stray = tmp_path / "staging" / "nobody" / "1" / "part.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    assert "I6: staged file nobody/1/part.parquet is not under an account's root" in violations(
        store, staging_root=tmp_path / "staging"
    )
