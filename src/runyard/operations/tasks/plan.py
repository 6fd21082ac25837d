"""Turn an operation's spec into the planned tasks of one run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runyard.domain.graph import Dependency, PlannedTask, validate_plan
from runyard.domain.statuses import RunType


def plan_task_graph(tasks: Sequence[Mapping[str, Any]], run_type: RunType) -> list[PlannedTask]:
    """A `tasks` operation lists its tasks explicitly; the run type is passed to each executor."""
    planned = [
        PlannedTask(
            name=t["name"],
            executor=t["executor"],
            stage=t.get("stage", "task"),
            metrics_type=t.get("metrics_type", "task"),
            params={**t.get("params", {}), "run_type": run_type.value},
            depends_on=tuple(
                Dependency(upstream=d["task"], soft=bool(d.get("soft", False))) for d in t.get("depends_on", [])
            ),
            required=bool(t.get("required", True)),
            max_attempts=int(t.get("max_attempts", 3)),
            reusable=bool(t.get("reusable", False)),
            table=t.get("table"),
        )
        for t in tasks
    ]
    validate_plan(planned)
    return planned
