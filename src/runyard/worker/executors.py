"""The registry of task executors: a name in a plan -> the function that does the work."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from runyard.worker.context import TaskContext, TaskFailed

ExecutorFn = Callable[[TaskContext], None]


@dataclass(frozen=True)
class Executor:
    name: str
    run: ExecutorFn
    description: str


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


def default_registry() -> dict[str, Executor]:
    return dict(BUILTIN)
