"""A workflow's state: what it waits for, and its reset (spec 003's reset_workflow_status, natively)."""

from __future__ import annotations

from fastapi import APIRouter

from runyard.api.deps import IdPath, OperatorDep, PrincipalDep, StoreDep
from runyard.api.schemas import WorkflowStatusPublic
from runyard.services.workflows import reset_workflow, workflow_status

router = APIRouter(prefix="/api/v1/operations", tags=["workflows"])


@router.get(
    "/{operation_id}/workflow",
    response_model=WorkflowStatusPublic,
    responses={404: {"description": "No such operation, or it is not a workflow"}},
)
def workflow(operation_id: IdPath, store: StoreDep, principal: PrincipalDep) -> WorkflowStatusPublic:
    """What the workflow waits for: each upstream job with its successes since the target was last launched (or
    the workflow reset), when it last succeeded and whether it is satisfied; then the target and its last launch."""
    with store.read() as conn:
        return WorkflowStatusPublic.of(workflow_status(conn, operation_id, account=principal.account_id))


@router.post(
    "/{operation_id}/workflow/reset",
    response_model=WorkflowStatusPublic,
    responses={404: {"description": "No such operation, or it is not a workflow"}},
)
def reset(operation_id: IdPath, store: StoreDep, principal: OperatorDep) -> WorkflowStatusPublic:
    """Forget every count, as when the workflow was just deployed. Operators and administrators."""
    reset_workflow(store, operation_id, account=principal.account_id)
    with store.read() as conn:
        return WorkflowStatusPublic.of(workflow_status(conn, operation_id, account=principal.account_id))
