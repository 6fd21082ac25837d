"""Exports (spec 004): the four queues of export sessions, live, with their progress, Cancel, page downloads, and a
form that starts an export of a declared view or a warehouse table."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from runyard.domain.exports import QUEUES
from runyard.errors import RunyardError
from runyard.services.bi_views import list_views
from runyard.services.export_format import EXTENSIONS, MEDIA_TYPES
from runyard.services.exports import ExportError, parse_request
from runyard.ui.web import FormDep, ViewerDep, check_form, first, refuse_unless_operator, render, see_other, ui_state

router = APIRouter(include_in_schema=False)
TaskId = Annotated[str, Path(min_length=1, max_length=200)]
PageNumber = Annotated[int, Path(ge=1, le=10_000_000)]
QUEUE_LABELS = {"active": "Active", "completed": "Completed", "draining": "Draining", "stale": "Stale"}


@router.get("/exports")
def exports_page(request: Request, who: ViewerDep) -> Response:
    context = ui_state(request).context
    grouped: dict[str, list[dict[str, object]]] = {queue.value: [] for queue in QUEUES}
    sources: list[str] = []
    if who.can_operate:
        grouped = context.exports.sessions(who.principal.account, who.principal.account_id, progress=True)
        sources = _sources(request, who.principal.account)
    return render(
        request,
        "exports.html",
        who,
        active="exports",
        queues=[(queue, QUEUE_LABELS[queue], grouped[queue]) for queue in grouped],
        sources=sources,
        live=True,
    )


@router.post("/exports")
def start_export(request: Request, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    refused = refuse_unless_operator(request, who, "/exports", "export data")
    if refused is not None:
        return refused
    view = (first(form, "view") or "").strip()
    exports = ui_state(request).context.exports
    try:
        if not view:
            raise ExportError(400, "choose a view or a table to export")
        checked = parse_request(
            view, first(form, "fromDate"), first(form, "toDate"), first(form, "pageSize"), first(form, "outputType")
        )
        token, _ = exports.begin(who.principal.account, who.principal.account_id, who.principal.user_id, checked)
    except (ExportError, RunyardError) as exc:
        return see_other(request, "/exports", error=f"Not started: {exc}")
    return see_other(request, "/exports", notice=f"Export of {view} started (session {token.split('.')[0][:8]}).")


@router.post("/exports/{task_id}/cancel")
def cancel_export(request: Request, task_id: TaskId, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    refused = refuse_unless_operator(request, who, "/exports", "cancel exports")
    if refused is not None:
        return refused
    try:
        ui_state(request).context.exports.cancel(who.principal.account, who.principal.account_id, task_id)
    except ExportError as exc:
        return see_other(request, "/exports", error=f"Not canceled: {exc}")
    return see_other(request, "/exports", notice="Export canceled: its cached pages are deleted.")


@router.get("/exports/{task_id}/pages/{number}")
def download_page(request: Request, task_id: TaskId, number: PageNumber, who: ViewerDep) -> Response:
    if not who.can_operate:
        return render(request, "not_found.html", who, status_code=404, what="this export page")
    exports = ui_state(request).context.exports
    try:
        session = exports.session(who.principal.account, who.principal.account_id, task_id)
        view = str(session["query_config"]["object_name"])
        page = exports.page(who.principal.account_id, who.principal.account, task_id, view, number)
    except ExportError as exc:
        return see_other(request, "/exports", error=f"Page {number}: {exc.detail}")
    return Response(
        page.data,
        media_type=MEDIA_TYPES[page.output_type],
        headers={"Content-Disposition": f'attachment; filename="{view}-page-{number}.{EXTENSIONS[page.output_type]}"'},
    )


def _sources(request: Request, account: str) -> list[str]:
    """What can be exported: the declared views, then the warehouse's tables (when this process holds them)."""
    context = ui_state(request).context
    names = [view.name for view in list_views(context.store, account)]
    if context.warehouses is not None:
        with contextlib.suppress(RunyardError):  # the form still offers the declared views
            names += [table.name for table in context.warehouses.for_account(account).tables()]
    return names
