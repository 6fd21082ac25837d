"""What an executor sees of its task: parameters, checkpoints, metrics, messages and tables."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from runyard.engine.context import TaskIdentity, TaskOutput
from runyard.errors import RunyardError
from runyard.services.tasks import Claim, Progress


class StopReason(StrEnum):
    CANCEL = "cancel"  # the run is being canceled
    LEASE_LOST = "lease_lost"  # another worker took the task over, or the lease lapsed
    SHUTDOWN = "shutdown"  # this worker is stopping


class TaskInterrupted(RunyardError):
    """Raised at a checkpoint when the task must stop."""

    def __init__(self, reason: StopReason) -> None:
        self.reason = reason
        super().__init__(f"task interrupted: {reason.value}")


class TaskFailed(RunyardError):
    """An executor's way to fail its task with a message for the data admin."""


@dataclass
class TaskContext:
    claim: Claim
    progress: Progress = field(default_factory=Progress)
    messages: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, int]] = field(default_factory=list)
    interrupt: threading.Event = field(default_factory=threading.Event)
    interrupt_reason: StopReason = StopReason.SHUTDOWN
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def params(self) -> dict[str, Any]:
        return self.claim.params

    @property
    def identity(self) -> TaskIdentity:
        c = self.claim
        return TaskIdentity(c.account, c.operation_id, c.run_key, c.run_type, c.name, c.attempt, c.table)

    @property
    def inputs(self) -> tuple[TaskOutput, ...]:
        return self.claim.inputs

    def checkpoint(self) -> None:
        """Call between units of work (pages, batches): stops the task if it must stop."""
        if self.interrupt.is_set():
            raise TaskInterrupted(self.interrupt_reason)

    def stop(self, reason: StopReason) -> None:
        self.interrupt_reason = reason
        self.interrupt.set()

    def add_records(self, count: int) -> None:
        with self._lock:
            self.progress.records += count
            self.progress.last_record_at = datetime.now(UTC)

    def record_latency(self, milliseconds: float) -> None:
        with self._lock:
            self.progress.latencies_ms.append(milliseconds)

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
