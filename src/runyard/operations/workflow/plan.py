"""A workflow has no tasks of its own: it launches its target (runyard.services.workflows), so its plan is empty."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask


def plan_workflow(_spec: Mapping[str, Any], _execution_date: object) -> list[PlannedTask]:
    return []
