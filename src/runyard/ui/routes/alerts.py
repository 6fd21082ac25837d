"""Alerts: what runyard raised about the sources' runs, open, silenced or resolved, with their evidence; an
administrator silences an open alert for an hour, a day or a week, or ends a silence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runyard.domain.alerts import Alert, AlertKind, AlertState
from runyard.errors import NotFound, RunyardError
from runyard.params import IdPath
from runyard.services.alerts import list_alerts, silence, unsilence
from runyard.services.operations import list_operations
from runyard.ui.web import (
    FormDep,
    ViewerDep,
    check_form,
    first,
    parse_int,
    refuse_unless_admin,
    render,
    safe_next,
    see_other,
    ui_state,
)

router = APIRouter(include_in_schema=False)

#: The tabs, in order: (state, label). Open is the default.
STATE_TABS = (
    (AlertState.OPEN, "Open"),
    (AlertState.SILENCED, "Silenced"),
    (AlertState.RESOLVED, "Resolved"),
)
#: What the Silence buttons offer: (value in the form, how long, label).
SILENCE_CHOICES = (
    ("1h", timedelta(hours=1), "1 hour"),
    ("1d", timedelta(days=1), "1 day"),
    ("1w", timedelta(weeks=1), "1 week"),
)
DEFAULT_PAGE_SIZE = 25


@dataclass(frozen=True)
class AlertsPage:
    """One page of alerts, shaped like the other lists for the pager macros."""

    items: list[Alert]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _state(value: str | None) -> AlertState:
    if not value:
        return AlertState.OPEN
    try:
        return AlertState(value)
    except ValueError:
        choices = ", ".join(state.value for state, _ in STATE_TABS)
        raise ValueError(f"state {value[:40]!r} is not one of: {choices}") from None


def _kind(value: str | None) -> AlertKind | None:
    if not value:
        return None
    try:
        return AlertKind(value)
    except ValueError:
        raise ValueError(f"kind {value[:40]!r} is not one of: {', '.join(k.value for k in AlertKind)}") from None


@router.get("/alerts")
def alerts_page(request: Request, who: ViewerDep) -> Response:
    params = request.query_params
    store = ui_state(request).context.store
    account = who.principal.account_id
    error = None
    state, kind, operation_id = AlertState.OPEN, None, None
    found: AlertsPage | None = None
    with store.read() as conn:
        now = store.now(conn)
        sources = list_operations(conn, account=account)
        try:
            state, kind = _state(params.get("state")), _kind(params.get("kind"))
            operation_id = parse_int(params.get("operation_id"), "operation_id")
            page = parse_int(params.get("page"), "page", default=1) or 1
            size = parse_int(params.get("page_size"), "page_size", default=DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
            items, total = list_alerts(
                conn, account, now=now, state=state, operation_id=operation_id, kind=kind, page=page, page_size=size
            )
            found = AlertsPage(items, total, page, size)
        except (ValueError, RunyardError) as exc:
            error = str(exc)
        counts = {
            tab: list_alerts(conn, account, now=now, state=tab, operation_id=operation_id, kind=kind, page_size=1)[1]
            for tab, _ in STATE_TABS
        }
    return render(
        request,
        "alerts.html",
        who,
        active="alerts",
        status_code=400 if error else 200,
        error=error,
        page=found,
        state=state,
        kind=kind,
        operation_id=operation_id,
        tabs=STATE_TABS,
        counts=counts,
        kinds=list(AlertKind),
        sources=sources,
        source_names={source.id: source.configuration_id for source in sources},
        silence_choices=SILENCE_CHOICES,
        AlertState=AlertState,
        live=True,
    )


@router.post("/alerts/{alert_id}/silence")
def silence_alert(request: Request, alert_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), "/alerts")
    refused = refuse_unless_admin(request, who, back, "silence alerts")
    if refused is not None:
        return refused
    chosen = first(form, "for")
    length = next((span for value, span, _ in SILENCE_CHOICES if value == chosen), None)
    label = next((text for value, _, text in SILENCE_CHOICES if value == chosen), "")
    if length is None:
        return see_other(request, back, error="Choose how long to silence the alert: 1 hour, 1 day or 1 week.")
    store = ui_state(request).context.store
    with store.read() as conn:
        now = store.now(conn)
    try:
        alert = silence(
            store, who.principal.account_id, alert_id, until=now + length, user_id=who.principal.user_id, now=now
        )
    except NotFound:
        return render(request, "not_found.html", who, status_code=404, what=f"alert {alert_id}")
    except RunyardError as exc:
        return see_other(request, back, error=f"Alert {alert_id} was not silenced: {exc}")
    until = alert.silenced_until.strftime("%Y-%m-%d %H:%M UTC") if alert.silenced_until else ""
    return see_other(
        request, back, notice=f"Alert {alert_id} ({alert.summary}) is silenced for {label}, until {until}."
    )


@router.post("/alerts/{alert_id}/unsilence")
def unsilence_alert(request: Request, alert_id: IdPath, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    back = safe_next(first(form, "next"), "/alerts")
    refused = refuse_unless_admin(request, who, back, "unsilence alerts")
    if refused is not None:
        return refused
    store = ui_state(request).context.store
    with store.read() as conn:
        now = store.now(conn)
    try:
        alert = unsilence(store, who.principal.account_id, alert_id, user_id=who.principal.user_id, now=now)
    except NotFound:
        return render(request, "not_found.html", who, status_code=404, what=f"alert {alert_id}")
    except RunyardError as exc:
        return see_other(request, back, error=f"Alert {alert_id} was not unsilenced: {exc}")
    return see_other(request, back, notice=f"Alert {alert_id} ({alert.summary}) is no longer silenced.")
