"""What an executor sees of the task it runs: who it is, what it reads, and how it reports.

One TaskContext per attempt, made by the worker from its claim. Executors call `checkpoint()`
between units of work (pages, batches, files): it raises TaskInterrupted once the run is being
canceled, the lease was lost or the worker stops. Metrics gathered here are written by the
worker's metrics flusher (every RUNYARD_METRICS_SECONDS) and its heartbeats, and what is left
when the task ends; messages, tables and spawned tasks when the task ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.errors import RunyardError


@dataclass(frozen=True)
class TaskOutput:
    """Where an upstream task's output lives: the run and attempt that produced it.

    A retry reuses a completed extraction, so its output may belong to an earlier run.
    """

    name: str
    run_key: str
    attempt: int
    succeeded: bool
    table: str | None = None


@dataclass(frozen=True)
class TaskIdentity:
    account: str
    operation_id: int
    run_key: str
    run_type: str
    name: str
    attempt: int
    table: str | None
    execution_date: date | None = None  # the run's execution date (kept by a retry), for templates
    run_id: int = 0


class StopReason(StrEnum):
    CANCEL = "cancel"  # the run is being canceled
    LEASE_LOST = "lease_lost"  # another worker took the task over, or the lease lapsed
    SHUTDOWN = "shutdown"  # this worker is stopping
    MAX_RUN_TIME = "max_run_time"  # the task ran longer than RUNYARD_TASK_MAX_SECONDS: it fails


class TaskInterrupted(RunyardError):
    """Raised at a checkpoint when the task must stop."""

    def __init__(self, reason: StopReason) -> None:
        self.reason = reason
        super().__init__(f"task interrupted: {reason.value}")


class TaskFailed(RunyardError):
    """An executor's way to fail its task with a message for the data admin."""


NOTE_LENGTH = 200  # the store's tasks.metrics_note


@dataclass
class Progress:
    """Metrics gathered by a running task since they were last written, and the attempt's running totals.

    The totals make a write idempotent: the store keeps the larger of what it has and the total sent, so progress
    whose write committed but whose answer was lost (and was given back, then sent again) is counted once.
    """

    records: int = 0
    last_record_at: datetime | None = None
    latencies_ms: list[float] = field(default_factory=list)
    bytes: int = 0
    note: str | None = None  # the task's own words on where it is (a watermark, the tables committed)
    records_total: int = 0  # the attempt's, up to this take: never reset by a take
    bytes_total: int = 0
    latency_ms_total: float = 0.0
    latency_count_total: int = 0

    def __post_init__(self) -> None:  # totals count at least what is here (a Progress built with counts alone)
        self.records_total = max(self.records_total, self.records)
        self.bytes_total = max(self.bytes_total, self.bytes)
        self.latency_ms_total = max(self.latency_ms_total, sum(self.latencies_ms))
        self.latency_count_total = max(self.latency_count_total, len(self.latencies_ms))

    @property
    def empty(self) -> bool:
        """Nothing happened since the last take: there is nothing to write."""
        return not (self.records or self.latencies_ms or self.bytes or self.note is not None)

    def add_records(self, count: int, at: datetime) -> None:
        self.records += count
        self.records_total += count
        self.last_record_at = at

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        self.bytes_total += count

    def add_latency(self, milliseconds: float) -> None:
        self.latencies_ms.append(milliseconds)
        self.latency_ms_total += milliseconds
        self.latency_count_total += 1

    def take(self) -> Progress:
        taken = Progress(
            self.records,
            self.last_record_at,
            self.latencies_ms,
            self.bytes,
            self.note,
            self.records_total,
            self.bytes_total,
            self.latency_ms_total,
            self.latency_count_total,
        )
        self.records, self.last_record_at, self.latencies_ms, self.bytes, self.note = 0, None, [], 0, None
        return taken

    def give_back(self, taken: Progress) -> None:
        """Add back progress taken earlier that could not be written (it came before what is here now); the
        totals here already count it."""
        self.records += taken.records
        self.bytes += taken.bytes
        self.last_record_at = self.last_record_at or taken.last_record_at
        self.latencies_ms = [*taken.latencies_ms, *self.latencies_ms]
        self.note = self.note if self.note is not None else taken.note


@dataclass
class TaskContext:
    identity: TaskIdentity
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[TaskOutput, ...] = ()
    progress: Progress = field(default_factory=Progress)
    messages: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, int]] = field(default_factory=list)
    spawned: list[PlannedTask] = field(default_factory=list)
    interrupt: threading.Event = field(default_factory=threading.Event)
    interrupt_reason: StopReason = StopReason.SHUTDOWN
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _on_stop: list[Callable[[], None]] = field(default_factory=list)

    def checkpoint(self) -> None:
        """Call between units of work (pages, batches): stops the task if it must stop."""
        if self.interrupt.is_set():
            raise TaskInterrupted(self.interrupt_reason)

    def stop(self, reason: StopReason) -> None:
        self.interrupt_reason = reason
        self.interrupt.set()
        with self._lock:
            callbacks = list(self._on_stop)
        for callback in callbacks:
            callback()

    @contextmanager
    def on_stop(self, callback: Callable[[], None]) -> Iterator[None]:
        """While inside, `stop` also calls `callback` (from the thread that stops the task): for work that
        reaches no checkpoint for a long time, such as one SQL statement. Called at once if already stopped."""
        with self._lock:
            self._on_stop.append(callback)
        try:
            if self.interrupt.is_set():
                callback()
            yield
        finally:
            with self._lock:
                self._on_stop.remove(callback)

    def add_records(self, count: int) -> None:
        with self._lock:
            self.progress.add_records(count, datetime.now(UTC))

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.progress.add_bytes(count)

    def record_latency(self, milliseconds: float) -> None:
        with self._lock:
            self.progress.add_latency(milliseconds)

    def note(self, text: str) -> None:
        """A short line on where the task is, shown with its live metrics (spec 001's `code`, the run page)."""
        with self._lock:
            self.progress.note = text[:NOTE_LENGTH]

    def take_progress(self) -> Progress:
        with self._lock:
            return self.progress.take()

    def give_back_progress(self, taken: Progress) -> None:
        """Progress taken for a write that failed: the next take writes it with what came since."""
        with self._lock:
            self.progress.give_back(taken)

    def message(self, level: str, text: str) -> None:
        self.messages.append((level, text))

    def table(self, name: str, record_count: int) -> None:
        self.tables.append((name, record_count))

    def spawn(self, tasks: Sequence[PlannedTask]) -> None:
        """Add tasks to this run when this task succeeds (each may depend on this task and on each other)."""
        self.spawned.extend(tasks)
