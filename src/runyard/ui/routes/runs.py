"""The API Runs page, the API Run Details page, and Retry and Cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.domain.runs import RunSnapshot, cancel_allowed, retry_allowed
from runyard.domain.statuses import RunStatus, RunType
from runyard.errors import NotFound, RunyardError
from runyard.params import IdPath
from runyard.services.alerts import alerts_by_run
from runyard.services.attention import stalled_tasks
from runyard.services.listing import RunQuery, TaskQuery, get_task, list_runs, list_tasks
from runyard.services.metrics import (
    RunningTask,
    code_summary,
    format_latency,
    format_rate,
    rate_per_second,
    running_tasks,
)
from runyard.services.operations import list_operations
from runyard.services.runs import get_run
from runyard.services.sources import latest_run_ids
from runyard.services.views import RunView
from runyard.ui.web import (
    FormDep,
    ViewerDep,
    check_form,
    first,
    parse_int,
    refuse_unless_operator,
    render,
    safe_next,
    see_other,
    ui_state,
)

router = APIRouter(include_in_schema=False)

#: (sort key, column header) of the API Runs table, in order.
RUN_COLUMNS = (
    ("id", "Run ID"),
    ("operation", "Data Source"),
    ("type", "Type"),
    ("status", "Status"),
    ("started_at", "Started At"),
    ("completed_at", "Completed At"),
    ("duration", "Duration"),
    ("messages", "Messages"),
)
#: The Status filter's options: (spec 000's status value, label). Rejected's full label, "Rejected - previous load
#: still running", would make the select as wide as a sentence; its badges keep it whole.
STATUS_CHOICES = tuple((status.value, status.label.split(" - ")[0]) for status in RunStatus)
#: (sort key, column header) of the tasks table; None where the column does not sort.
TASK_COLUMNS = (
    ("name", "Task"),
    ("status", "Status"),
    ("started_at", "Started At"),
    ("duration", "Duration"),
    ("records", "Records"),
    (None, "Tables"),
    ("messages", "Message"),
)


@dataclass(frozen=True)
class LiveMetrics:
    """What the run page shows of a running task's metrics, as text."""

    rate: str
    latency: str | None  # the last and average latency
    summary: str  # spec 001's `code`: the one line for the tooltip


def _live_metrics(task: RunningTask, now: datetime) -> LiveMetrics:
    latency = None
    if task.latency_last is not None:
        seconds = task.metrics_type == "stream"
        latency = f"latency {format_latency(task.latency_last, seconds=seconds)}"
        if task.latency_avg is not None:
            latency += f", avg {format_latency(task.latency_avg, seconds=seconds)}"
    rate = format_rate(rate_per_second(task.records, task.started_at, now))
    return LiveMetrics(rate=rate, latency=latency, summary=code_summary(task, now))


def _snapshot(run: RunView) -> RunSnapshot:
    return RunSnapshot(id=run.id, operation_id=run.operation_id, status=run.status)


def _choice(value: str | None, allowed: type[RunStatus] | type[RunType], name: str) -> Any:
    if not value:
        return None
    try:
        return allowed(value)
    except ValueError:
        raise ValueError(f"{name} {value[:40]!r} is not one of: {', '.join(item.value for item in allowed)}") from None


def _order(value: str | None, default: str) -> str:
    if value in (None, ""):
        return default
    if value not in ("asc", "desc"):
        raise ValueError("order must be asc or desc")
    return value


