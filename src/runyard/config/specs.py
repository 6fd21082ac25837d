"""The operation spec every configuration type shares, and the `tasks` type (a hand-written task graph)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runyard.config.api_to_table import ApiToTableSpec

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class OperationBase(StrictModel):
    account: str = "default"
    environment: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,49}$")] = "DEV"
    configuration_id: str
    description: str = ""
    activated: bool = True
    archived: bool = False
    schedule: str | None = Field(default=None, description="A cron expression, e.g. '0 6 * * *'")

    @field_validator("configuration_id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("use letters, digits, '_', '-' and '.', starting with a letter or digit")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression (minute hour day month weekday)")
        return value


class TaskGraphOperation(OperationBase):
    """A graph of tasks written out by hand: the demo's sleep tasks, smoke checks, tests."""

    configuration_type: Literal["tasks"]
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]


class ApiToTableOperation(OperationBase, ApiToTableSpec):
    """An HTTP API extracted into warehouse tables, one table per endpoint (spec 000)."""

    configuration_type: Literal["api-to-table"]


OperationSpec = TaskGraphOperation | ApiToTableOperation
CONFIGURATION_TYPES: tuple[str, ...] = ("api-to-table", "tasks")
