"""A worker: a pool of threads that claim ready tasks and run them, each under a heartbeated lease.

Besides the heartbeats (which keep the leases), one metrics flusher per worker writes the live metrics
of all its running tasks every `metrics_seconds`, in one transaction, and only for tasks that moved.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from runyard.domain.graph import STREAM_STAGE
from runyard.domain.statuses import TaskStatus
from runyard.engine.context import Progress, StopReason, TaskContext, TaskFailed, TaskInterrupted
from runyard.engine.executors import Executor
from runyard.errors import LeaseLost, RunyardError
from runyard.faults import crash_point
from runyard.services.tasks import Claim, Outcome, TaskLeases
from runyard.services.wakeup import Wakeup
from runyard.store.failures import describe_failure

log = logging.getLogger("runyard.worker")

# Saving a task's end (or giving it back) is tried again this long after each failure of the runs
# database (a dropped connection, a deadlock, a lock wait that timed out), then the task is abandoned.
WRITE_RETRY_DELAYS_SECONDS = (0.1, 0.3, 1.0)
# How often `stop()` looks whether `hurry()` was called while it waits for running tasks.
HURRY_CHECK_SECONDS = 0.1


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
        metrics_seconds: float = 1.0,
        task_max_seconds: float | None = None,
        wakeup: Wakeup | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.leases = leases
        self.registry = registry
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.metrics_seconds = metrics_seconds
        self.task_max_seconds = task_max_seconds  # per attempt; None: no limit. Streams never have one
        self.wakeup = wakeup or Wakeup()
        self.worker_id = worker_id or default_worker_id()
        self._stopping = threading.Event()
        # Set by hurry(), which a signal handler may call: a plain flag, since a handler must take no lock.
        self._hurry = False
        self._threads: list[threading.Thread] = []
        self._running: dict[int, tuple[Claim, TaskContext]] = {}
        self._lock = threading.Lock()
        # Held while metrics are taken and written: a task's end waits for a flush under way, so the progress
        # that flush could not write is back in its context before the end takes what is left.
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None

    def start(self) -> None:
        for slot in range(self.concurrency):
            thread = threading.Thread(target=self._slot, name=f"runyard-worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._flusher = threading.Thread(target=self._flush_loop, name="runyard-metrics", daemon=True)
        self._flusher.start()
        log.info("worker %s started with %d slots", self.worker_id, self.concurrency)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Claim nothing more; let running tasks finish within the grace, then give them back. Streams, which
        finish only when canceled, are given back at once; so is every task once `hurry()` was called (before
        or during the grace)."""
        self._stopping.set()
        self.wakeup.notify()
        self._give_back_running(streams_only=True)
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            # In short slices: a hurry() (a second stop signal) during the grace gives the tasks back at once.
            while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                if self._hurry:
                    break
                thread.join(min(left, HURRY_CHECK_SECONDS))
        self._give_back_running(streams_only=False)
        for thread in self._threads:
            thread.join(self.heartbeat_seconds + 5)
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(self.metrics_seconds + 5)

    def hurry(self) -> None:
        """Stop waiting for running tasks: `stop()` gives them back at once (each at its next checkpoint), and
        nothing more is claimed. Safe to call from a signal handler: it only sets flags."""
        self._hurry = True

    def _give_back_running(self, *, streams_only: bool) -> None:
        with self._lock:
            for claim, ctx in self._running.values():
                if not streams_only or claim.stage == STREAM_STAGE:
                    ctx.stop(StopReason.SHUTDOWN)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def _slot(self) -> None:
        """Claim and run tasks until stopped. Nothing a task or the database does ends this loop."""
        while not self._stopping.is_set() and not self._hurry:
            generation = self.wakeup.generation
            try:
                claim = self.leases.claim(self.worker_id)
            except Exception as error:
                log.warning(
                    "cannot claim work (%s); trying again",
                    describe_failure(error),
                    exc_info=not isinstance(error, sa.exc.DBAPIError),  # a bug's traceback, not a driver's
                )
                self._stopping.wait(self.poll_seconds)
                continue
            if claim is None:
                self.wakeup.wait(self.poll_seconds, since=generation)
                continue
            crash_point("claim.after_commit")
            try:
                self.execute(claim)
            except Exception:
                log.exception("task %d (%s) attempt %d: unexpected error in the worker", *_label(claim))

    def execute(self, claim: Claim) -> None:
        ctx = TaskContext(claim.identity, claim.params, claim.inputs)
        with self._lock:
            self._running[claim.task_id] = (claim, ctx)
        if self._hurry or self._stopping.is_set():
            # Claimed just as the worker was told to stop: a claim that began before the stop can commit after it
            # (on SQLite it waits its turn for the write lock), even of a stream the stop has just given back.
            # Nothing claimed after the stop runs: it goes back at once.
            ctx.stop(StopReason.SHUTDOWN)
        done = threading.Event()
        thread = threading.Thread(target=self._heartbeat, args=(claim, ctx, done), daemon=True)
        thread.start()
        overdue = self._max_run_timer(claim, ctx)
        try:
            outcome = self._run_executor(claim, ctx)
        finally:
            if overdue is not None:
                overdue.cancel()
            done.set()
            thread.join()
            with self._lock:
                self._running.pop(claim.task_id, None)
            with self._flush_lock:  # a flush that took this task's progress has given back what it did not write
                pass
        self._record(claim, ctx, outcome)

    def _max_run_timer(self, claim: Claim, ctx: TaskContext) -> threading.Timer | None:
        """Stops the task (its on-stop hooks end a blocked read) once it has run task_max_seconds."""
        if self.task_max_seconds is None or claim.stage == STREAM_STAGE:
            return None
        timer = threading.Timer(self.task_max_seconds, ctx.stop, args=(StopReason.MAX_RUN_TIME,))
        timer.name = f"runyard-max-run-{claim.task_id}"
        timer.daemon = True
        timer.start()
        return timer

    def _run_executor(self, claim: Claim, ctx: TaskContext) -> Outcome | StopReason:
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
        return Outcome(status, tuple(ctx.messages), tuple(ctx.tables), tuple(ctx.spawned))

    def _record(self, claim: Claim, ctx: TaskContext, outcome: Outcome | StopReason) -> None:
        if outcome is StopReason.LEASE_LOST:
            log.warning("task %d attempt %d: lease lost; abandoning without writing", claim.task_id, claim.attempt)
            return
        if outcome is StopReason.SHUTDOWN:
            reason = f"Worker {self.worker_id} stopped; the task was given back"
            self._write(claim, "give the task back", lambda: self.leases.release(claim, reason=reason))
            return
        if outcome is StopReason.CANCEL:
            outcome = Outcome(TaskStatus.CANCELED, (*ctx.messages, ("warning", "Stopped: the run was canceled")))
        if outcome is StopReason.MAX_RUN_TIME:
            limit = _duration(self.task_max_seconds or 0)
            text = f"Stopped: the task ran longer than {limit}, the most a task may run (RUNYARD_TASK_MAX_SECONDS)"
            outcome = _failed(ctx, text)
        assert isinstance(outcome, Outcome)
        ended = outcome
        progress = ctx.take_progress()  # taken once: every try writes the same counts
        if self._write(claim, "save the end of the task", lambda: self.leases.finish(claim, ended, progress)):
            log.info("task %d (%s) attempt %d: %s", *_label(claim), ended.status.label)

    def _write(self, claim: Claim, what: str, write: Callable[[], None]) -> bool:
        """Run one of the task's final writes, trying again when the runs database fails for a moment.

        False when it was not written: the task is then abandoned, and its lease lapses. A lapsed lease
        is what the rest of runyard already handles: another claim runs the task again (attempt + 1),
        or the scheduler's sweep marks it Failed once it is out of attempts.
        """
        tries = len(WRITE_RETRY_DELAYS_SECONDS) + 1
        for number in range(1, tries + 1):
            try:
                write()
                return True
            except LeaseLost as lost:
                if number > 1:  # the connection may have dropped after the commit of an earlier try
                    log.warning("%s (an earlier try may have saved it before the connection broke)", lost)
                else:
                    log.warning("%s", lost)
                return False
            except sa.exc.DBAPIError as error:
                problem = describe_failure(error)
                if not _transient(error):
                    break
                if number < tries:
                    delay = WRITE_RETRY_DELAYS_SECONDS[number - 1]
                    log.warning(
                        "task %d (%s) attempt %d: could not %s, try %d of %d: %s; trying again in %.1f s",
                        *_label(claim),
                        what,
                        number,
                        tries,
                        problem,
                        delay,
                    )
                    time.sleep(delay)
            except Exception as error:
                log.exception("task %d (%s) attempt %d: could not %s", *_label(claim), what)
                problem = describe_failure(error)
                break
        log.error(
            "task %d (%s) attempt %d: could not %s after %d tries: %s. This worker abandons the task "
            "and goes on with other work; within %d s its lease lapses, and then the task is run again, "
            "or marked Failed if it is out of attempts.",
            *_label(claim),
            what,
            number,
            problem,
            int(self.leases.lease.total_seconds()),
        )
        return False

    def flush_metrics(self) -> int:
        """Write the progress of every running task that moved since the last flush, in one transaction.

        Returns how many tasks were written. Progress that could not be written goes back to its task: the next
        flush, a heartbeat or the task's end writes it, so the totals stay exact.
        """
        with self._flush_lock:
            with self._lock:
                running = list(self._running.values())
            batch = [(claim, progress) for claim, ctx in running if not (progress := ctx.take_progress()).empty]
            if not batch:
                return 0
            try:
                skipped = {claim.task_id for claim in self.leases.write_metrics(batch)}
            except Exception:
                self._give_back(running, batch, {claim.task_id for claim, _ in batch})
                raise
            self._give_back(running, batch, skipped)
            return len(batch) - len(skipped)

    def _give_back(
        self, running: list[tuple[Claim, TaskContext]], batch: list[tuple[Claim, Progress]], task_ids: set[int]
    ) -> None:
        contexts = {claim.task_id: ctx for claim, ctx in running}
        for claim, progress in batch:
            if claim.task_id in task_ids:
                contexts[claim.task_id].give_back_progress(progress)

    def _flush_loop(self) -> None:
        """Flush metrics every metrics_seconds until the worker is closed; a failed flush is tried at the next."""
        while not self._closed.wait(self.metrics_seconds):
            try:
                self.flush_metrics()
            except Exception as error:
                log.warning(
                    "could not write the live metrics of running tasks (%s); trying again in %.1f s",
                    describe_failure(error),
                    self.metrics_seconds,
                    exc_info=not isinstance(error, sa.exc.DBAPIError),
                )

    def _heartbeat(self, claim: Claim, ctx: TaskContext, done: threading.Event) -> None:
        """Renew the lease every heartbeat_seconds; a failed renewal is tried again at the next beat.

        When no renewal has worked for a whole lease, another worker may already have taken the task
        over, so the task is stopped as if its lease were lost.
        """
        renewed = time.monotonic()
        lease_seconds = self.leases.lease.total_seconds()
        while not done.wait(self.heartbeat_seconds):
            progress = ctx.take_progress()
            try:
                canceling = self.leases.heartbeat(claim, progress)
            except LeaseLost as lost:  # the task is abandoned: its progress is never written
                log.warning("%s", lost)
                ctx.stop(StopReason.LEASE_LOST)
                return
            except Exception as error:
                ctx.give_back_progress(progress)  # not written: the next heartbeat, or the finish, writes it
                problem = describe_failure(error)
                silent = time.monotonic() - renewed
                if silent > lease_seconds:
                    log.error(
                        "task %d (%s) attempt %d: its lease could not be renewed for %.0f s (%s); stopping the "
                        "task, which another worker may already have taken over",
                        *_label(claim),
                        silent,
                        problem,
                    )
                    ctx.stop(StopReason.LEASE_LOST)
                    return
                log.warning(
                    "task %d (%s) attempt %d: could not renew its lease (%s); trying again at the next heartbeat",
                    *_label(claim),
                    problem,
                    exc_info=not isinstance(error, sa.exc.DBAPIError),
                )
                continue
            renewed = time.monotonic()
            if canceling:
                crash_point("cancel.after_signal")  # told of the cancel, not yet stopped: the sweep must end it
                ctx.stop(StopReason.CANCEL)


def _transient(error: sa.exc.DBAPIError) -> bool:
    """Errors that trying again can cure: a lost connection, a deadlock, a lock or statement timeout."""
    return error.connection_invalidated or isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)


def _label(claim: Claim) -> tuple[int, str, int]:
    return claim.task_id, claim.name, claim.attempt


def _duration(seconds: float) -> str:
    """6 h, 90 min, 2.5 s: the way an admin set the limit."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _failed(ctx: TaskContext, text: str) -> Outcome:
    return Outcome(TaskStatus.FAILED, (*ctx.messages, ("error", text)), tuple(ctx.tables))
