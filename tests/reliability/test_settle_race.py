"""Tasks of one run ending at the same instant, and every writer of runs and tasks racing, on both databases.

On PostgreSQL (READ COMMITTED) two tasks of a run finishing in two transactions used to each see the
other still running: neither made the next task ready and the run stayed Running forever. And writers
that lock a run and its tasks in different orders deadlock. These tests drive the real services from
several threads, each with its own connections, against real databases.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.errors import CancelNotAllowed, LeaseLost
from runyard.services.runs import RunService
from runyard.services.sweep import sweep
from runyard.services.tasks import Claim, Outcome, TaskLeases
from runyard.store.database import Store
from runyard.store.tables import runs, tasks
from tests.factories import make_operation, sleep_task
from tests.reliability.db import HANG_LIMIT, launch, psycopg_dsn, run_status, task_row, wait_for

LEASE = 30.0  # long: no lease lapses in the fork-join test
FORK_JOIN_RUNS = 20


@contextmanager
def held_attempt_rows(store: Store, task_ids: list[int], finishers: int) -> Iterator[None]:
    """PostgreSQL: hold the attempt-log rows of `task_ids` until `finishers` transactions wait on locks.

    A finish writes its task's end, then closes the attempt in the log, then settles the run. Holding the
    log rows stops every finisher after its task's write and before its settle; releasing them lets both
    settle together: the old race, made to happen on every run instead of now and then. Whatever order the
    finish takes its locks in, `finishers` of them end up waiting on a lock, so this cannot hang a fix.
    """
    if store.is_sqlite:  # BEGIN IMMEDIATE serializes SQLite's writers: there is nothing to line up
        yield
        return
    with psycopg.connect(psycopg_dsn(store)) as gate, psycopg.connect(psycopg_dsn(store), autocommit=True) as probe:
        gate.execute("SELECT 1 FROM task_attempts WHERE task_id = ANY(%s) FOR UPDATE", (task_ids,))
        gate_pid = gate.info.backend_pid

        def waiting() -> bool:
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> %s AND wait_event_type = 'Lock'",
                (gate_pid,),
            ).fetchone()
            return row is not None and row[0] >= finishers

        yield
        wait_for(waiting, f"{finishers} finishing transactions to wait on the held rows")
        gate.rollback()


def fork_join(store: Store, name: str) -> int:
    """An operation whose `left` and `right` run side by side, then `join` after both."""
    return make_operation(
        store,
        tasks=[sleep_task("left"), sleep_task("right"), sleep_task("join", depends_on=["left", "right"])],
        configuration_id=name,
    )


def test_two_tasks_ending_together_make_the_next_one_ready(store: Store, database_url: str) -> None:
    """FORK_JOIN_RUNS runs, each with two tasks finished at once from two connections; none may stall."""
    operations = [fork_join(store, f"fork{n}") for n in range(FORK_JOIN_RUNS)]
    main = TaskLeases(store, lease_seconds=LEASE)
    side_stores = [Store(database_url), Store(database_url)]
    sides = [TaskLeases(side, lease_seconds=LEASE) for side in side_stores]
    stalled: list[int] = []
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="finisher") as pool:
            for operation_id in operations:
                run_id = launch(store, operation_id)
                left, right = main.claim("worker-left"), main.claim("worker-right")
                assert left is not None
                assert right is not None
                assert {left.name, right.name} == {"left", "right"}
                assert left.run_id == right.run_id == run_id
                start = threading.Barrier(2)

                def finish(leases: TaskLeases, claim: Claim, start: threading.Barrier = start) -> None:
                    start.wait(timeout=HANG_LIMIT)
                    leases.finish(claim, Outcome(TaskStatus.COMPLETED))

                with held_attempt_rows(store, [left.task_id, right.task_id], finishers=2):
                    done = [pool.submit(finish, sides[0], left), pool.submit(finish, sides[1], right)]
                for future in done:
                    future.result(timeout=HANG_LIMIT)

                join = task_row(store, run_id, "join")
                if join["ready_at"] is None:
                    stalled.append(run_id)
                    continue
                claim = main.claim("worker-join")
                assert claim is not None
                assert claim.task_id == join["id"]
                main.finish(claim, Outcome(TaskStatus.COMPLETED))
                assert run_status(store, run_id) is RunStatus.COMPLETED
    finally:
        for side in side_stores:
            side.dispose()
    assert stalled == [], f"{len(stalled)} of {FORK_JOIN_RUNS} runs never made `join` ready: {stalled}"


# --- every writer at once --------------------------------------------------------------------------------

STORM_OPERATIONS = 10
STORM_ROUNDS = 8
EXPECTED = (LeaseLost, CancelNotAllowed)  # what racing writers legitimately tell each other


def storm_operation(store: Store, name: str) -> int:
    """Three parallel tasks (one optional), then a load after them: claims, settles and skips in one run."""
    return make_operation(
        store,
        tasks=[
            sleep_task("a", max_attempts=2),
            sleep_task("b", max_attempts=2),
            sleep_task("c", max_attempts=2, required=False),
            sleep_task("load", depends_on=["a", "b", {"task": "c", "soft": True}], max_attempts=2),
        ],
        configuration_id=name,
    )


class Storm:
    """Threads that claim, heartbeat, finish, release, cancel and sweep the same runs until told to stop."""

    def __init__(self, database_url: str, seed: int) -> None:
        self.database_url = database_url
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._seed = seed
        self._threads: list[threading.Thread] = []
        self.run_ids: list[int] = []

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def _thread(self, name: str, body: Callable[[Store, random.Random], None]) -> None:
        def loop() -> None:
            own = Store(self.database_url)
            rng = random.Random(f"{self._seed}-{name}")
            try:
                while not self.stop.is_set():
                    try:
                        body(own, rng)
                    except EXPECTED as expected:
                        self.count(type(expected).__name__)
            except BaseException as error:
                with self._lock:
                    self.errors.append(error)
                self.stop.set()
            finally:
                own.dispose()

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self._threads.append(thread)

    def worker(self, name: str, *, lease_seconds: float) -> None:
        """Claims and ends tasks; with a tiny lease its claims lapse at once and others take them over."""

        def body(own: Store, rng: random.Random) -> None:
            leases = TaskLeases(own, lease_seconds=lease_seconds)
            claim = leases.claim(name)
            if claim is None:
                time.sleep(0.002)
                return
            self.count("claim")
            if rng.random() < 0.5:
                leases.heartbeat(claim)
            roll = rng.random()
            if roll < 0.1:
                leases.release(claim, reason="given back by the storm")
                self.count("release")
                return
            status = TaskStatus.FAILED if roll < 0.2 else TaskStatus.COMPLETED
            leases.finish(claim, Outcome(status, messages=[("info", f"ended by {name}")], tables=[("t", 1)]))
            self.count("finish")

        self._thread(name, body)

    def canceler(self) -> None:
        """Cancels the even-numbered runs at random moments; the others are left to finish."""

        def body(own: Store, rng: random.Random) -> None:
            time.sleep(rng.random() * 0.005)
            RunService(own).cancel(rng.choice(self.run_ids[::2]))
            self.count("cancel")

        self._thread("canceler", body)

    def sweeper(self, name: str) -> None:
        def body(own: Store, rng: random.Random) -> None:
            report = sweep(own, cancel_timeout_seconds=0.0)  # forces every Canceling run at once
            if report.exhausted or report.canceled or report.forced_runs:
                self.count("sweep")

        self._thread(name, body)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=HANG_LIMIT)
        assert not any(thread.is_alive() for thread in self._threads), "a storm thread is stuck"


def final_statuses(store: Store, run_ids: list[int]) -> dict[int, RunStatus]:
    with store.read() as conn:
        rows = conn.execute(sa.select(runs.c.id, runs.c.status).where(runs.c.id.in_(run_ids))).all()
    return {row.id: RunStatus(row.status) for row in rows}


def storm_round(store: Store, database_url: str, operations: list[int], seed: int) -> Storm:
    """Launch a run of each operation, let every kind of writer loose on them until all have ended."""
    storm = Storm(database_url, seed=seed)
    storm.run_ids = [launch(store, operation_id) for operation_id in operations]
    storm.worker("worker-1", lease_seconds=LEASE)
    storm.worker("worker-2", lease_seconds=LEASE)
    storm.worker("worker-lapsing", lease_seconds=0.001)
    storm.canceler()
    storm.sweeper("sweeper-1")
    storm.sweeper("sweeper-2")
    storm.start()
    try:
        wait_for(
            lambda: storm.errors or all(s.is_final for s in final_statuses(store, storm.run_ids).values()),
            "every run to end",
        )
    finally:
        storm.join()
    return storm


def test_claims_finishes_cancels_and_sweeps_together_never_deadlock(store: Store, database_url: str) -> None:
    """On PostgreSQL a deadlock is an error (DeadlockDetected) in one of the threads: there must be none."""
    operations = [storm_operation(store, f"storm{n}") for n in range(STORM_OPERATIONS)]
    for round_ in range(STORM_ROUNDS):
        storm = storm_round(store, database_url, operations, seed=round_)
        assert storm.errors == [], f"round {round_}: {storm.errors!r}"
        statuses = final_statuses(store, storm.run_ids)
        assert all(status.is_final for status in statuses.values()), statuses
        with store.read() as conn:
            left_running = conn.execute(
                sa.select(sa.func.count())
                .select_from(tasks)
                .where(tasks.c.run_id.in_(storm.run_ids), tasks.c.status == TaskStatus.RUNNING.value)
            ).scalar_one()
        assert left_running == 0
        assert storm.counts.get("claim", 0) > 0, storm.counts
