"""The Sources page's read model: each operation with its most recent run."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RUN_ACTIVE, RunStatus
from runyard.services.operations import OperationFilter, OperationView, list_operations
from runyard.services.runs import RUN_COLUMNS
from runyard.services.views import RunView
from runyard.store.tables import operations, runs


@dataclass(frozen=True)
class SourceRow:
    operation: OperationView
    last_run: RunView | None  # the most recent run, Rejected ones aside (as retry counts them)


def latest_run_ids(conn: Connection, account_id: int, operation_ids: Collection[int] | None = None) -> dict[int, int]:
    """operation id -> id of its most recent run, Rejected runs aside: the only run Retry may act on."""
    query = (
        sa.select(runs.c.operation_id, sa.func.max(runs.c.id))
        .where(runs.c.account_id == account_id, runs.c.status != RunStatus.REJECTED.value)
        .group_by(runs.c.operation_id)
    )
    if operation_ids is not None:
        if not operation_ids:
            return {}
        query = query.where(runs.c.operation_id.in_(list(operation_ids)))
    return {operation_id: run_id for operation_id, run_id in conn.execute(query)}


def runs_by_id(conn: Connection, run_ids: Collection[int]) -> dict[int, RunView]:
    if not run_ids:
        return {}
    query = (
        sa.select(*RUN_COLUMNS)
        .join(operations, operations.c.id == runs.c.operation_id)
        .where(runs.c.id.in_(list(run_ids)))
    )
    return {row["id"]: RunView.from_row(row) for row in conn.execute(query).mappings()}


def list_sources(conn: Connection, account_id: int, where: OperationFilter | None = None) -> list[SourceRow]:
    """The account's operations `where` selects (default: all but the archived ones), by id, each with its most
    recent run."""
    found = list_operations(conn, account=account_id, where=where or OperationFilter())
    latest = latest_run_ids(conn, account_id, [operation.id for operation in found])
    last_runs = runs_by_id(conn, latest.values())
    return [SourceRow(operation, last_runs.get(latest.get(operation.id, 0))) for operation in found]


def active_runs(conn: Connection, account_id: int) -> list[RunView]:
    """Runs still waiting, running or canceling, newest first: loads that are not made yet."""
    query = (
        sa.select(*RUN_COLUMNS)
        .join(operations, operations.c.id == runs.c.operation_id)
        .where(runs.c.account_id == account_id, runs.c.status.in_([status.value for status in RUN_ACTIVE]))
        .order_by(runs.c.id.desc())
    )
    return [RunView.from_row(row) for row in conn.execute(query).mappings()]
