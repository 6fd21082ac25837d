"""The worker's registry entries: a name in a plan -> the function that does the work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runyard.engine.context import TaskContext

if TYPE_CHECKING:
    from runyard.engine.resources import EngineResources

ExecutorFn = Callable[[TaskContext], None]
Stage = Callable[[TaskContext, "EngineResources"], None]


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
        stage(ctx, resources)

    return run
