"""Alerts (a failed run, a slow one, unusual row counts, an overdue source): read by all, silenced by admins."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from runyard.api.deps import MAX_ID, AdminDep, IdPath, PrincipalDep, StoreDep
from runyard.api.schemas import AlertPublic, AlertsPage, SilenceBody, json_response
from runyard.domain.alerts import AlertKind, AlertState
from runyard.errors import InvalidInput
from runyard.services import alerts
from runyard.store.database import Store

router = APIRouter(prefix="/api/v1", tags=["alerts"])


@router.get("/alerts", response_model=AlertsPage)
def list_alerts(
    store: StoreDep,
    principal: PrincipalDep,
    state: Annotated[AlertState | None, Query(description="open, silenced or resolved")] = None,
    operation_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Operation id")] = None,
    kind: Annotated[AlertKind | None, Query(description="failed, running_long, rows_low, overdue, ...")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=alerts.PAGE_SIZE_MAX)] = 50,
) -> Response:
    """Your account's alerts, newest first."""
    with store.read() as conn:
        found, total = alerts.list_alerts(
            conn,
            principal.account_id,
            now=store.now(conn),
            state=state,
            operation_id=operation_id,
            kind=kind,
            page=page,
            page_size=page_size,
        )
    return json_response(
        AlertsPage(items=[AlertPublic.of(alert) for alert in found], total=total, page=page, page_size=page_size)
    )


@router.get("/alerts/{alert_id}", response_model=AlertPublic)
def get_alert(alert_id: IdPath, store: StoreDep, principal: PrincipalDep) -> AlertPublic:
    with store.read() as conn:
        return AlertPublic.of(alerts.get_alert(conn, principal.account_id, alert_id, store.now(conn)))


@router.post(
    "/alerts/{alert_id}/silence",
    response_model=AlertPublic,
    responses={409: {"description": "The alert has resolved"}},
)
def silence(alert_id: IdPath, body: SilenceBody, store: StoreDep, principal: AdminDep) -> AlertPublic:
    """Silence an open alert for `minutes`, or until a time: it stays open, but counts and notifies as silent."""
    now = _now(store)
    if (body.minutes is None) == (body.until is None):
        raise InvalidInput("minutes", "give either minutes or until (a time with its zone), not both or neither")
    until = now + timedelta(minutes=body.minutes) if body.minutes is not None else body.until
    assert until is not None
    return AlertPublic.of(
        alerts.silence(store, principal.account_id, alert_id, until=until, user_id=principal.user_id, now=now)
    )


@router.delete("/alerts/{alert_id}/silence", response_model=AlertPublic)
def unsilence(alert_id: IdPath, store: StoreDep, principal: AdminDep) -> AlertPublic:
    """End an alert's silence now."""
    return AlertPublic.of(
        alerts.unsilence(store, principal.account_id, alert_id, user_id=principal.user_id, now=_now(store))
    )


def _now(store: Store) -> datetime:
    with store.read() as conn:
        return store.now(conn)
