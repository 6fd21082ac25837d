"""Data > Sources: operations with filters, their last run, Launch, Activate / Deactivate / Archive, and each one's
run time history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from runyard.domain.statuses import RunType, Trigger
from runyard.errors import LaunchThrottled, NotFound, RunRejected, RunyardError
from runyard.operations.loader import check_environment
from runyard.operations.registry import configuration_types, operation_types
from runyard.operations.workflow.definition import WORKFLOW
from runyard.params import IdPath
from runyard.services.alerts import open_alert_counts
from runyard.services.durations import run_durations
from runyard.services.operations import (
    OperationFilter,
    OperationState,
    OperationView,
    environments,
    get_operation,
    known_type,
    set_status,
)
from runyard.services.runs import LaunchRequest
from runyard.services.schedules import schedule_ticks, schedule_timezone
from runyard.services.sources import list_sources
from runyard.services.workflows import workflow_status
from runyard.ui.charts import duration_chart
from runyard.ui.sessions import FlashLink
from runyard.ui.web import (
    FormDep,
    Viewer,
    ViewerDep,
    check_form,
    first,
    refuse_unless_admin,
    refuse_unless_operator,
    render,
    safe_next,
    see_other,
    ui_state,
)

router = APIRouter(include_in_schema=False)

ALL_STATES = "all"
#: The State filter's choices: (value in the URL, label). The default leaves archived sources out.
STATE_CHOICES = (
    ("", "Active and inactive"),
    (OperationState.ACTIVE.value, "Active"),
    (OperationState.INACTIVE.value, "Inactive"),
    (OperationState.ARCHIVED.value, "Archived"),
    (ALL_STATES, "All, archived too"),
)
#: What each state button asks for: (activated, archived). Unarchive leaves the source Inactive.
STATE_ACTIONS = {
    "activate": (True, False),
    "deactivate": (False, False),
    "archive": (False, True),
}


def api_runs_types() -> frozenset[str]:
    """The configuration types whose runs are API runs (spec 000): their sources offer "View API Runs"."""
    return frozenset(name for name, definition in operation_types().items() if definition.api_runs)


def launchable_types() -> frozenset[str]:
    """The types with a Launch button: all but workflows, which launch their target instead."""
    return frozenset(name for name, definition in operation_types().items() if definition.launchable)


def source_filter(params: Mapping[str, str]) -> OperationFilter:
    """The filters of the page's address (type, environment, state); ValueError or a RunyardError naming a bad one."""
    kind = params.get("type") or None
    environment = params.get("environment") or None
    state = params.get("state") or None
    if state is not None and state != ALL_STATES and state not in {choice.value for choice in OperationState}:
        raise ValueError(f"state {state[:40]!r} is not one of: {', '.join(value for value, _ in STATE_CHOICES[1:])}")
    return OperationFilter(
        configuration_type=known_type(kind) if kind else None,
        environment=check_environment(environment) if environment else None,
        state=OperationState(state) if state not in (None, ALL_STATES) else None,
        include_archived=state == ALL_STATES,
    )


@router.get("/sources")
def sources_page(request: Request, who: ViewerDep) -> Response:
    params = request.query_params
    account = who.principal.account_id
    error = None
    try:
        where = source_filter(params)
    except (ValueError, RunyardError) as exc:
        error, where = str(exc), OperationFilter()
    store = ui_state(request).context.store
    with store.read() as conn:
        rows = [] if error else list_sources(conn, account, where)
        alert_counts = open_alert_counts(conn, account, store.now(conn))
        workflows = [
            workflow_status(conn, row.operation.id, account=account)
            for row in rows
            if row.operation.configuration_type == WORKFLOW
        ]
        known_environments = environments(conn, account=account)
        schedules = schedule_cells(conn, [row.operation for row in rows])
    return render(
        request,
        "sources.html",
        who,
        active="sources",
        status_code=400 if error else 200,
        error=error,
        rows=rows,
        schedules=schedules,
        alert_counts=alert_counts,
        api_runs=api_runs_types(),
        launchable=launchable_types(),
        workflows=workflows,
        types=configuration_types(),
        environments=known_environments,
        states=STATE_CHOICES,
        filtered=any(params.get(name) for name in ("type", "environment", "state")),
        live=True,
    )


