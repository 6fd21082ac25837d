"""Workers that die, pause or crash-loop: real `runyard worker` processes on a real runs database.

Each test starts workers with a short lease (procs.LEASE_SECONDS) and stops every one of them
in the `workers` fixture's teardown, whatever happens.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.sweep import sweep
from runyard.store.database import Store
from tests.factories import make_operation, sleep_task
from tests.reliability.db import (
    attempt_log,
    attempt_times,
    has_open_write,
    launch,
    messages,
    run_state,
    run_status,
    table_counts,
    task_row,
)
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import (
    LEASE_SECONDS,
    WorkerProcess,
    Workers,
    wait_until,
)

pytestmark = pytest.mark.slow

UNITS = 10
RECORDS_PER_UNIT = 5
LEASE_LOST_TEXT = "no longer holds the task's lease"
CLAIM_CRASH = "claim.after_commit"
# Time to start a worker process (~1 s on a busy machine), plus a lease to lapse, plus the task's own time.
SETTLE_TIMEOUT = 45.0


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def extract_then_load(store: Store, *, seconds: float = 1.5, table: str | None = None) -> tuple[int, int]:
    """A 2-task operation (a sleeping `extract`, then a quick `load`) and an accepted run: (run id, extract id)."""
    params: dict[str, object] = {"records_per_unit": RECORDS_PER_UNIT}
    if table is not None:
        params["table"] = table
    operation_id = make_operation(
        store,
        tasks=[
            sleep_task("extract", seconds, units=UNITS, params=params),
            sleep_task("load", 0.1, depends_on=["extract"]),
        ],
    )
    run_id = launch(store, operation_id)
    return run_id, task_row(store, run_id, "extract")["id"]


def running_on(store: Store, run_id: int, name: str, worker_id: str, attempt: int) -> bool:
    task = task_row(store, run_id, name)
    return bool(
        task["status"] == TaskStatus.RUNNING.value and task["worker_id"] == worker_id and task["attempt"] == attempt
    )


def final_status(store: Store, run_id: int, alive: Sequence[WorkerProcess]) -> RunStatus:
    def ended() -> RunStatus | None:
        status = run_status(store, run_id)
        return status if status.is_final else None

    return wait_until(ended, timeout=SETTLE_TIMEOUT, what=f"run {run_id} to end", alive=alive)


def diagnose(store: Store, run_id: int, workers: Workers) -> str:
    """What a failed wait should show: the run's rows and every worker's exit code and log."""
    lines = [f"{name}: {rows}" for name, rows in run_state(store, run_id).items()]
    for worker in workers.started:
        lines.append(f"--- worker pid {worker.pid} returncode {worker.returncode}:\n{worker.log()}")
    return "\n".join(lines)


def test_killed_worker_task_is_taken_over_after_its_lease(store: Store, workers: Workers) -> None:
    run_id, extract_id = extract_then_load(store, seconds=1.0)
    a = workers.start()
    wait_until(
        lambda: running_on(store, run_id, "extract", a.worker_id, 1),
        timeout=SETTLE_TIMEOUT,
        what="A to claim extract",
        alive=[a],
    )

    assert a.kill() == -signal.SIGKILL
    b = workers.start()

    assert final_status(store, run_id, alive=[b]) is RunStatus.COMPLETED
    extract = task_row(store, run_id, "extract")
    assert extract["status"] == TaskStatus.COMPLETED.value
    assert (extract["attempt"], extract["worker_id"]) == (2, b.worker_id)
    assert attempt_log(store, extract_id) == [(1, "lease_expired", a.worker_id), (2, "completed", b.worker_id)]
    warnings = messages(store, extract_id, "warning")
    assert len(warnings) == 1
    assert "Attempt 1" in warnings[0]
    assert "stopped responding" in warnings[0]
    load = task_row(store, run_id, "load")
    assert (load["status"], load["attempt"]) == (TaskStatus.COMPLETED.value, 1)
    assert b.terminate() == 0
    check_invariants(store)


@pytest.mark.parametrize("resume", ["while-b-runs", "after-run-ends"])
def test_paused_worker_cannot_write_after_its_lease_was_taken_over(store: Store, workers: Workers, resume: str) -> None:
    """A is paused (SIGSTOP) past its lease; B takes the task over; A is continued while B still runs the
    task or once the run ended. A's heartbeats and finish are refused; only B's attempt counts."""
    run_id, extract_id = extract_then_load(store, seconds=2.0, table="stage_orders")
    a = workers.start()
    wait_until(
        lambda: (
            running_on(store, run_id, "extract", a.worker_id, 1)
            and task_row(store, run_id, "extract")["heartbeat_at"] is not None
        ),
        timeout=SETTLE_TIMEOUT,
        what="A to claim extract and heartbeat it",
        alive=[a],
    )

    a.pause(busy=lambda: has_open_write(store))
    b = workers.start()
    wait_until(
        lambda: task_row(store, run_id, "extract")["attempt"] == 2,
        timeout=SETTLE_TIMEOUT,
        what="B to take extract over",
        alive=[b],
    )
    if resume == "while-b-runs":
        assert running_on(store, run_id, "extract", b.worker_id, 2), "B finished before A could be continued"
        a.resume()
    assert final_status(store, run_id, alive=[b]) is RunStatus.COMPLETED
    if resume == "after-run-ends":
        a.resume()
    wait_until(lambda: "attempt 1: " in a.log(), timeout=SETTLE_TIMEOUT, what="A to end its attempt 1")
    assert LEASE_LOST_TEXT in a.log(), a.log()
    before = run_state(store, run_id)
    assert a.terminate() == 0  # A's whole remaining life, up to its exit, wrote nothing
    assert run_state(store, run_id) == before
    extract = task_row(store, run_id, "extract")
    assert extract["status"] == TaskStatus.COMPLETED.value
    assert (extract["attempt"], extract["worker_id"]) == (2, b.worker_id)
    assert table_counts(store, extract_id) == [("stage_orders", UNITS * RECORDS_PER_UNIT)]
    assert attempt_log(store, extract_id) == [(1, "lease_expired", a.worker_id), (2, "completed", b.worker_id)]
    assert run_status(store, run_id) is RunStatus.COMPLETED
    assert LEASE_LOST_TEXT not in b.log()  # B's heartbeats and finish were never refused
    assert "Traceback" not in a.log()
    assert b.terminate() == 0
    check_invariants(store)


def test_worker_dying_right_after_its_claim_loses_the_task_a_lease_later(store: Store, workers: Workers) -> None:
    run_id, extract_id = extract_then_load(store, seconds=0.5)
    a = workers.start(crash_at=CLAIM_CRASH)
    assert a.popen.wait(timeout=SETTLE_TIMEOUT) == -signal.SIGKILL, a.log()

    extract = task_row(store, run_id, "extract")
    assert (extract["status"], extract["attempt"], extract["worker_id"]) == (TaskStatus.RUNNING.value, 1, a.worker_id)
    assert extract["heartbeat_at"] is None  # it died before its first heartbeat

    b = workers.start()
    assert final_status(store, run_id, alive=[b]) is RunStatus.COMPLETED
    assert attempt_log(store, extract_id) == [(1, "lease_expired", a.worker_id), (2, "completed", b.worker_id)]
    assert task_row(store, run_id, "extract")["attempt"] == 2
    claimed_at, taken_over_at = attempt_times(store, extract_id, 1)
    assert taken_over_at is not None
    assert taken_over_at - claimed_at >= timedelta(seconds=LEASE_SECONDS)  # the lease runs from the claim
    assert b.terminate() == 0
    check_invariants(store)


def test_poison_task_fails_after_its_attempts_instead_of_crash_looping(store: Store, workers: Workers) -> None:
    max_attempts = 2
    operation_id = make_operation(store, tasks=[sleep_task("poison", 0.2, max_attempts=max_attempts)])
    run_id = launch(store, operation_id)
    task_id = task_row(store, run_id, "poison")["id"]

    # A supervisor that restarts its worker whenever it dies; every worker crashes right after a claim.
    current = workers.start(crash_at=CLAIM_CRASH)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not run_status(store, run_id).is_final:
        assert time.monotonic() < deadline, f"the run did not end: {diagnose(store, run_id, workers)}"
        if not current.alive():
            assert current.returncode == -signal.SIGKILL, f"a worker failed otherwise: {current.log()}"
            current = workers.start(crash_at=CLAIM_CRASH)
        time.sleep(0.1)

    assert run_status(store, run_id) is RunStatus.FAILED
    died = [worker for worker in workers.started if not worker.alive()]
    assert [worker.returncode for worker in died] == [-signal.SIGKILL] * max_attempts
    assert current.alive()  # the last worker claimed nothing; its scheduler failed the task
    task = task_row(store, run_id, "poison")
    assert (task["status"], task["attempt"], task["lease_token"]) == (TaskStatus.FAILED.value, max_attempts, None)
    assert attempt_log(store, task_id) == [(n + 1, "lease_expired", died[n].worker_id) for n in range(max_attempts)]
    errors = messages(store, task_id, "error")
    assert len(errors) == 1
    assert "stopped responding" in errors[0]
    assert f"{max_attempts} attempts" in errors[0]

    # Later sweeps and polls change nothing: two more sweeps here, then (the last worker, which would crash at its
    # next claim, stopped cleanly) a new run that a fresh worker claims and completes, so a worker has polled since
    # and never took the poison task back.
    for _ in range(2):
        sweep(store, cancel_timeout_seconds=60.0)
    assert current.terminate() == 0
    fresh = workers.start()
    other_id = launch(store, make_operation(store, tasks=[sleep_task("after", 0.01)], configuration_id="after"))
    assert final_status(store, other_id, alive=[fresh]) is RunStatus.COMPLETED
    assert task_row(store, other_id, "after")["worker_id"] == fresh.worker_id
    assert task_row(store, run_id, "poison")["attempt"] == max_attempts
    assert task_row(store, run_id, "poison")["status"] == TaskStatus.FAILED.value
    assert len(attempt_log(store, task_id)) == max_attempts
    assert fresh.terminate() == 0
    check_invariants(store)
