"""R19: workers whose clocks are wrong neither steal a live task nor miss a dead one.

Each lease decision (a claim of a lapsed task, the fence of every write, the sweep) reads the database's clock,
PostgreSQL's `clock_timestamp()`, never the worker's (runyard.store.dialect.database_now). Here real `runyard worker`
processes run with their wall clock moved by Debian's libfaketime (LD_PRELOAD, FAKETIME="+600" or "-600"): ten
minutes ahead, or behind, of the database and of the other worker.

- A worker ten minutes fast, with a free slot and leading the scheduler, sees the live task of a normal worker
  whose lease (two seconds) it would take for lapsed ten minutes ago if it judged by its own clock: it must not
  claim it, nor sweep it, while it claims other work.
- A normal worker dies (SIGKILL) in the middle of a task; a worker ten minutes slow, which by its own clock would
  wait ten more minutes, takes the task over once its lease has lapsed on the database's clock.

PostgreSQL only: workers on a SQLite store share one machine, and its clock (the store's "now" is that machine's
time), so their clocks cannot disagree. Workers on a PostgreSQL store may run on several hosts, which is where a
wrong clock can happen, and what the database's clock is there for.

libfaketime 0.9.10 (Debian 12) and Python 3.11 need two settings: FAKETIME_DONT_FAKE_MONOTONIC=1 (otherwise every
timed wait on a lock or event sleeps ten more minutes, wolfcw/libfaketime#390), and a `time.sleep` that waits on
an event instead of `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, which that version breaks when the monotonic
clock is not faked (EINVAL, wolfcw/libfaketime#426). The second is a `sitecustomize` on the skewed worker's
PYTHONPATH; only the wall clock (`time.time`, `datetime.now`) is moved, which is what a wrong host clock is.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.store.database import Store
from runyard.store.tables import task_attempts
from tests.factories import make_operation, sleep_task
from tests.reliability.db import attempt_log, has_open_write, launch, run_state, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import LEASE_SECONDS, POLL_SECONDS, WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
SKEW_SECONDS = 600
# A dead worker's task is taken over within its lease, plus the taker's poll and a generous allowance for a busy
# machine: far less than the ten minutes a worker trusting its own slow clock would wait.
TAKEOVER_BOUND = timedelta(seconds=LEASE_SECONDS + POLL_SECONDS + 8)
SITECUSTOMIZE = '''"""time.sleep without clock_nanosleep, for libfaketime 0.9.10 (see test_clock_skew)."""
import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
'''


def libfaketime() -> str:
    """The path of libfaketime's library from `dpkg -L libfaketime`; fail (CI) or skip when it is not installed."""
    listed = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True, timeout=30, check=False)
    found = [line for line in listed.stdout.splitlines() if line.endswith("/libfaketime.so.1")]
    if listed.returncode != 0 or not found:
        message = "libfaketime is not installed (Debian package `faketime`: run scripts/install-system-deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


@pytest.fixture
def store(pg_store: Store) -> Store:
    """This module's tests run on PostgreSQL alone (see the module docstring)."""
    return pg_store


class Skewed:
    """Starts workers whose wall clock is `seconds` off, or right."""

    def __init__(self, workers: Workers, folder: Path) -> None:
        self.workers = workers
        self.library = libfaketime()
        self.site = folder / "faketime-site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def start(self, seconds: int = 0, *, concurrency: int = 1) -> WorkerProcess:
        env = {"RUNYARD_WORKER_CONCURRENCY": str(concurrency)}
        if seconds:
            env.update(
                LD_PRELOAD=self.library,
                FAKETIME=f"{seconds:+d}",
                FAKETIME_DONT_FAKE_MONOTONIC="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(self.site), os.environ.get("PYTHONPATH")])),
            )
        return self.workers.start(extra_env=env)


@pytest.fixture
def skewed(store: Store, tmp_path: Path) -> Iterator[Skewed]:
    home = tmp_path / "home"
    home.mkdir()
    pool = Workers(store.url.render_as_string(hide_password=False), home)
    try:
        yield Skewed(pool, tmp_path)
    finally:
        pool.close()


def running_on(store: Store, run_id: int, name: str, worker: WorkerProcess) -> bool:
    task = task_row(store, run_id, name)
    return bool(task["status"] == TaskStatus.RUNNING.value and task["worker_id"] == worker.worker_id)


