"""The `tasks` type's executors: noop, sleep and fail (demos, smoke checks, tests)."""

from __future__ import annotations

import time

from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.executors import Executor
from runyard.engine.resources import EngineResources


def noop(ctx: TaskContext) -> None:
    """Does nothing: a placeholder task."""
    ctx.checkpoint()


def sleep(ctx: TaskContext) -> None:
    """Sleeps `seconds` in `units` steps, counting `records_per_unit` records per step, checking in between.

    Optional `table`: reports that table with the records counted.
    """
    seconds = float(ctx.params.get("seconds", 1.0))
    units = max(1, int(ctx.params.get("units", 10)))
    per_unit = int(ctx.params.get("records_per_unit", 0))
    for _ in range(units):
        ctx.checkpoint()
        started = time.perf_counter()
        time.sleep(seconds / units)
        ctx.record_latency((time.perf_counter() - started) * 1000)
        if per_unit:
            ctx.add_records(per_unit)
    ctx.checkpoint()
    table = ctx.params.get("table")
    if table:
        ctx.table(str(table), units * per_unit)


def fail(ctx: TaskContext) -> None:
    """Fails with `message` (for tests and demos of the failure path), after `seconds`."""
    time.sleep(float(ctx.params.get("seconds", 0.0)))
    ctx.checkpoint()
    raise TaskFailed(str(ctx.params.get("message", "this task is set up to fail")))


BUILTIN: dict[str, Executor] = {
    e.name: e
    for e in (
        Executor("noop", noop, "does nothing"),
        Executor("sleep", sleep, "sleeps, counting records: for demos and tests"),
        Executor("fail", fail, "fails with a message: for demos and tests"),
    )
}


def executors(_resources: EngineResources) -> list[Executor]:
    """The built-in executors need no resources."""
    return list(BUILTIN.values())
