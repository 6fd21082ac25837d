"""A stage that meets a TransientError (the warehouse file held by another process) waits and runs again.

What the real processes of tests/reliability/test_warehouse_lock.py do not reach: a failed try's reports are not
kept, a cancel ends the pause at once, and a wait of 0 fails at the first refusal.
"""

from __future__ import annotations

import re

import pytest

from runyard.engine.context import StopReason, TaskContext, TaskFailed, TaskIdentity, TaskInterrupted
from runyard.engine.executors import FIRST_PAUSE_SECONDS, wait_out_transient
from runyard.warehouse.base import WarehouseBusy, WarehouseUnavailable

BUSY = WarehouseBusy("warehouse/acme.duckdb", pid=4242, program="runyard")


def context() -> TaskContext:
    return TaskContext(TaskIdentity("acme", 1, "run-1", "incremental", "doubled", 1, None))


def test_a_retried_stage_reports_once_and_says_how_long_it_waited() -> None:
    ctx = context()
    tries: list[int] = []

    def stage() -> None:
        tries.append(len(tries) + 1)
        ctx.message("info", f"try {len(tries)} started")
        ctx.table("doubled", 7)
        if len(tries) == 1:
            raise BUSY
        ctx.message("info", "done")

    wait_out_transient(ctx, stage, wait_seconds=60)

    assert tries == [1, 2]
    assert ctx.tables == [("doubled", 7)]
    assert ctx.messages[:2] == [("info", "try 2 started"), ("info", "done")]
    ((level, waited),) = ctx.messages[2:]
    assert level == "warning"
    found = re.fullmatch(r"Waited ([0-9.]+) s because (.*)", waited)
    assert found is not None, waited
    assert float(found[1]) >= FIRST_PAUSE_SECONDS  # the pause, and the first try
    assert found[2] == "the warehouse file warehouse/acme.duckdb is in use by another process (runyard, PID 4242)"
    assert ctx.progress.note == f"waiting: {BUSY}; will try again in 0.2 s"  # the first pause, 0.25 s, to a tenth


def test_a_cancel_during_the_wait_stops_the_task_without_another_try() -> None:
    ctx = context()
    tries = 0

    def stage() -> None:
        nonlocal tries
        tries += 1
        ctx.stop(StopReason.CANCEL)  # as the heartbeat does when the run is canceled
        raise BUSY

    with pytest.raises(TaskInterrupted) as stopped:
        wait_out_transient(ctx, stage, wait_seconds=3600)  # the pause would be long; the cancel ends it
    assert stopped.value.reason is StopReason.CANCEL
    assert tries == 1


def failure_without_waiting(ctx: TaskContext, error: Exception) -> str:
    """What the task fails with when a stage always raises `error` and no wait is allowed."""
    times = iter([100.0, 100.0, 100.0])

    def stage() -> None:
        raise error

    with pytest.raises(TaskFailed) as failed:
        wait_out_transient(ctx, stage, wait_seconds=0, clock=lambda: next(times))
    return str(failed.value)


def test_no_wait_allowed_fails_at_the_first_refusal_naming_the_holder_and_the_setting() -> None:
    ctx = context()
    assert failure_without_waiting(ctx, BUSY) == (
        "the warehouse file warehouse/acme.duckdb is in use by another process (runyard, PID 4242); this task "
        "waited 0 s for it and gives up (RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS is 0 s). Stop that process, or let "
        "one process alone run the tasks that use this warehouse"
    )
    assert ctx.messages == []


def test_a_warehouse_that_cannot_be_reached_gives_advice_about_the_server_not_a_file() -> None:
    unreachable = WarehouseUnavailable("db.internal:5432/warehouse", "connection refused")
    assert failure_without_waiting(context(), unreachable) == (
        "the warehouse at db.internal:5432/warehouse is unavailable: connection refused; this task waited 0 s for it "
        "and gives up (RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS is 0 s). Check that the warehouse's PostgreSQL server is "
        "up and accepts connections from this worker (RUNYARD_WAREHOUSE_URL), then retry the run"
    )