def ended(store: Store, run_id: int, alive: list[WorkerProcess]) -> RunStatus:
    def final() -> RunStatus | None:
        status = run_status(store, run_id)
        return status if status.is_final else None

    return wait_until(final, timeout=TIMEOUT, what=f"run {run_id} to end", alive=alive)


def clock_of(worker: WorkerProcess) -> float:
    """How far the worker's wall clock is from this process's, in seconds, read from its log's first timestamp."""
    first = worker.log().split(",", 1)[0]
    return (datetime.strptime(first, "%Y-%m-%d %H:%M:%S") - datetime.now()).total_seconds()


def test_a_worker_ten_minutes_fast_does_not_steal_or_sweep_a_live_task(store: Store, skewed: Skewed) -> None:
    fast = skewed.start(+SKEW_SECONDS, concurrency=2)
    wait_until(
        lambda: "scheduler: leading" in fast.log(), timeout=TIMEOUT, what="the fast worker to lead", alive=[fast]
    )
    assert clock_of(fast) > SKEW_SECONDS - 60, fast.log()  # its clock really is ten minutes ahead
    fast.pause(busy=lambda: has_open_write(store))  # so that the normal worker claims the task
    normal = skewed.start()
    live = make_operation(store, tasks=[sleep_task("live", 3.0, units=30)], configuration_id="live")
    run_id = launch(store, live)
    wait_until(lambda: running_on(store, run_id, "live", normal), timeout=TIMEOUT, what="the normal worker to claim")
    fast.resume()

    # The fast worker, its other slot free and its scheduler sweeping, claims new work while `live` runs...
    probe = make_operation(store, tasks=[sleep_task("probe", 0.1)], configuration_id="probe")
    probe_run = launch(store, probe, worker_running=True)
    assert ended(store, probe_run, [fast, normal]) is RunStatus.COMPLETED
    assert task_row(store, probe_run, "probe")["worker_id"] == fast.worker_id
    assert task_row(store, run_id, "live")["status"] == TaskStatus.RUNNING.value  # ...with `live` still running

    # ...and never takes `live`: it completes at its first attempt, on the normal worker.
    assert ended(store, run_id, [fast, normal]) is RunStatus.COMPLETED, run_state(store, run_id)
    live_task = task_row(store, run_id, "live")
    assert attempt_log(store, live_task["id"]) == [(1, "completed", normal.worker_id)]
    assert "Traceback" not in fast.log()
    assert normal.terminate() == 0, normal.log()
    assert fast.terminate() == 0, fast.log()
    check_invariants(store)


def test_a_dead_workers_task_is_taken_over_within_its_lease_by_a_worker_ten_minutes_slow(
    store: Store, skewed: Skewed
) -> None:
    slow = skewed.start(-SKEW_SECONDS)
    wait_until(
        lambda: "scheduler: leading" in slow.log(), timeout=TIMEOUT, what="the slow worker to lead", alive=[slow]
    )
    assert clock_of(slow) < -(SKEW_SECONDS - 60), slow.log()  # its clock really is ten minutes behind
    slow.pause(busy=lambda: has_open_write(store))
    doomed = skewed.start()
    operation_id = make_operation(store, tasks=[sleep_task("work", 2.0, units=20)])
    run_id = launch(store, operation_id)
    wait_until(
        lambda: running_on(store, run_id, "work", doomed) and task_row(store, run_id, "work")["heartbeat_at"],
        timeout=TIMEOUT,
        what="the doomed worker to claim and heartbeat `work`",
    )
    slow.resume()

    assert doomed.kill() == -signal.SIGKILL
    lapses_at = task_row(store, run_id, "work")["lease_expires_at"]  # nobody renews it any more

    assert ended(store, run_id, [slow]) is RunStatus.COMPLETED, run_state(store, run_id)
    work = task_row(store, run_id, "work")
    assert attempt_log(store, work["id"]) == [(1, "lease_expired", doomed.worker_id), (2, "completed", slow.worker_id)]
    with store.read() as conn:
        taken_at = conn.execute(
            sa.select(task_attempts.c.started_at).where(
                task_attempts.c.task_id == work["id"], task_attempts.c.attempt == 2
            )
        ).scalar_one()
    assert lapses_at <= taken_at <= lapses_at + TAKEOVER_BOUND, (lapses_at, taken_at)
    assert slow.terminate() == 0, slow.log()
    check_invariants(store)
