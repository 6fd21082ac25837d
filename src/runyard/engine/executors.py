"""The worker's registry entries: a name in a plan -> the function that does the work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runyard.engine.context import TaskContext

ExecutorFn = Callable[[TaskContext], None]


@dataclass(frozen=True)
class Executor:
    name: str
    run: ExecutorFn
    description: str
