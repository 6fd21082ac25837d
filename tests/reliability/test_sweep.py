"""The scheduler's sweep and the lease fencing, in process against real databases."""

from __future__ import annotations

import threading

import pytest

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.errors import LeaseLost
from runyard.services.runs import RunService
from runyard.services.sweep import SweepReport, sweep
from runyard.services.tasks import Claim, Outcome, Progress, TaskLeases
from runyard.store.database import Store
from tests.factories import make_operation, sleep_task
from tests.reliability.db import (
    attempt_log,
    backdate_cancel,
    backdate_leases,
    events,
    launch,
    messages,
    run_row,
    run_state,
    run_status,
    task_row,
)

LEASE = 30.0  # long: in these tests a lease lapses only when a test back-dates it
CANCEL_TIMEOUT = 60.0


def claim_one(leases: TaskLeases, worker_id: str) -> Claim:
    claim = leases.claim(worker_id)
    assert claim is not None, f"{worker_id} found nothing to claim"
    return claim


def two_step_run(store: Store) -> tuple[int, int]:
    """An operation `extract` -> `load` and an accepted run of it: (operation id, run id)."""
    operation_id = make_operation(store, tasks=[sleep_task("extract"), sleep_task("load", depends_on=["extract"])])
    return operation_id, launch(store, operation_id)


def test_cancel_of_a_run_whose_worker_is_gone_is_forced_after_the_timeout(store: Store) -> None:
    operation_id, run_id = two_step_run(store)
    leases = TaskLeases(store, lease_seconds=LEASE)
    claim = claim_one(leases, "gone-worker")  # never heartbeats again
    assert claim.name == "extract"

    assert RunService(store).cancel(run_id).status is RunStatus.CANCELING
    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport()
    assert run_status(store, run_id) is RunStatus.CANCELING  # the timeout has not passed yet
    assert task_row(store, run_id, "extract")["status"] == TaskStatus.RUNNING.value

    backdate_cancel(store, run_id, seconds=CANCEL_TIMEOUT + 5)
    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport(forced_runs=1)

    run = run_row(store, run_id)
    assert run["status"] == RunStatus.CANCELED.value
    assert run["completed_at"] is not None
    extract = task_row(store, run_id, "extract")
    assert extract["status"] == TaskStatus.CANCELED.value
    assert extract["lease_token"] is None
    assert extract["lease_expires_at"] is None
    assert attempt_log(store, extract["id"]) == [(1, "lease_revoked", "gone-worker")]
    assert any("did not stop in time" in text for text in messages(store, extract["id"], "warning"))
    assert task_row(store, run_id, "load")["status"] == TaskStatus.CANCELED.value
    with pytest.raises(LeaseLost):
        leases.heartbeat(claim)
    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport()  # nothing is ended twice
    assert events(store, run_id, "run_finished") == 1

    assert run_status(store, launch(store, operation_id)) is RunStatus.WAITING_TO_START


def test_a_forced_cancel_says_why_on_the_run(store: Store) -> None:
    _, run_id = two_step_run(store)
    claim_one(TaskLeases(store, lease_seconds=LEASE), "gone-worker")
    RunService(store).cancel(run_id)
    backdate_cancel(store, run_id, seconds=CANCEL_TIMEOUT + 5)

    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport(forced_runs=1)

    run = run_row(store, run_id)
    assert run["status"] == RunStatus.CANCELED.value
    assert "Forced to Canceled" in run["message"]


def test_cancel_of_a_run_whose_lease_lapsed_ends_without_waiting_for_the_timeout(store: Store) -> None:
    operation_id, run_id = two_step_run(store)
    leases = TaskLeases(store, lease_seconds=LEASE)
    claim_one(leases, "gone-worker")
    RunService(store).cancel(run_id)
    backdate_leases(store, run_id)

    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport(canceled=1)

    assert run_status(store, run_id) is RunStatus.CANCELED
    extract = task_row(store, run_id, "extract")
    assert extract["status"] == TaskStatus.CANCELED.value
    assert extract["lease_token"] is None
    assert attempt_log(store, extract["id"]) == [(1, "lease_expired", "gone-worker")]
    assert any("stopped responding" in text for text in messages(store, extract["id"], "warning"))
    assert run_status(store, launch(store, operation_id)) is RunStatus.WAITING_TO_START


SWEEPERS = 4
TASKS = 6
ROUNDS = 3


