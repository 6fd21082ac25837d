"""What the OpenAPI document promises about query values, so that /openapi.json is the exact contract.

`one_of(values)` documents a fixed list (an `enum`) on a parameter whose allow-list is checked by the service that
owns it (listing's sorts, the registry's types, ...), so the list and the check come from one constant and the
refusal keeps its message. `QueryTime` is a query time: an ISO 8601 date and time, never a bare number (pydantic
would read `0.5` as seconds since 1970).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

# A date, then T or a space, then hours and minutes: what ISO 8601 (RFC 3339's date-time) begins with.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_time(value: Any) -> Any:
    if isinstance(value, str) and not _ISO_TIME.match(value):
        raise ValueError("give an ISO 8601 time with its zone, e.g. 2026-01-31T00:00:00Z")
    return value


#: A time in a query string: ISO 8601 only (documented as `format: date-time`).
QueryTime = Annotated[datetime, BeforeValidator(_iso_time)]


def one_of(values: Iterable[str]) -> dict[str, Any]:
    """`json_schema_extra` for a parameter that takes one of `values` (checked where the values are owned)."""
    return {"enum": list(values)}
