"""Path parameters the API and the UI share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

# Ids are 32-bit integer columns: a larger number is no id (a validation error, not a database error).
MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
