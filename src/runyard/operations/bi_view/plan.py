"""A bi-view has no tasks: it is read when it is exported (runyard.services.bi_views), so its plan is empty."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask


def plan_view(_spec: Mapping[str, Any], _execution_date: object) -> list[PlannedTask]:
    return []
