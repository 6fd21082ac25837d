"""R4: a write to the runs database commits, then the worker sees an error (a lost acknowledgement).

Temporal's persistence fault injector calls it `ExecuteAndTimeout`: the operation reached the database and was
done, but the caller was told it failed. Here a real `runyard worker` process is started with
`RUNYARD_LOSE_ACK=<write>[:<count>]` (runyard.faults.lost_ack): after that write's transaction has committed,
`TaskLeases` raises the OperationalError a dropped connection raises ("server closed the connection
unexpectedly"), the first <count> times. What the worker does then is runyard's own code, unchanged:

- claim: the task is Running under a lease nobody holds; the worker never runs that attempt, the lease lapses
  and the task is claimed again as attempt 2, no sooner than a whole lease after the lost claim;
- finish: the worker's `_write` tries again, finds its lease gone (the end was saved) and stops: one end, one
  event, one set of tables, no second attempt;
- heartbeat: the lease was extended; the worker tries again at the next beat and the task goes on;
- release: the task was given back; the retry finds the lease gone, and the next worker runs it as attempt 2.

Each case runs on both stores, then stops the workers and checks I1-I7.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.store.database import Store
from runyard.worker.worker import WRITE_RETRY_DELAYS_SECONDS
from tests.factories import make_operation, sleep_task
from tests.reliability.db import (
    attempt_log,
    attempt_times,
    events,
    launch,
    messages,
    run_state,
    run_status,
    table_counts,
    task_row,
)
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import LEASE_SECONDS, WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
TRIES = len(WRITE_RETRY_DELAYS_SECONDS) + 1
LOST = "server closed the connection unexpectedly"
SAVED_BY_AN_EARLIER_TRY = "an earlier try may have saved it before the connection broke"
STOPPING = "stopping: finishing running tasks"


def lose(ack: str) -> dict[str, str]:
    return {"RUNYARD_LOSE_ACK": ack}


def final_status(store: Store, run_id: int, worker: WorkerProcess) -> RunStatus:
    def ended() -> RunStatus | None:
        status = run_status(store, run_id)
        return status if status.is_final else None

    return wait_until(ended, timeout=TIMEOUT, what=f"run {run_id} to end", alive=[worker])


def started_lines(log: str, task_id: int, name: str) -> list[str]:
    """The worker's "task N (name) attempt A started" lines: what it really ran."""
    return [line for line in log.splitlines() if f"task {task_id} ({name}) attempt" in line and "started" in line]


def stop_and_check(store: Store, home: Path, *stopping: WorkerProcess) -> None:
    for worker in stopping:
        assert worker.terminate() == 0, worker.log()
        assert "Traceback" not in worker.log(), worker.log()
    check_invariants(store, home / "warehouse", staging_root=home / "staging")


def test_a_claim_whose_answer_was_lost_runs_once_as_attempt_2_after_its_lease(
    store: Store, workers: Workers, home: Path
) -> None:
    operation_id = make_operation(
        store,
        tasks=[
            sleep_task("first", 0.4, units=4, params={"records_per_unit": 5}),
            sleep_task("second", 0.1, depends_on=["first"]),
        ],
    )
    run_id = launch(store, operation_id)
    worker = workers.start(extra_env=lose("claim"))

    assert final_status(store, run_id, worker) is RunStatus.COMPLETED, run_state(store, run_id)
    first, second = task_row(store, run_id, "first"), task_row(store, run_id, "second")
    me = worker.worker_id
    assert attempt_log(store, first["id"]) == [(1, "lease_expired", me), (2, "completed", me)], run_state(store, run_id)
    assert attempt_log(store, second["id"]) == [(1, "completed", me)]
    assert (first["status"], first["attempt"]) == (TaskStatus.COMPLETED.value, 2)
    assert first["records_processed"] == 20  # attempt 2 counted from zero, and only attempt 2 ran

    log = worker.log()
    assert "cannot claim work" in log, log
    assert LOST in log, log
    # The worker never ran the attempt whose claim it thought had failed: no two runs of the task at once.
    assert [line.rpartition(" task ")[2] for line in started_lines(log, first["id"], "first")] == [
        f"{first['id']} (first) attempt 2 started"
    ], log
    # Attempt 2 was taken only once attempt 1's lease (counted from its claim, database clock) had lapsed.
    lost_claim, _ = attempt_times(store, first["id"], 1)
    retaken, _ = attempt_times(store, first["id"], 2)
    assert retaken - lost_claim >= timedelta(seconds=LEASE_SECONDS), (lost_claim, retaken)
    assert any("stopped responding" in text for text in messages(store, first["id"], "warning"))
    assert events(store, run_id, "task_claimed") == 3  # attempt 1 (lost), attempt 2, second
    assert events(store, run_id, "run_finished") == 1
    stop_and_check(store, home, worker)


