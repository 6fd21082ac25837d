"""A workflow's page: what it waits for (live), its target and last launch, and Reset."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.errors import NotFound, RunyardError
from runyard.params import IdPath
from runyard.services.operations import get_operation
from runyard.services.workflows import reset_workflow, workflow_status
from runyard.ui.web import FormDep, ViewerDep, check_form, refuse_unless_operator, render, see_other, ui_state

router = APIRouter(include_in_schema=False)


@router.get("/sources/{operation_id}/workflow")
def workflow_page(request: Request, operation_id: IdPath, who: ViewerDep) -> Response:
    account = who.principal.account_id
    with ui_state(request).context.store.read() as conn:
        try:
            operation = get_operation(conn, operation_id, account=account)
            status = workflow_status(conn, operation_id, account=account)
        except NotFound:
            return render(request, "not_found.html", who, status_code=404, what=f"workflow {operation_id}")
    return render(request, "workflow.html", who, active="sources", operation=operation, status=status)


@router.post("/sources/{operation_id}/workflow/reset")
def reset(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = f"/sources/{operation_id}/workflow"
    refused = refuse_unless_operator(request, who, back, "reset workflows")
    if refused is not None:
        return refused
    try:
        reset_workflow(ui_state(request).context.store, operation_id, account=who.principal.account_id)
    except RunyardError as exc:
        return see_other(request, back, error=f"Not reset: {exc}")
    return see_other(request, back, notice="Workflow reset: every count is back to 0.")
