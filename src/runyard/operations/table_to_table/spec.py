"""The table-to-table configuration: SQL steps that each build one warehouse table from a SELECT.

    configuration_type: table-to-table
    configuration_id: hr_summaries
    parameters:                        # values the SQL names as {{min_days}}; always bound, never pasted
      min_days: 1
    steps:
      - target: headcount_by_department
        sql: SELECT department, count(*) AS headcount FROM employees GROUP BY department
      - target: time_off_by_department
        sql_file: time_off_by_department.sql     # beside this file, read when it is deployed
        depends_on: [headcount_by_department]    # besides the step targets its SQL reads

A step's SELECT may read the targets of other steps: it then runs after them and reads what they built in
this run. Its `{{ }}` values (execution_date, FD_DATE, FD_TIME and the parameters) become bound parameters.
What needs the whole configuration (unknown dependencies, cycles, unknown variables) is checked by
definition.check_steps, which names the field.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from runyard.operations.spec import OperationBase, StrictModel, invalid
from runyard.operations.table_to_table.plan import BUILTIN_VARIABLES

TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
RESERVED_PREFIX = "_runyard"
ParameterValue = str | int | float | bool | date | None
MAX_SQL_FILE_BYTES = 1_000_000


class StepSpec(StrictModel):
    """One SQL step: the table it builds and the SELECT that builds it."""

    target: str = Field(description="The warehouse table this step builds (replaced when the run's load commits)")
    description: str = ""
    sql: str | None = Field(default=None, description="The SELECT, inline")
    sql_file: str | None = Field(default=None, description="A .sql file holding the SELECT, beside the configuration")
    depends_on: list[str] = Field(
        default_factory=list, description="Other steps' targets to wait for, besides those its SQL reads"
    )

    @model_validator(mode="before")
    @classmethod
    def _read_sql_file(cls, value: Any, info: ValidationInfo) -> Any:
        """A file's SQL is read once, when the configuration is deployed, and kept in `sql`."""
        if not isinstance(value, dict) or not value.get("sql_file") or not isinstance(value["sql_file"], str):
            return value
        folder = _source_folder(info)
        if folder is None:
            return value  # stored configurations carry both; one that never had its file read is refused below
        if value.get("sql") is not None:
            raise invalid("give the step's SELECT as sql or as sql_file, not both")
        text = _read(folder / value["sql_file"])
        return value if text is None else {**value, "sql": text}

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not TARGET.match(value):
            raise invalid("a target table is a name of letters, digits and '_', starting with a letter or '_'")
        if value.lower().startswith(RESERVED_PREFIX):
            raise invalid(f"names starting with {RESERVED_PREFIX!r} are runyard's own")
        return value

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise invalid("the SQL is empty: give the SELECT that builds the table")
        return value

    @field_validator("sql_file")
    @classmethod
    def _sql_file_was_read(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or info.data.get("sql") is not None:
            return value
        folder = _source_folder(info)
        if folder is None:
            raise invalid("sql_file is read from the configuration's folder: deploy the file with `runyard deploy`")
        path = folder / value
        if not path.is_file():
            raise invalid(f"no such file: {path}")
        raise invalid(f"cannot read {path} as UTF-8 text of at most {MAX_SQL_FILE_BYTES:,} bytes")

    @model_validator(mode="after")
    def _has_sql(self) -> StepSpec:
        if self.sql is None:
            raise invalid("a step needs its SELECT: sql (inline) or sql_file (a file beside the configuration)")
        return self


class TableToTableOperation(OperationBase):
    """SQL steps over the account's warehouse; a run publishes all their tables together."""

    configuration_type: Literal["table-to-table"]
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict, description="Values the SQL names as {{name}}; each is bound as a parameter"
    )
    steps: Annotated[list[StepSpec], Field(min_length=1)]

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, ParameterValue]) -> dict[str, ParameterValue]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
                raise invalid(f"parameter {name!r}: use letters, digits and '_', starting with a letter or '_'")
            if name in BUILTIN_VARIABLES or name.startswith("FD_"):
                raise invalid(f"parameter {name!r} would hide runyard's own variable of that name")
        return value


def _source_folder(info: ValidationInfo) -> Path | None:
    source = (info.context or {}).get("source")
    if not isinstance(source, str) or source.startswith("<"):
        return None
    return Path(source).parent


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_SQL_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
