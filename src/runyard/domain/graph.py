"""A run's task graph: planned tasks, readiness, skipping, and the run's outcome.

A run is a DAG of tasks. A task is ready once every task it depends on has ended and
every *hard* dependency succeeded. If a hard dependency failed (or was skipped or
canceled), the task is skipped without running. A *soft* dependency only has to end:
the Data Load waits for an optional endpoint's ingestion, but loads the other tables
when that endpoint failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard.domain.statuses import (
    TASK_FINAL,
    TASK_SUCCEEDED,
    TASK_UNSUCCESSFUL,
    RunStatus,
    TaskStatus,
)
from runyard.errors import ConfigError

# A task of this stage runs until its run is canceled (an API poll, a CDC stream): a worker that is stopping
# gives it back at once instead of waiting for it to finish.
STREAM_STAGE = "stream"


@dataclass(frozen=True)
class Dependency:
    upstream: str
    soft: bool = False  # the task runs even when this upstream did not succeed


@dataclass(frozen=True)
class PlannedTask:
    """One task of a run as the plan describes it, before it exists in the store."""

    name: str
    executor: str
    stage: str = "task"  # extract, consolidate, ingest, load, hwm, stream, task
    metrics_type: str = "task"  # spec 001: extract, load, task, stream, hwm
    params: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[Dependency, ...] = ()
    required: bool = True  # its failure fails the run; otherwise the run ends Completed with Errors
    max_attempts: int = 3
    reusable: bool = False  # a retry may reuse this task's output instead of running it again
    table: str | None = None  # the table this task works on, if any


def validate_plan(tasks: Sequence[PlannedTask]) -> None:
    """Names are unique, dependencies exist, and there is no cycle."""
    names = [t.name for t in tasks]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two tasks are named '{name}'", field="tasks")
        seen.add(name)
    for task in tasks:
        for dep in task.depends_on:
            if dep.upstream not in seen:
                raise ConfigError(
                    f"task '{task.name}' depends on '{dep.upstream}', which is not a task of this operation",
                    field="tasks",
                )
    _check_acyclic(tasks)


def _check_acyclic(tasks: Sequence[PlannedTask]) -> None:
    cycle = find_cycle({t.name: [d.upstream for d in t.depends_on] for t in tasks})
    if cycle:
        raise ConfigError(f"the tasks depend on each other in a cycle: {' -> '.join(cycle)}", field="tasks")


def find_cycle(upstream: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of the graph (node -> what it depends on), as a path that ends where it starts; None if none."""
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> list[str] | None:
        if state.get(name) == 2:
            return None
        if state.get(name) == 1:
            return [*path[path.index(name) :], name]
        state[name] = 1
        for up in upstream.get(name, ()):
            cycle = visit(up, [*path, name])
            if cycle:
                return cycle
        state[name] = 2
        return None

    for name in upstream:
        cycle = visit(name, [])
        if cycle:
            return cycle
    return None


@dataclass(frozen=True)
class TaskNode:
    """What the graph rules need to know of a task that exists: its key, status and edges."""

    key: int
    status: TaskStatus
    ready: bool = False
    required: bool = True
    depends_on: tuple[tuple[int, bool], ...] = ()  # (upstream key, soft)


@dataclass(frozen=True)
class GraphStep:
    ready: frozenset[int]  # waiting tasks that may be claimed now
    skipped: frozenset[int]  # waiting tasks that will never run


def advance(nodes: Iterable[TaskNode]) -> GraphStep:
    """Decide which waiting tasks became ready and which must be skipped (transitively)."""
    by_key = {n.key: n for n in nodes}
    status = {k: n.status for k, n in by_key.items()}
    skipped: set[int] = set()
    changed = True
    while changed:
        changed = False
        for key, node in by_key.items():
            if status[key] is not TaskStatus.WAITING_TO_START:
                continue
            if any(not soft and status[up] in TASK_UNSUCCESSFUL for up, soft in node.depends_on):
                status[key] = TaskStatus.SKIPPED
                skipped.add(key)
                changed = True
    ready = {
        key
        for key, node in by_key.items()
        if status[key] is TaskStatus.WAITING_TO_START
        and not node.ready
        and all(status[up] in TASK_FINAL for up, _ in node.depends_on)
    }
    return GraphStep(ready=frozenset(ready), skipped=frozenset(skipped))


def run_outcome(nodes: Iterable[TaskNode], *, cancel_requested: bool) -> RunStatus | None:
    """The run's final status once every task has ended, else None.

    A cancel that arrives after every task succeeded is too late: the data is loaded,
    so the run is Completed. Otherwise a requested cancel wins over failures.
    """
    nodes = list(nodes)
    if any(n.status not in TASK_FINAL for n in nodes):
        return None
    if all(n.status is TaskStatus.COMPLETED for n in nodes):
        return RunStatus.COMPLETED
    if cancel_requested and any(n.status is TaskStatus.CANCELED for n in nodes):
        return RunStatus.CANCELED
    if any(n.required and n.status in TASK_UNSUCCESSFUL for n in nodes):
        return RunStatus.FAILED
    if all(n.status in TASK_SUCCEEDED or not n.required for n in nodes):
        return RunStatus.COMPLETED_WITH_ERRORS
    return RunStatus.FAILED  # pragma: no cover - every case above is exhaustive
