"""Data > Sources: operations, their last run, Launch, and each one's run time history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.domain.statuses import RunType, Trigger
from runyard.errors import NotFound, RunRejected, RunyardError
from runyard.operations.registry import operation_types
from runyard.params import IdPath
from runyard.services.durations import run_durations
from runyard.services.operations import get_operation
from runyard.services.runs import LaunchRequest
from runyard.services.sources import list_sources
from runyard.ui.charts import duration_chart
from runyard.ui.web import FormDep, ViewerDep, check_form, first, refuse_unless_operator, render, see_other, ui_state

router = APIRouter(include_in_schema=False)


def api_runs_types() -> frozenset[str]:
    """The configuration types whose runs are API runs (spec 000): their sources offer "View API Runs"."""
    return frozenset(name for name, definition in operation_types().items() if definition.api_runs)


@router.get("/sources")
def sources_page(request: Request, who: ViewerDep) -> Response:
    with ui_state(request).context.store.read() as conn:
        rows = list_sources(conn, who.principal.account_id)
    return render(request, "sources.html", who, active="sources", rows=rows, api_runs=api_runs_types(), live=True)


@router.post("/sources/{operation_id}/launch")
def launch(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    refused = refuse_unless_operator(request, who, "/sources", "launch runs")
    if refused is not None:
        return refused
    try:
        run_type = RunType(first(form, "type") or RunType.INCREMENTAL.value)
    except ValueError:
        return see_other(request, "/sources", error="Choose incremental or destructive.")
    runs = ui_state(request).context.runs
    launch_request = LaunchRequest(
        operation_id=operation_id,
        run_type=run_type,
        trigger=Trigger.MANUAL,
        account_id=who.principal.account_id,
        created_by=who.principal.user_id,
    )
    try:
        run = runs.launch(launch_request)
    except RunRejected as rejected:
        return see_other(request, "/sources", error=str(rejected))
    except RunyardError as exc:
        return see_other(request, "/sources", error=f"Not launched: {exc}")
    return see_other(request, f"/runs/{run.id}", notice=f"Run {run.id} started ({run_type.value}).")


@router.get("/sources/{operation_id}/history")
def history_page(request: Request, operation_id: IdPath, who: ViewerDep) -> Response:
    account = who.principal.account_id
    with ui_state(request).context.store.read() as conn:
        try:
            operation = get_operation(conn, operation_id, account=account)
        except NotFound:
            return render(request, "not_found.html", who, status_code=404, what=f"source {operation_id}")
        durations = run_durations(conn, account, operation_id)
    return render(
        request,
        "history.html",
        who,
        active="sources",
        operation=operation,
        durations=list(reversed(durations)),
        chart=duration_chart(durations),
    )