@router.post("/sources/{operation_id}/launch")
def launch(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), "/sources")
    refused = refuse_unless_operator(request, who, back, "launch runs")
    if refused is not None:
        return refused
    try:
        run_type = RunType(first(form, "type") or RunType.INCREMENTAL.value)
    except ValueError:
        return see_other(request, back, error="Choose incremental or destructive.")
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
        return see_other(request, back, error=f"{rejected}.", link=blocking_run_link(rejected))
    except LaunchThrottled as throttled:
        return see_other(request, back, error=f"{throttled}.", link=blocking_run_link(throttled))
    except RunyardError as exc:
        return see_other(request, back, error=f"Not launched: {exc}")
    return see_other(request, f"/runs/{run.id}", notice=f"Run {run.id} started ({run_type.value}).")


def blocking_run_link(rejected: RunRejected | LaunchThrottled) -> FlashLink | None:
    """The Rejected flash's way to the run that blocked the launch (None when the race left it unknown)."""
    if rejected.active_run_id is None:
        return None
    return FlashLink(f"Open run {rejected.active_run_id}, still active", f"/runs/{rejected.active_run_id}")


@router.post("/sources/{operation_id}/activate")
def activate(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    return _change_state(request, operation_id, who, form, "activate")


@router.post("/sources/{operation_id}/deactivate")
def deactivate(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    """Also Unarchive: the source comes back Inactive."""
    return _change_state(request, operation_id, who, form, "deactivate")


@router.post("/sources/{operation_id}/archive")
def archive(request: Request, operation_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    return _change_state(request, operation_id, who, form, "archive")


def _change_state(
    request: Request, operation_id: IdPath, who: Viewer, form: Mapping[str, list[str]], action: str
) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), "/sources")
    refused = refuse_unless_admin(request, who, back, "activate, deactivate or archive sources")
    if refused is not None:
        return refused
    activated, archived = STATE_ACTIONS[action]
    try:
        changed = set_status(
            ui_state(request).context.store,
            operation_id,
            activated=activated,
            archived=archived,
            account=who.principal.account_id,
            changed_by=f"{who.principal.login} (user {who.principal.user_id}, web UI)",
        )
    except RunyardError as exc:
        return see_other(request, back, error=f"Not changed: {exc}")
    notice = f"Source {changed.configuration_id} ({changed.environment}) is now {changed.state.label}."
    if changed.state is OperationState.ARCHIVED:
        notice += " It is listed under State: Archived, and its runs stay on API Runs."
    return see_other(request, back, notice=notice)


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


# --- schedules (one line per scheduled source) --------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleCell:
    """A source's schedule as the page shows it: its cron, and its ticks on the schedule's clock with the zone's
    name, e.g. "2026-12-07 06:00 UTC" (`upcoming` is None while the source is not active)."""

    cron: str
    upcoming: str | None
    previous: str | None


def schedule_cells(conn: Connection, found: Sequence[OperationView]) -> dict[int, ScheduleCell]:
    """operation id -> its ScheduleCell, for the operations of `found` that have a schedule."""
    ticks = schedule_ticks(conn, found)
    cells: dict[int, ScheduleCell] = {}
    for operation in found:
        if operation.schedule is not None:
            zone = schedule_timezone(operation)
            previous, upcoming = ticks[operation.id]
            cells[operation.id] = ScheduleCell(operation.schedule, on_clock(upcoming, zone), on_clock(previous, zone))
    return cells


def on_clock(tick: datetime | None, zone: str) -> str | None:
    """The tick on the schedule's clock: "2026-12-07 06:00 Europe/Paris" (seconds only when it has some)."""
    if tick is None:
        return None
    try:
        local = tick.astimezone(ZoneInfo(zone))
    except (ValueError, KeyError):  # a zone this machine does not know: show UTC, and say so
        local, zone = tick, "UTC"
    seconds = f":{local:%S}" if local.second else ""
    return f"{local:%Y-%m-%d %H:%M}{seconds} {zone}"
