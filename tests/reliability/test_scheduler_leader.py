"""One scheduler leads among real `runyard worker` processes; when the leader is killed another takes over, and no
schedule tick fires twice across the takeover.

Leadership is read from the processes' logs ("scheduler: leading" / "scheduler: standing by", written by
runyard.worker.scheduler), ticks from the runs database. The operation's schedule is every minute and its last change
is set two minutes back, so that a tick is owed as soon as a process leads: no test waits for the clock.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services.operations import deploy
from runyard.store.database import Store
from runyard.store.tables import operation_schedules, operations, runs
from tests.factories import make_account
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

LEADING = "scheduler: leading"
STANDING_BY = "scheduler: standing by"
START_TIMEOUT = 30.0  # two processes starting on a busy machine
TAKEOVER_SECONDS = 10.0  # the follower tries every RUNYARD_SCHEDULER_SECONDS (1 s); the lock is let go at the kill


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def every_minute(store: Store, configuration_id: str) -> int:
    """A scheduled `tasks` operation that owes its latest minute tick at once; its id."""
    make_account(store)
    spec = TaskGraphOperation.model_validate(
        {
            "configuration_type": "tasks",
            "configuration_id": configuration_id,
            "schedule": "* * * * *",
            "tasks": [{"name": "Process [employees]", "executor": "noop"}],
        }
    )
    (deployed,) = deploy(store, [spec], BUILTIN)
    with store.write() as conn:
        conn.execute(
            operations.update()
            .where(operations.c.id == deployed.operation_id)
            .values(updated_at=store.now(conn) - timedelta(minutes=2))
        )
    return deployed.operation_id


def last_tick(store: Store, operation_id: int) -> datetime | None:
    with store.read() as conn:
        value = conn.execute(
            sa.select(operation_schedules.c.last_tick_at).where(operation_schedules.c.operation_id == operation_id)
        ).scalar()
    return value if isinstance(value, datetime) else None


def schedule_runs(store: Store, operation_id: int) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(runs.c.operation_id == operation_id, runs.c.trigger == "schedule")
            ).scalar_one()
        )


def roles(a: WorkerProcess, b: WorkerProcess) -> tuple[WorkerProcess, WorkerProcess] | None:
    """(leader, follower) once one process leads and the other stands by."""
    a_log, b_log = a.log(), b.log()
    assert not (LEADING in a_log and LEADING in b_log), f"two leaders:\n{a_log}\n---\n{b_log}"
    if LEADING in a_log and STANDING_BY in b_log:
        return a, b
    if LEADING in b_log and STANDING_BY in a_log:
        return b, a
    return None


def test_one_process_leads_and_the_other_takes_over_when_it_is_killed(store: Store, workers: Workers) -> None:
    first = every_minute(store, "every-minute")
    a, b = workers.start(), workers.start()
    leader, follower = wait_until(
        lambda: roles(a, b), timeout=START_TIMEOUT, what="one worker to lead, the other to stand by", alive=[a, b]
    )
    first_tick = wait_until(
        lambda: last_tick(store, first), timeout=START_TIMEOUT, what="the leader to fire the tick", alive=[leader]
    )
    assert LEADING not in follower.log()

    assert leader.kill() == -signal.SIGKILL
    killed = time.monotonic()
    wait_until(
        lambda: LEADING in follower.log(), timeout=TAKEOVER_SECONDS, what="the follower to take over", alive=[follower]
    )
    took_over = time.monotonic() - killed

    # A tick owed only after the takeover: once it fires, the new leader has looked at the first schedule too.
    second = every_minute(store, "every-minute-too")
    wait_until(lambda: last_tick(store, second), timeout=START_TIMEOUT, what="the new leader to fire", alive=[follower])
    final_tick = last_tick(store, first)
    assert final_tick is not None
    minutes = int((final_tick - first_tick) / timedelta(minutes=1))
    # One run per minute tick from the first to the last handled (a minute may pass during the test), never two.
    assert schedule_runs(store, first) == minutes + 1, f"{first_tick} .. {final_tick}\n{follower.log()}"
    assert schedule_runs(store, second) == 1
    assert took_over < TAKEOVER_SECONDS
