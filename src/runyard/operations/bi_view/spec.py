"""The bi-view configuration: a view name and the one query it exports.

    configuration_type: bi-view
    configuration_id: employees-by-hire-date
    account: "000099"
    environment: DEV
    view_name: EMPLOYEES_V            # the {view} of GET /api/integration/v2/biviews/{view}
    sql: |                            # one SELECT (or WITH ... SELECT) over the account's warehouse tables
      SELECT id, first_name, hire_date FROM employees
    time_column: hire_date            # optional: what fromDate/toDate filter on, and the export's order

The query itself is checked at deploy without a database (runyard.operations.bi_view.query); the warehouse checks it
again, with its own parser, when it is exported.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from runyard.operations.spec import OperationBase

VIEW_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
MAX_COLUMN_CHARS = 255


class BiViewOperation(OperationBase):
    configuration_type: Literal["bi-view"]
    view_name: str = Field(description="The name the view is exported by (case-insensitive), e.g. EMPLOYEES_V")
    sql: str = Field(description="One SELECT (or WITH ... SELECT) over the account's warehouse tables")
    time_column: Annotated[str, Field(min_length=1, max_length=MAX_COLUMN_CHARS)] | None = Field(
        default=None, description="A column of the query: what fromDate and toDate filter on, and the export's order"
    )

    @field_validator("view_name")
    @classmethod
    def _view_name(cls, value: str) -> str:
        if not VIEW_NAME.fullmatch(value):
            raise ValueError(
                f"{value[:60]!r} is not a view name: letters, digits and '_', starting with a letter, "
                "at most 128 characters"
            )
        return value

    @field_validator("time_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
            raise ValueError("a column name, without control characters or surrounding blanks")
        return value