def test_a_finish_whose_answer_was_lost_is_saved_once_and_not_run_again(
    store: Store, workers: Workers, home: Path
) -> None:
    operation_id = make_operation(
        store,
        tasks=[
            sleep_task("first", 0.3, units=3, params={"records_per_unit": 5, "table": "items"}),
            sleep_task("second", 0.1, depends_on=["first"]),
        ],
    )
    run_id = launch(store, operation_id)
    worker = workers.start(extra_env=lose("finish"))

    assert final_status(store, run_id, worker) is RunStatus.COMPLETED, run_state(store, run_id)
    first, second = task_row(store, run_id, "first"), task_row(store, run_id, "second")
    me = worker.worker_id
    assert attempt_log(store, first["id"]) == [(1, "completed", me)], run_state(store, run_id)
    assert attempt_log(store, second["id"]) == [(1, "completed", me)]
    assert (first["status"], first["attempt"]) == (TaskStatus.COMPLETED.value, 1)
    # The end was written once: its tables, counts and events are not doubled by the retry.
    assert table_counts(store, first["id"]) == [("items", 15)]
    assert first["records_processed"] == 15
    assert events(store, run_id, "task_finished") == 2
    assert events(store, run_id, "task_claimed") == 2
    assert events(store, run_id, "run_finished") == 1

    log = worker.log()
    assert f"could not save the end of the task, try 1 of {TRIES}: " in log, log
    assert LOST in log, log
    assert SAVED_BY_AN_EARLIER_TRY in log, log  # the retry found its lease gone and stopped
    assert "abandons the task" not in log, log
    assert len(started_lines(log, first["id"], "first")) == 1, log
    stop_and_check(store, home, worker)


def test_heartbeats_whose_answers_were_lost_leave_the_task_running(store: Store, workers: Workers, home: Path) -> None:
    """Three lost acknowledgements in a row (0.9 s of beats, under the 2 s lease): each renewal was committed, so
    the worker keeps its lease and the task completes as attempt 1."""
    operation_id = make_operation(store, tasks=[sleep_task("long", 1.8, units=18)])
    run_id = launch(store, operation_id)
    worker = workers.start(extra_env=lose("heartbeat:3"))

    assert final_status(store, run_id, worker) is RunStatus.COMPLETED, run_state(store, run_id)
    long = task_row(store, run_id, "long")
    assert attempt_log(store, long["id"]) == [(1, "completed", worker.worker_id)], run_state(store, run_id)
    assert long["heartbeat_at"] is not None

    log = worker.log()
    renewals_failed = [line for line in log.splitlines() if "could not renew its lease" in line]
    assert len(renewals_failed) == 3, log
    assert all(LOST in line for line in renewals_failed), log
    assert "lease lost" not in log, log
    assert "stopping the task" not in log, log
    assert len(started_lines(log, long["id"], "long")) == 1, log
    stop_and_check(store, home, worker)


def test_progress_sent_with_a_heartbeat_whose_answer_was_lost_is_counted_once(
    store: Store, workers: Workers, home: Path
) -> None:
    operation_id = make_operation(store, tasks=[sleep_task("long", 1.2, units=12, params={"records_per_unit": 1})])
    run_id = launch(store, operation_id)
    worker = workers.start(extra_env=lose("heartbeat"))

    assert final_status(store, run_id, worker) is RunStatus.COMPLETED, run_state(store, run_id)
    long = task_row(store, run_id, "long")
    assert attempt_log(store, long["id"]) == [(1, "completed", worker.worker_id)], run_state(store, run_id)
    assert "could not renew its lease" in worker.log(), worker.log()  # the fault did happen
    stop_and_check(store, home, worker)
    assert (long["records_processed"], long["latency_count"]) == (12, 12)


def test_a_release_whose_answer_was_lost_gives_the_task_back_once(store: Store, workers: Workers, home: Path) -> None:
    """Two SIGTERMs give the running task back at once; the release commits, its answer is lost, the retry finds
    the lease gone; the worker exits 0 and the next worker runs the task as attempt 2."""
    operation_id = make_operation(store, tasks=[sleep_task("long", 2.5, units=25)])
    run_id = launch(store, operation_id)
    a = workers.start(extra_env=lose("release"))
    wait_until(
        lambda: task_row(store, run_id, "long")["status"] == TaskStatus.RUNNING.value,
        timeout=TIMEOUT,
        what="A to run `long`",
        alive=[a],
    )
    b = workers.start()  # idle until A gives the task back: it starts while A runs, to keep the test short
    a.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: STOPPING in a.log(), timeout=TIMEOUT, what="A to start its grace", alive=[a])
    a.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: not a.alive(), timeout=TIMEOUT, what="A to exit")
    assert a.returncode == 0, a.log()
    log = a.log()
    assert f"could not give the task back, try 1 of {TRIES}: " in log, log
    assert LOST in log, log
    assert SAVED_BY_AN_EARLIER_TRY in log, log  # the retry found the lease gone: the release had been saved

    assert final_status(store, run_id, b) is RunStatus.COMPLETED, run_state(store, run_id)
    long = task_row(store, run_id, "long")
    assert attempt_log(store, long["id"]) == [(1, "released", a.worker_id), (2, "completed", b.worker_id)]
    assert len([text for text in messages(store, long["id"], "warning") if "given back" in text]) == 1
    assert events(store, run_id, "task_claimed") == 2
    stop_and_check(store, home, b)