@router.get("/runs")
def runs_page(request: Request, who: ViewerDep) -> Response:
    params = request.query_params
    store = ui_state(request).context.store
    account = who.principal.account_id
    with store.read() as conn:
        sources = list_operations(conn, account=account)
        error = None
        try:
            query = RunQuery(
                account_id=account,
                operation_id=parse_int(params.get("operation"), "operation"),
                status=_choice(params.get("status"), RunStatus, "status"),
                run_type=_choice(params.get("type"), RunType, "type"),
                sort=params.get("sort") or "id",
                order=_order(params.get("order"), "desc"),  # type: ignore[arg-type]
                page=parse_int(params.get("page"), "page", default=1) or 1,
                page_size=parse_int(params.get("page_size"), "page_size", default=25) or 25,
            )
            found = list_runs(conn, query)
        except (ValueError, RunyardError) as exc:
            error, query, found = str(exc), RunQuery(account_id=account), None
        items = found.items if found else ()
        latest = latest_run_ids(conn, account, {run.operation_id for run in items})
        run_alerts = alerts_by_run(conn, [run.id for run in items], store.now(conn))  # items: this account's runs
    retryable = {run.id for run in items if retry_allowed(_snapshot(run), latest.get(run.operation_id))}
    return render(
        request,
        "runs.html",
        who,
        active="runs",
        status_code=400 if error else 200,
        error=error,
        page=found,
        query=query,
        sources=sources,
        columns=RUN_COLUMNS,
        status_choices=STATUS_CHOICES,
        retryable=retryable,
        run_alerts=run_alerts,
        live=True,
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: IdPath, who: ViewerDep) -> Response:
    state = ui_state(request)
    params = request.query_params
    account = who.principal.account_id
    with state.context.store.read() as conn:
        try:
            run = get_run(conn, run_id, account_id=account)
        except NotFound:
            return render(request, "not_found.html", who, status_code=404, what=f"run {run_id}")
        latest = latest_run_ids(conn, account, [run.operation_id]).get(run.operation_id)
        now = state.context.store.now(conn)
        threshold = timedelta(seconds=state.context.settings.stalled_after_seconds)
        stalled = {task.task_id: task for task in stalled_tasks(conn, account, now, threshold, run_id=run.id)}
        error = None
        search = (params.get("search") or "").strip()[:200]
        try:
            query = TaskQuery(
                run_id=run.id,
                account_id=account,
                search=search or None,
                sort=params.get("sort") or "position",
                order=_order(params.get("order"), "asc"),  # type: ignore[arg-type]
                page=parse_int(params.get("page"), "page", default=1) or 1,
                page_size=parse_int(params.get("page_size"), "page_size", default=25) or 25,
            )
            found = list_tasks(conn, query)
        except (ValueError, RunyardError) as exc:
            error, query, found = str(exc), TaskQuery(run_id=run.id, account_id=account), None
        running = [] if run.status.is_final else running_tasks(conn, account, run_id=run.id)
    metrics = {task.task_id: _live_metrics(task, now) for task in running}
    return render(
        request,
        "run.html",
        who,
        active="runs",
        status_code=400 if error else 200,
        error=error,
        run=run,
        page=found,
        query=query,
        search=search,
        columns=TASK_COLUMNS,
        stalled=stalled,
        metrics=metrics,
        can_retry=who.can_operate and retry_allowed(_snapshot(run), latest),
        can_cancel=who.can_operate and cancel_allowed(run.status),
        live=not run.status.is_final,
    )


@router.get("/runs/{run_id}/tasks/{task_id}/messages")
def task_messages_page(request: Request, run_id: IdPath, task_id: IdPath, who: ViewerDep) -> Response:
    store = ui_state(request).context.store
    with store.read() as conn:
        try:
            run = get_run(conn, run_id, account_id=who.principal.account_id)
        except NotFound:
            return render(request, "not_found.html", who, status_code=404, what=f"run {run_id}")
        task = get_task(conn, run.id, task_id)
    if task is None:
        return render(request, "not_found.html", who, status_code=404, what=f"task {task_id} of run {run_id}")
    template = "messages_fragment.html" if request.headers.get("hx-request") == "true" else "messages.html"
    return render(request, template, who, active="runs", run=run, task=task)


@router.post("/runs/{run_id}/retry")
def retry(request: Request, run_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), f"/runs/{run_id}")
    refused = refuse_unless_operator(request, who, back, "retry runs")
    if refused is not None:
        return refused
    try:
        new = ui_state(request).context.runs.retry(
            run_id, account_id=who.principal.account_id, created_by=who.principal.user_id
        )
    except RunyardError as exc:
        return see_other(request, back, error=f"Run {run_id} was not retried: {exc}")
    target = back if first(form, "stay") else f"/runs/{new.id}"
    return see_other(request, target, notice=f"Run {new.id} started: a retry of run {run_id}.")


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), f"/runs/{run_id}")
    refused = refuse_unless_operator(request, who, back, "cancel runs")
    if refused is not None:
        return refused
    try:
        run = ui_state(request).context.runs.cancel(run_id, account_id=who.principal.account_id)
    except RunyardError as exc:
        return see_other(request, back, error=f"Run {run_id} was not canceled: {exc}")
    return see_other(request, back, notice=f"Run {run_id} is {run.status.label}.")
