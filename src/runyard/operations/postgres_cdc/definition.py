"""The `postgres-cdc` type as the registry sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import PlannedTask
from runyard.operations.definition import OperationType, PlanRequest, executors_in
from runyard.operations.postgres_cdc import plan
from runyard.operations.postgres_cdc.spec import PostgresCdcOperation


def _plan(spec: Mapping[str, Any], request: PlanRequest) -> list[PlannedTask]:
    return plan.plan_cdc(spec, request.run_type)


DEFINITION = OperationType(
    name="postgres-cdc",
    spec=PostgresCdcOperation,
    plan=_plan,
    executors=executors_in("runyard.operations.postgres_cdc.executors"),
    executor_names=frozenset(plan.EXECUTORS),
    description="tables of a PostgreSQL database replicated change by change (logical decoding, wal2json)",
)
