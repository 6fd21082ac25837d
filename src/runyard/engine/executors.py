"""The worker's registry entries: a name in a plan -> the function that does the work.

Every bound stage waits out a TransientError (the account's DuckDB file held by another process, raised when the
stage opens the warehouse, before it changes anything there; a PostgreSQL warehouse that cannot be reached or
rolled a transaction back): instead of failing, the task stays Running, says so in its live note, and runs the
stage again after a pause (0.25 s, doubling up to 5 s), for at most `EngineResources.warehouse_lock_wait_seconds`
(RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS) in all; then it fails, saying what it waited for and what to do (the
error's `advice`). A cancel, a lost lease, a shutdown or the task's maximum run time
end the pause at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runyard.domain.alert_rules import human_duration
from runyard.engine.context import TaskContext, TaskFailed
from runyard.errors import TransientError

if TYPE_CHECKING:
    from runyard.engine.resources import EngineResources

ExecutorFn = Callable[[TaskContext], None]
Stage = Callable[[TaskContext, "EngineResources"], None]

FIRST_PAUSE_SECONDS = 0.25
MAX_PAUSE_SECONDS = 5.0
WAIT_SETTING = "RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS"

log = logging.getLogger("runyard.engine")


@dataclass(frozen=True)
class Executor:
    name: str
    run: ExecutorFn
    description: str


def bind_stages(stages: Mapping[str, tuple[Stage, str]], resources: EngineResources) -> list[Executor]:
    """Each stage (name -> function, description) with this process's resources, for the executor registry."""
    return [Executor(name, _bind(stage, resources), text) for name, (stage, text) in stages.items()]


def _bind(stage: Stage, resources: EngineResources) -> ExecutorFn:
    def run(ctx: TaskContext) -> None:
        wait_out_transient(ctx, lambda: stage(ctx, resources), wait_seconds=resources.warehouse_lock_wait_seconds)

    return run


def wait_out_transient(
    ctx: TaskContext,
    work: Callable[[], None],
    *,
    wait_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `work`; while it raises TransientError, run it again after a pause, for at most `wait_seconds` in all.

    What a failed try reported (messages, tables, spawned tasks) is dropped before the next, so the try that works
    reports once. Past the wait, TaskFailed says what was busy, how long the task waited and which setting bounds
    it. The pauses end early (TaskInterrupted) when the task must stop.
    """
    started = clock()
    pause = FIRST_PAUSE_SECONDS
    first: TransientError | None = None
    while True:
        kept = (len(ctx.messages), len(ctx.tables), len(ctx.spawned))
        tried_at = clock()
        try:
            work()
        except TransientError as busy:
            del ctx.messages[kept[0] :], ctx.tables[kept[1] :], ctx.spawned[kept[2] :]
            waited = clock() - started
            if waited >= wait_seconds:
                raise TaskFailed(
                    f"{busy}; this task waited {human_duration(waited)} for it and gives up ({WAIT_SETTING} is "
                    f"{human_duration(wait_seconds)}). {busy.advice}"
                ) from busy
            if first is None:
                first = busy
                log.warning(
                    "run %s, task %s: %s; waiting up to %s for it",
                    ctx.identity.run_key,
                    ctx.identity.name,
                    busy,
                    human_duration(wait_seconds),
                )
            delay = min(pause, wait_seconds - waited)
            ctx.note(f"waiting: {busy}; will try again in {human_duration(delay)}")
            ctx.interrupt.wait(delay)
            ctx.checkpoint()
            pause = min(pause * 2, MAX_PAUSE_SECONDS)
            continue
        if first is not None:
            ctx.message("warning", f"Waited {human_duration(tried_at - started)} because {first}")
        return
