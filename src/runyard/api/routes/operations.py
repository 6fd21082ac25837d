"""Operations: list (with filters), show, launch, and their state (activate, deactivate, archive)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from runyard.api.contract import one_of
from runyard.api.deps import AdminDep, IdempotencyKey, IdPath, OperatorDep, PrincipalDep, RunsDep, StoreDep
from runyard.api.schemas import (
    ConflictDetail,
    OperationPublic,
    OperationStatusUpdate,
    RejectedRun,
    RunCreate,
    RunPublic,
)
from runyard.domain.statuses import RunType, Trigger
from runyard.errors import InvalidInput, RunRejected
from runyard.operations.loader import check_environment
from runyard.operations.registry import configuration_types
from runyard.operations.spec import ENVIRONMENT
from runyard.services.operations import (
    OperationFilter,
    OperationState,
    get_operation,
    known_type,
    list_operations,
    set_status,
)
from runyard.services.runs import LaunchRequest
from runyard.services.schedules import schedule_ticks

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])


@router.get("", response_model=list[OperationPublic])
def operations(
    store: StoreDep,
    principal: PrincipalDep,
    type: Annotated[
        str | None,
        Query(max_length=50, description="A configuration type", json_schema_extra=one_of(configuration_types())),
    ] = None,
    environment: Annotated[
        str | None,
        Query(max_length=50, description="An environment, e.g. DEV", json_schema_extra={"pattern": ENVIRONMENT}),
    ] = None,
    state: Annotated[OperationState | None, Query(description="Only this state (archived included)")] = None,
    archived: Annotated[bool, Query(description="Without `state`: list archived operations too")] = False,
) -> list[OperationPublic]:
    """The operations of your account, by id. Archived ones are left out unless `archived=true` or
    `state=archived`."""
    where = OperationFilter(
        configuration_type=known_type(type) if type is not None else None,  # an empty value is refused too
        environment=check_environment(environment) if environment is not None else None,
        state=state,
        include_archived=archived,
    )
    with store.read() as conn:
        found = list_operations(conn, account=principal.account_id, where=where)
        ticks = schedule_ticks(conn, found)
    return [OperationPublic.of(operation, ticks[operation.id]) for operation in found]


@router.get("/{operation_id}", response_model=OperationPublic, responses={404: {"description": "No such operation"}})
def operation(operation_id: IdPath, store: StoreDep, principal: PrincipalDep) -> OperationPublic:
    """One operation, archived or not."""
    with store.read() as conn:
        found = get_operation(conn, operation_id, account=principal.account_id)
        return OperationPublic.of(found, schedule_ticks(conn, [found])[found.id])


@router.post(
    "/{operation_id}/status", response_model=OperationPublic, openapi_extra={"requestBody": {"required": True}}
)
def operation_status(
    operation_id: IdPath,
    store: StoreDep,
    principal: AdminDep,
    # Documented as required (a missing body is a 400), though read here as optional: see below.
    body: Annotated[
        OperationStatusUpdate | None, Body(), WithJsonSchema(OperationStatusUpdate.model_json_schema())
    ] = None,
) -> OperationPublic:
    """Activate (`{"activated": true, "archived": false}`), deactivate (`false, false`) or archive (`false, true`),
    as spec 003's set_configuration_status: administrators only. An archived operation is always deactivated
    (`true, true` is a 400); unarchive it by sending archived false. Runs already under way go on; launches of an
    operation that is not active are refused (409)."""
    if body is None:  # checked after the operation, so that another account's answers 404 whatever is sent
        with store.read() as conn:
            get_operation(conn, operation_id, account=principal.account_id)
        raise InvalidInput("body", 'send {"activated": true or false, "archived": true or false}')
    changed = set_status(
        store,
        operation_id,
        activated=body.activated,
        archived=body.archived,
        account=principal.account_id,
        changed_by=f"{principal.login} (user {principal.user_id})",
    )
    with store.read() as conn:
        return OperationPublic.of(changed, schedule_ticks(conn, [changed])[changed.id])


@router.post(
    "/{operation_id}/runs",
    status_code=202,
    response_model=RunPublic,
    responses={
        409: {
            "model": RejectedRun | ConflictDetail,
            "description": "Another run of the operation is active (the Rejected run), or the operation is "
            "deactivated or archived, or the Idempotency-Key was sent with another request (nothing recorded)",
        },
        429: {
            "model": ConflictDetail,
            "description": "Another run is active and too many launches of the operation were rejected in the last "
            "minute (RUNYARD_LAUNCH_REJECTED_PER_MINUTE): nothing recorded; see Retry-After",
        },
    },
)
def launch(
    operation_id: IdPath,
    runs: RunsDep,
    principal: OperatorDep,
    body: Annotated[RunCreate | None, Body(description="Optional: without a body, an incremental run")] = None,
    idempotency_key: IdempotencyKey = None,
) -> RunPublic | JSONResponse:
    """Launch a run (`{"type": "incremental"}`, the default, or `"destructive"`). 409 with the Rejected run when
    another run of the operation is still active; 409 with only a `detail` when the operation is deactivated or
    archived. With an `Idempotency-Key`, the same launch sent again within a day (its answer was lost) answers the
    run the first one made: 202 with it, or 409 if it was Rejected."""
    request = LaunchRequest(
        operation_id=operation_id,
        run_type=RunType((body or RunCreate()).type),
        trigger=Trigger.API,
        account_id=principal.account_id,
        created_by=principal.user_id,
        idempotency_key=idempotency_key,
    )
    try:
        return RunPublic.of(runs.launch(request), 0)  # a new run: no task has said anything yet
    except RunRejected as rejected:
        run = RunPublic.of(runs.get_run(rejected.rejected_run_id), 0)  # a Rejected run has no tasks
        return JSONResponse(RejectedRun(detail=str(rejected), run=run).model_dump(mode="json"), status_code=409)
