"""What every operation's configuration shares: its identity, flags and schedule (spec 003)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
ENVIRONMENT = r"^[A-Z][A-Z0-9_]{0,49}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperationBase(StrictModel):
    """The fields of every configuration type; each type adds `configuration_type` and its content."""

    configuration_type: str
    account: str = "default"
    environment: Annotated[str, Field(pattern=ENVIRONMENT)] = "DEV"
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
