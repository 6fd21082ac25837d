"""The `tasks` configuration: a graph of tasks written out by hand (the demo's sleep tasks, smoke checks, tests)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from runyard.operations.spec import OperationBase, StrictModel


class DependsOn(StrictModel):
    task: str
    soft: bool = Field(default=False, description="Run even if this upstream task did not succeed")


class TaskSpec(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=300)]
    executor: str
    stage: str = "task"
    metrics_type: Literal["extract", "load", "task", "stream", "hwm"] = "task"
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[DependsOn] = Field(default_factory=list)
    required: bool = True
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    reusable: bool = False
    table: str | None = None

    @field_validator("depends_on", mode="before")
    @classmethod
    def _names_are_dependencies(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"task": item} if isinstance(item, str) else item for item in value]
        return value


class TaskGraphOperation(OperationBase):
    """A graph of tasks written out by hand: the demo's sleep tasks, smoke checks, tests."""

    configuration_type: Literal["tasks"]
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]
