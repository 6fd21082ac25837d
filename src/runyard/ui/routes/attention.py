"""Needs attention: open alerts with their evidence, sources whose latest run Failed or was Canceled, stalled tasks,
and bulk Retry."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.errors import RunyardError
from runyard.services.attention import attention_alerts, needs_attention, stalled_tasks
from runyard.ui.web import FormDep, ViewerDep, check_form, refuse_unless_operator, render, see_other, ui_state

router = APIRouter(include_in_schema=False)
MAX_BULK = 100


@router.get("/attention")
def attention_page(request: Request, who: ViewerDep) -> Response:
    context = ui_state(request).context
    account = who.principal.account_id
    with context.store.read() as conn:
        items = needs_attention(conn, account)
        now = context.store.now(conn)
        stalled = stalled_tasks(conn, account, now, timedelta(seconds=context.settings.stalled_after_seconds))
        alerts = attention_alerts(conn, account, items, now)
    return render(
        request,
        "attention.html",
        who,
        active="attention",
        items=items,
        stalled=stalled,
        alerts=alerts,
        stalled_after=context.settings.stalled_after_seconds,
        live=True,
    )


@router.post("/attention/retry")
def bulk_retry(request: Request, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    viewer_refused = refuse_unless_operator(request, who, "/attention", "retry runs")
    if viewer_refused is not None:
        return viewer_refused
    chosen = form.get("run_id", [])
    if not chosen:
        return see_other(request, "/attention", error="Select at least one run to retry.")
    if len(chosen) > MAX_BULK or not all(value.isascii() and value.isdigit() and len(value) <= 10 for value in chosen):
        return see_other(request, "/attention", error="The selection is not a list of run ids.")
    runs = ui_state(request).context.runs
    started: list[str] = []
    not_retried: list[str] = []
    for run_id in dict.fromkeys(int(value) for value in chosen):
        try:
            new = runs.retry(run_id, account_id=who.principal.account_id, created_by=who.principal.user_id)
            started.append(f"{run_id} → {new.id}")
        except RunyardError as exc:
            not_retried.append(f"{run_id} ({exc})")
    if not_retried:
        done = f"Retried {', '.join(started)}. " if started else ""
        return see_other(request, "/attention", error=f"{done}Not retried: {'; '.join(not_retried)}")
    return see_other(request, "/attention", notice=f"Retried {len(started)} run(s): {', '.join(started)}.")