def racing_sweeps(database_url: str) -> list[SweepReport]:
    """SWEEPERS threads, each with its own Store, released together into sweep()."""
    start = threading.Barrier(SWEEPERS)
    reports: list[SweepReport] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sweeper() -> None:
        own = Store(database_url)
        try:
            start.wait(timeout=30)
            report = sweep(own, cancel_timeout_seconds=CANCEL_TIMEOUT)
            with lock:
                reports.append(report)
        except BaseException as error:
            with lock:
                errors.append(error)
        finally:
            own.dispose()

    threads = [threading.Thread(target=sweeper, name=f"sweeper-{n}") for n in range(SWEEPERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a sweeper did not finish within 60 s"
    assert errors == []
    return reports


def test_racing_sweeps_fail_each_exhausted_task_exactly_once(store: Store, database_url: str) -> None:
    names = [f"step{n}" for n in range(TASKS)]
    operation_id = make_operation(store, tasks=[sleep_task(name, max_attempts=1) for name in names])
    leases = TaskLeases(store, lease_seconds=LEASE)
    for _ in range(ROUNDS):
        run_id = launch(store, operation_id)
        for n in range(TASKS):
            claim_one(leases, f"dead-{n}")
        backdate_leases(store, run_id)

        reports = racing_sweeps(database_url)

        assert sum(report.exhausted for report in reports) == TASKS
        assert sum(report.canceled + report.forced_runs for report in reports) == 0
        for name in names:
            task = task_row(store, run_id, name)
            assert task["status"] == TaskStatus.FAILED.value
            assert task["lease_token"] is None
            errors = messages(store, task["id"], "error")
            assert len(errors) == 1, errors
            assert "stopped responding" in errors[0]
            assert [(attempt, outcome) for attempt, outcome, _ in attempt_log(store, task["id"])] == [
                (1, "lease_expired")
            ]
        assert run_status(store, run_id) is RunStatus.FAILED
        assert events(store, run_id, "task_expired") == TASKS
        assert events(store, run_id, "run_finished") == 1


@pytest.mark.parametrize("taken_over", [True, False], ids=["taken-over", "lapsed"])
def test_a_stale_lease_cannot_write(store: Store, taken_over: bool) -> None:
    _, run_id = two_step_run(store)
    first = TaskLeases(store, lease_seconds=LEASE)
    second = TaskLeases(store, lease_seconds=LEASE)
    stale = claim_one(first, "worker-a")
    backdate_leases(store, run_id)
    if taken_over:
        current = claim_one(second, "worker-b")
        assert (current.task_id, current.attempt) == (stale.task_id, 2)
        assert current.lease_token != stale.lease_token
    before = run_state(store, run_id)

    progress = Progress(records=7, latencies_ms=[1.0])
    with pytest.raises(LeaseLost):
        first.heartbeat(stale, progress)
    with pytest.raises(LeaseLost):
        first.finish(
            stale, Outcome(TaskStatus.COMPLETED, messages=[("info", "stale")], tables=[("orders", 7)]), progress
        )
    with pytest.raises(LeaseLost):
        first.release(stale, reason="stale release")

    assert run_state(store, run_id) == before
    extract = task_row(store, run_id, "extract")
    assert extract["status"] == TaskStatus.RUNNING.value
    assert extract["records_processed"] == 0
    if taken_over:
        assert (extract["attempt"], extract["worker_id"]) == (2, "worker-b")
        second.finish(current, Outcome(TaskStatus.COMPLETED))
        assert task_row(store, run_id, "extract")["status"] == TaskStatus.COMPLETED.value
        assert attempt_log(store, stale.task_id) == [(1, "lease_expired", "worker-a"), (2, "completed", "worker-b")]
    else:
        assert (extract["attempt"], extract["worker_id"], extract["lease_token"]) == (1, "worker-a", stale.lease_token)


def test_a_lapsed_lease_with_attempts_left_is_left_to_the_workers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write transaction, so no lock, for a run whose lapsed task will simply be claimed again."""
    _, run_id = two_step_run(store)
    leases = TaskLeases(store, lease_seconds=LEASE)
    claim_one(leases, "gone-worker")
    backdate_leases(store, run_id, seconds=LEASE + 5)
    writes = 0
    write = store.write

    def counted_write() -> object:
        nonlocal writes
        writes += 1
        return write()

    monkeypatch.setattr(store, "write", counted_write)
    assert sweep(store, cancel_timeout_seconds=CANCEL_TIMEOUT) == SweepReport()
    assert writes == 0
    monkeypatch.undo()

    again = claim_one(leases, "next-worker")  # the workers take it again, as attempt 2
    assert (again.name, again.attempt) == ("extract", 2)
    assert run_status(store, run_id) is RunStatus.RUNNING
