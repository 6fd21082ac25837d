"""What every operation's configuration shares: its identity, flags and schedule (spec 003)."""

from __future__ import annotations

import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
ENVIRONMENT = r"^[A-Z][A-Z0-9_]{0,49}$"
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # where a configuration names a secret's variable


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as-is (no "Value error, " prefix)."""
    return PydanticCustomError("runyard_invalid", message)


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
    schedule_timezone: str = Field(
        default="UTC", description="The IANA time zone the schedule's times are in, e.g. 'Europe/Paris'"
    )

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
        from croniter import CroniterBadDateError, croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression (minute hour day month weekday)")
        try:
            croniter(value).get_next()
        except CroniterBadDateError:
            raise ValueError(
                f"'{value}' matches no date from now on (such as 30 February): it would never run"
            ) from None
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the tz database, on some systems
            raise ValueError(
                f"'{value}' is not a time zone this machine knows: use an IANA name such as UTC, Europe/Paris or "
                "America/New_York"
            ) from None
        return value
