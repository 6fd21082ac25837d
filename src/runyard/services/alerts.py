"""Alerts as people see them: the lists and counts the API and the UI read, and an administrator's silence.

The alerts themselves are raised and resolved by runyard.services.alert_evaluation; this module only reads them
and sets or clears `silenced_until`. An alert's state (open, silenced, resolved) is worked out at `now`, so a
silence ends by itself without a write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from runyard.domain.alerts import Alert, AlertKind, AlertState, alert_state
from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.store.database import Store
from runyard.store.tables import alerts, operations

PAGE_SIZE_MAX = 200


def alerts_select() -> sa.Select[Any]:
    """Every column `alert_of` reads: the alert's own, and its operation's configuration_id."""
    return sa.select(alerts, operations.c.configuration_id).join(operations, operations.c.id == alerts.c.operation_id)


def alert_of(row: Row[Any], now: datetime) -> Alert:
    return Alert(
        id=row.id,
        account_id=row.account_id,
        operation_id=row.operation_id,
        configuration_id=row.configuration_id,
        run_id=row.run_id,
        run_type=row.run_type,
        kind=AlertKind(row.kind),
        state=alert_state(row.resolved_at, row.silenced_until, now),
        summary=row.summary,
        evidence=row.evidence,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        resolution=row.resolution,
        silenced_until=row.silenced_until,
    )


def state_condition(state: AlertState, now: datetime) -> ColumnElement[bool]:
    """The rows in `state` at `now` (the same rule as runyard.domain.alerts.alert_state)."""
    if state is AlertState.RESOLVED:
        return alerts.c.resolved_at.is_not(None)
    silenced = sa.and_(alerts.c.silenced_until.is_not(None), alerts.c.silenced_until > now)
    if state is AlertState.SILENCED:
        return sa.and_(alerts.c.resolved_at.is_(None), silenced)
    return sa.and_(alerts.c.resolved_at.is_(None), sa.not_(silenced))


def list_alerts(
    conn: Connection,
    account_id: int,
    *,
    now: datetime,
    state: AlertState | None = None,
    operation_id: int | None = None,
    kind: AlertKind | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[Alert], int]:
    """An account's alerts, newest first, and how many match in all (not only on this page)."""
    if page < 1:
        raise InvalidInput("page", f"must be 1 or more, not {page}")
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise InvalidInput("page_size", f"must be between 1 and {PAGE_SIZE_MAX}, not {page_size}")
    conditions: list[ColumnElement[bool]] = [alerts.c.account_id == account_id]
    if state is not None:
        conditions.append(state_condition(state, now))
    if operation_id is not None:
        conditions.append(alerts.c.operation_id == operation_id)
    if kind is not None:
        conditions.append(alerts.c.kind == kind.value)
    total = conn.execute(sa.select(sa.func.count()).select_from(alerts).where(*conditions)).scalar_one()
    rows = conn.execute(
        alerts_select().where(*conditions).order_by(alerts.c.id.desc()).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return [alert_of(row, now) for row in rows], total


def get_alert(conn: Connection, account_id: int, alert_id: int, now: datetime) -> Alert:
    """One alert of the account; NotFound for another account's, as for a missing one."""
    row = conn.execute(alerts_select().where(alerts.c.id == alert_id, alerts.c.account_id == account_id)).first()
    if row is None:
        raise NotFound("alert", alert_id)
    return alert_of(row, now)


def open_alert_counts(conn: Connection, account_id: int, now: datetime) -> dict[int, int]:
    """Per operation id, its alerts open and not silenced at `now` (operations without any are absent)."""
    rows = conn.execute(
        sa.select(alerts.c.operation_id, sa.func.count())
        .where(alerts.c.account_id == account_id, state_condition(AlertState.OPEN, now))
        .group_by(alerts.c.operation_id)
    ).all()
    return {operation_id: count for operation_id, count in rows}


def alerts_by_run(conn: Connection, run_ids: Iterable[int], now: datetime) -> dict[int, list[Alert]]:
    """The alerts raised about each of `run_ids` (any state), oldest first; runs without alerts are absent.

    The caller checks the runs belong to the account it serves: alerts carry their runs' account."""
    ids = sorted(set(run_ids))
    found: dict[int, list[Alert]] = {}
    if not ids:
        return found
    rows = conn.execute(alerts_select().where(alerts.c.run_id.in_(ids)).order_by(alerts.c.id)).all()
    for row in rows:
        found.setdefault(row.run_id, []).append(alert_of(row, now))
    return found


def silence(
    store: Store, account_id: int, alert_id: int, *, until: datetime, user_id: int | None, now: datetime
) -> Alert:
    """Silence an open alert until `until` (it stays open, but is not counted or shown as open until then)."""
    if until.utcoffset() is None:
        raise InvalidInput("until", "must include a time zone")
    if until <= now:
        raise InvalidInput("until", f"must be in the future (it is {now.isoformat()} now)")
    return _set_silence(store, account_id, alert_id, until=until, user_id=user_id, now=now)


def unsilence(store: Store, account_id: int, alert_id: int, *, user_id: int | None, now: datetime) -> Alert:
    """End an alert's silence now: it is open again (if it has not resolved meanwhile)."""
    return _set_silence(store, account_id, alert_id, until=None, user_id=user_id, now=now)


def _set_silence(
    store: Store, account_id: int, alert_id: int, *, until: datetime | None, user_id: int | None, now: datetime
) -> Alert:
    with store.write() as conn:
        current = get_alert(conn, account_id, alert_id, now)
        if current.state is AlertState.RESOLVED and until is not None:
            raise Conflict(f"alert {alert_id} has resolved: there is nothing to silence")
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(silenced_until=until, silenced_by=user_id if until is not None else None, updated_at=now)
        )
        return get_alert(conn, account_id, alert_id, now)
