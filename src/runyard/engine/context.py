"""What a stage sees of the task it runs: who it is, what it reads, and how it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


class StageContext(Protocol):
    """Implemented by the worker's TaskContext; stages depend on this, not on the worker."""

    @property
    def params(self) -> Mapping[str, Any]: ...

    @property
    def identity(self) -> TaskIdentity: ...

    @property
    def inputs(self) -> tuple[TaskOutput, ...]: ...

    def checkpoint(self) -> None: ...

    def add_records(self, count: int) -> None: ...

    def record_latency(self, milliseconds: float) -> None: ...

    def message(self, level: str, text: str) -> None: ...

    def table(self, name: str, record_count: int) -> None: ...


class StageFailed(RunyardError):
    """A stage cannot go on; its message says why, for the data admin."""
