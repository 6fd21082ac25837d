"""Operations: list, show, launch."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from runyard.api.deps import IdPath, OperatorDep, PrincipalDep, RunsDep, StoreDep
from runyard.api.schemas import OperationPublic, RejectedRun, RunCreate, RunPublic
from runyard.domain.statuses import RunType, Trigger
from runyard.errors import RunRejected
from runyard.services.operations import OperationView, get_operation, list_operations
from runyard.services.runs import LaunchRequest

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])


def _public(operation: OperationView) -> OperationPublic:
    return OperationPublic.model_validate(operation, from_attributes=True)


@router.get("", response_model=list[OperationPublic])
def operations(store: StoreDep, principal: PrincipalDep) -> list[OperationPublic]:
    """Every operation of your account."""
    with store.read() as conn:
        return [_public(op) for op in list_operations(conn, account=principal.account_id)]


@router.get("/{operation_id}", response_model=OperationPublic, responses={404: {"description": "No such operation"}})
def operation(operation_id: IdPath, store: StoreDep, principal: PrincipalDep) -> OperationPublic:
    with store.read() as conn:
        return _public(get_operation(conn, operation_id, account=principal.account_id))


@router.post(
    "/{operation_id}/runs",
    status_code=202,
    response_model=RunPublic,
    responses={409: {"model": RejectedRun, "description": "Another run of the operation is active"}},
)
def launch(operation_id: IdPath, body: RunCreate, runs: RunsDep, principal: OperatorDep) -> RunPublic | JSONResponse:
    """Launch a run. 409 with the Rejected run when another run of the operation is still active."""
    request = LaunchRequest(
        operation_id=operation_id,
        run_type=RunType(body.type),
        trigger=Trigger.API,
        account_id=principal.account_id,
        created_by=principal.user_id,
    )
    try:
        return RunPublic.of(runs.launch(request))
    except RunRejected as rejected:
        run = RunPublic.of(runs.get_run(rejected.rejected_run_id))
        return JSONResponse(RejectedRun(detail=str(rejected), run=run).model_dump(mode="json"), status_code=409)
