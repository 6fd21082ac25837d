"""Runs, their tasks, retry and cancel, and the data loads they made."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from runyard.api.contract import QueryTime, one_of
from runyard.api.deps import MAX_ID, IdempotencyKey, IdPath, OperatorDep, PrincipalDep, RunsDep, StoreDep
from runyard.api.schemas import RunPublic, RunsPage, TaskPublic, TasksPage, json_response
from runyard.domain.statuses import RunStatus, RunType
from runyard.errors import InvalidInput
from runyard.services.listing import (
    RUN_SORTS,
    TASK_SORTS,
    RunQuery,
    TaskQuery,
    list_loads,
    list_runs,
    list_tasks,
    run_row,
)
from runyard.services.views import RunView
from runyard.store.database import Store

router = APIRouter(prefix="/api/v1", tags=["runs"])
Order = Literal["asc", "desc"]


class LoadTable(BaseModel):
    name: str
    rows: int


class LoadPublic(BaseModel):
    id: int
    run_id: int
    operation_id: int
    configuration_id: str
    run_status: str
    run_status_label: str
    tables: list[LoadTable]
    rows: int
    created_at: datetime


class LoadsPage(BaseModel):
    items: list[LoadPublic]
    total: int
    page: int
    page_size: int


@router.get("/runs", response_model=RunsPage)
def runs(
    store: StoreDep,
    principal: PrincipalDep,
    operation: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Operation id")] = None,
    status: Annotated[RunStatus | None, Query(description="A run status value, e.g. failed")] = None,
    type: Annotated[RunType | None, Query(description="incremental or destructive")] = None,
    started_from: Annotated[QueryTime | None, Query(description="ISO 8601 with a time zone")] = None,
    started_to: Annotated[QueryTime | None, Query(description="ISO 8601 with a time zone")] = None,
    completed_from: Annotated[QueryTime | None, Query(description="ISO 8601 with a time zone")] = None,
    completed_to: Annotated[QueryTime | None, Query(description="ISO 8601 with a time zone")] = None,
    sort: Annotated[str, Query(max_length=40, description="A column", json_schema_extra=one_of(RUN_SORTS))] = "id",
    order: Annotated[Order, Query()] = "desc",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Every run of your account: filter, sort by any column shown on the API Runs page, page."""
    _require_zones(
        started_from=started_from, started_to=started_to, completed_from=completed_from, completed_to=completed_to
    )
    query = RunQuery(
        account_id=principal.account_id,
        operation_id=operation,
        status=status,
        run_type=type,
        started_from=started_from,
        started_to=started_to,
        completed_from=completed_from,
        completed_to=completed_to,
        sort=sort,
        order=order,
        page=page,
        page_size=page_size,
    )
    with store.read() as conn:
        found = list_runs(conn, query)
    return json_response(
        RunsPage(
            items=[RunPublic.of(row, row.message_count) for row in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )
    )


@router.get("/runs/{run_id}", response_model=RunPublic)
def run(run_id: IdPath, store: StoreDep, principal: PrincipalDep) -> RunPublic:
    """One run, as the list shows it (its message_count included)."""
    with store.read() as conn:
        found = run_row(conn, run_id, account_id=principal.account_id)
    return RunPublic.of(found, found.message_count)


@router.get("/runs/{run_id}/tasks", response_model=TasksPage)
def tasks(
    run_id: IdPath,
    store: StoreDep,
    principal: PrincipalDep,
    search: Annotated[str | None, Query(max_length=200, description="Spec 000's task search")] = None,
    sort: Annotated[str, Query(max_length=40, json_schema_extra=one_of(TASK_SORTS))] = "position",
    order: Annotated[Order, Query()] = "asc",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """A run's tasks. `search` matches initials, names, status labels, table names and messages."""
    query = TaskQuery(
        run_id=run_id,
        account_id=principal.account_id,
        search=search,
        sort=sort,
        order=order,
        page=page,
        page_size=page_size,
    )
    with store.read() as conn:
        found = list_tasks(conn, query)
    return json_response(
        TasksPage(
            items=[TaskPublic.of(task) for task in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )
    )


@router.post(
    "/runs/{run_id}/retry",
    status_code=202,
    response_model=RunPublic,
    responses={
        409: {
            "description": "Only the most recent Failed or Canceled run can be retried; or the Idempotency-Key was "
            "sent with another request"
        }
    },
)
def retry(run_id: IdPath, runs: RunsDep, principal: OperatorDep, idempotency_key: IdempotencyKey = None) -> RunPublic:
    """A new run that reuses what this one completed. With an `Idempotency-Key`, the same retry sent again within a
    day (its answer was lost) answers the run the first one made."""
    retried = runs.retry(
        run_id, account_id=principal.account_id, created_by=principal.user_id, idempotency_key=idempotency_key
    )
    return _with_count(runs.store, retried)  # its reused tasks already say so


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunPublic,
    responses={409: {"description": "The run already ended or is being canceled"}},
)
def cancel(run_id: IdPath, runs: RunsDep, principal: OperatorDep) -> RunPublic:
    return _with_count(runs.store, runs.cancel(run_id, account_id=principal.account_id))


@router.get("/loads", response_model=LoadsPage)
def loads(
    store: StoreDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """What runs made available in the warehouse, newest first."""
    with store.read() as conn:
        found = list_loads(conn, principal.account_id, page, page_size)
    return json_response(
        LoadsPage(
            items=[
                LoadPublic(
                    id=load.id,
                    run_id=load.run_id,
                    operation_id=load.operation_id,
                    configuration_id=load.configuration_id,
                    run_status=load.run_status.value,
                    run_status_label=load.run_status.label,
                    tables=[LoadTable(name=name, rows=rows) for name, rows in load.tables],
                    rows=load.rows,
                    created_at=load.created_at,
                )
                for load in found.items
            ],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )
    )


def _with_count(store: Store, run: RunView) -> RunPublic:
    with store.read() as conn:
        return RunPublic.of(run, run_row(conn, run.id).message_count)


def _require_zones(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise InvalidInput(name, "give a time zone, e.g. 2026-01-31T00:00:00Z")
