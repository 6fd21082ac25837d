"""Where the warehouse is: the LSN up to which every change of the operation's tables is loaded."""

from __future__ import annotations

from collections.abc import Sequence

from runyard.operations.postgres_cdc.lsn import from_watermark
from runyard.warehouse.base import Warehouse


def stored_position(warehouse: Warehouse, operation_id: int, targets: Sequence[str], *, every: bool) -> int | None:
    """The highest LSN stored for the tables (each load stores its last commit for the tables it loaded, so the
    highest is the position). With `every`, None unless each table has one (a table added since the snapshot)."""
    found = [warehouse.high_watermark(operation_id, target) for target in targets]
    if every and any(value is None for value in found):
        return None
    positions = [from_watermark(value) for value in found if value is not None]
    return max(positions) if positions else None
