"""A worker: a pool of threads that claim ready tasks and run them, each under a heartbeated lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

import sqlalchemy as sa

from runyard.domain.statuses import TaskStatus
from runyard.errors import LeaseLost, RunyardError
from runyard.faults import crash_point
from runyard.services.tasks import Claim, Outcome, TaskLeases
from runyard.services.wakeup import Wakeup
from runyard.worker.context import StopReason, TaskContext, TaskFailed, TaskInterrupted
from runyard.worker.executors import Executor

log = logging.getLogger("runyard.worker")


def default_worker_id(label: str = "worker") -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{label}"


class Worker:
    """Runs `concurrency` task slots in threads until `stop()` is called."""

    def __init__(
        self,
        leases: TaskLeases,
        registry: Mapping[str, Executor],
        *,
        concurrency: int,
        heartbeat_seconds: float,
        poll_seconds: float,
        wakeup: Wakeup | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.leases = leases
        self.registry = registry
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.wakeup = wakeup or Wakeup()
        self.worker_id = worker_id or default_worker_id()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, TaskContext] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for slot in range(self.concurrency):
            thread = threading.Thread(target=self._slot, name=f"runyard-worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker %s started with %d slots", self.worker_id, self.concurrency)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Claim nothing more; let running tasks finish within the grace, then give them back."""
        self._stopping.set()
        self.wakeup.notify()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for ctx in self._running.values():
                ctx.stop(StopReason.SHUTDOWN)
        for thread in self._threads:
            thread.join(self.heartbeat_seconds + 5)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def _slot(self) -> None:
        while not self._stopping.is_set():
            generation = self.wakeup.generation
            try:
                claim = self.leases.claim(self.worker_id)
            except sa.exc.OperationalError as error:
                log.warning("cannot reach the runs database to claim work (%s); retrying", _first_line(error))
                self._stopping.wait(self.poll_seconds)
                continue
            if claim is None:
                self.wakeup.wait(self.poll_seconds, since=generation)
                continue
            crash_point("claim.after_commit")
            self.execute(claim)

    def execute(self, claim: Claim) -> None:
        ctx = TaskContext(claim)
        with self._lock:
            self._running[claim.task_id] = ctx
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, done), daemon=True)
        beat.start()
        try:
            outcome = self._run_executor(ctx)
        finally:
            done.set()
            beat.join()
            with self._lock:
                self._running.pop(claim.task_id, None)
        self._record(ctx, outcome)

    def _run_executor(self, ctx: TaskContext) -> Outcome | StopReason:
        claim = ctx.claim
        executor = self.registry.get(claim.executor)
        if executor is None:
            return _failed(ctx, f"no executor named '{claim.executor}' is installed on worker {self.worker_id}")
        log.info("task %d (%s) attempt %d started", claim.task_id, claim.name, claim.attempt)
        try:
            executor.run(ctx)
        except TaskInterrupted as stop:
            return stop.reason
        except (TaskFailed, RunyardError) as error:
            return _failed(ctx, str(error))
        except Exception as error:
            log.exception("task %d (%s) raised", claim.task_id, claim.name)
            return _failed(ctx, f"Unexpected error: {type(error).__name__}: {error}")
        with_errors = any(level == "error" for level, _ in ctx.messages)
        status = TaskStatus.COMPLETED_WITH_ERRORS if with_errors else TaskStatus.COMPLETED
        return Outcome(status, tuple(ctx.messages), tuple(ctx.tables))

    def _record(self, ctx: TaskContext, outcome: Outcome | StopReason) -> None:
        claim = ctx.claim
        try:
            if outcome is StopReason.LEASE_LOST:
                log.warning("task %d attempt %d: lease lost; abandoning without writing", claim.task_id, claim.attempt)
                return
            if outcome is StopReason.SHUTDOWN:
                self.leases.release(claim, reason=f"Worker {self.worker_id} stopped; the task was given back")
                return
            if outcome is StopReason.CANCEL:
                outcome = Outcome(TaskStatus.CANCELED, (*ctx.messages, ("warning", "Stopped: the run was canceled")))
            assert isinstance(outcome, Outcome)
            self.leases.finish(claim, outcome, ctx.take_progress())
            log.info("task %d (%s) attempt %d: %s", claim.task_id, claim.name, claim.attempt, outcome.status.label)
        except LeaseLost as lost:
            log.warning("%s", lost)

    def _heartbeat(self, ctx: TaskContext, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_seconds):
            try:
                canceling = self.leases.heartbeat(ctx.claim, ctx.take_progress())
            except LeaseLost as lost:
                log.warning("%s", lost)
                ctx.stop(StopReason.LEASE_LOST)
                return
            except sa.exc.OperationalError as error:
                log.warning("heartbeat of task %d failed (%s); will retry", ctx.claim.task_id, _first_line(error))
                continue
            if canceling:
                ctx.stop(StopReason.CANCEL)


def _failed(ctx: TaskContext, text: str) -> Outcome:
    return Outcome(TaskStatus.FAILED, (*ctx.messages, ("error", text)), tuple(ctx.tables))


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
