"""Data Loads: what runs made available in the warehouse, and the loads still in progress."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.errors import RunyardError
from runyard.services.listing import list_loads
from runyard.services.sources import active_runs
from runyard.ui.web import ViewerDep, parse_int, render, ui_state

router = APIRouter(include_in_schema=False)


@router.get("/loads")
def loads_page(request: Request, who: ViewerDep) -> Response:
    account = who.principal.account_id
    error = None
    with ui_state(request).context.store.read() as conn:
        in_progress = active_runs(conn, account)
        try:
            page_number = parse_int(request.query_params.get("page"), "page", default=1) or 1
            found = list_loads(conn, account, page_number, 25)
        except (ValueError, RunyardError) as exc:
            error, found = str(exc), None
    return render(
        request,
        "loads.html",
        who,
        active="loads",
        status_code=400 if error else 200,
        error=error,
        in_progress=in_progress,
        page=found,
        live=True,
    )
