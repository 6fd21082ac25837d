"""Notifications: an account's channels and rules, the deliveries an alert's events enqueue, and sending them.

`enqueue` runs inside the transaction that opens or resolves an alert, so a delivery exists exactly when the event
does. `deliver_due` sends what is due without holding a transaction across the network: it claims deliveries
(status `sending`, `next_attempt_at` pushed forward as a lease), sends, then records each outcome, fenced on the
claim. A notifier that dies mid-send leaves its claims to expire and be taken again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from runyard.domain.alerts import Alert, AlertEvent, AlertKind, AlertState
from runyard.domain.notifications import (
    Backoff,
    ChannelKind,
    DeliveryStatus,
    Message,
    build_message,
    channel_test_message,
    email_addresses,
    mask_target,
    rule_matches,
    webhook_url_problem,
)
from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.services.alerts import alert_of
from runyard.services.listing import Page
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import (
    alerts,
    notification_channels,
    notification_deliveries,
    notification_rules,
    operations,
)

log = logging.getLogger(__name__)

PAGE_SIZE_MAX = 200
# How long a claimed delivery stays with the notifier that claimed it before another may take it again.
DEFAULT_LEASE = timedelta(minutes=2)
DEFAULT_BACKOFF = Backoff()


class SendFailed(Exception):
    """A sender's failure, its message safe to record and show: never the target URL, never a credential."""


# Sends `message` to a channel of `kind` at `target`; raises SendFailed when the receiver did not take it.
Sender = Callable[[ChannelKind, str, Message], None]


# --- enqueue: called in the transaction that opens or resolves an alert -------------------------------------------


def enqueue(conn: Connection, alert: Alert, event: AlertEvent, now: datetime) -> int:
    """Adds one pending delivery of `event` per channel a rule of the alert's account sends it to; returns how many
    were added. An event already enqueued for a channel is not enqueued again (UNIQUE(alert, channel, event))."""
    if event is AlertEvent.OPENED and alert.state is AlertState.SILENCED:
        return 0
    rules = conn.execute(
        sa.select(
            notification_rules.c.channel_id,
            notification_rules.c.kinds,
            notification_rules.c.operation_id,
            notification_rules.c.notify_resolved,
        )
        .where(notification_rules.c.account_id == alert.account_id)
        .order_by(notification_rules.c.id)
    ).all()
    channel_ids: list[int] = []
    for rule in rules:
        if event is AlertEvent.RESOLVED and not rule.notify_resolved:
            continue
        if rule_matches(rule.kinds, rule.operation_id, alert) and rule.channel_id not in channel_ids:
            channel_ids.append(int(rule.channel_id))
    added = 0
    for channel_id in channel_ids:
        result = conn.execute(
            dialect.insert_ignoring_duplicates(notification_deliveries, conn)
            .values(
                account_id=alert.account_id,
                alert_id=alert.id,
                channel_id=channel_id,
                event=event.value,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            .returning(notification_deliveries.c.id)  # no row when the delivery already existed
        )
        added += len(result.all())
    return added


# --- channels -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelView:
    """A channel as the API shows it: the target masked (a webhook URL carries the receiver's token)."""

    id: int
    name: str
    kind: ChannelKind
    target: str
    created_at: datetime


def create_channel(store: Store, account_id: int, *, name: str, kind: str, target: str, now: datetime) -> ChannelView:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("name", "a channel name has 1 to 100 characters")
    channel_kind = _channel_kind(kind)
    target = _checked_target(channel_kind, target)
    with store.write() as conn:
        taken = conn.execute(
            sa.select(notification_channels.c.id).where(
                notification_channels.c.account_id == account_id, notification_channels.c.name == name
            )
        ).first()
        if taken:
            raise Conflict(f"a notification channel named {name} already exists")
        channel_id = conn.execute(
            notification_channels.insert()
            .values(account_id=account_id, name=name, kind=channel_kind.value, target=target, created_at=now)
            .returning(notification_channels.c.id)
        ).scalar_one()
    log.info("notification channel %s (%s) created in account %s", channel_id, channel_kind.value, account_id)
    return ChannelView(int(channel_id), name, channel_kind, mask_target(channel_kind, target), now)


def list_channels(conn: Connection, account_id: int) -> list[ChannelView]:
    rows = conn.execute(
        sa.select(notification_channels)
        .where(notification_channels.c.account_id == account_id)
        .order_by(notification_channels.c.name, notification_channels.c.id)
    ).all()
    return [_channel_view(row) for row in rows]


def delete_channel(store: Store, account_id: int, channel_id: int) -> None:
    """Deletes the channel with its rules and deliveries, in one transaction."""
    with store.write() as conn:
        _channel_row(conn, account_id, channel_id)
        conn.execute(notification_deliveries.delete().where(notification_deliveries.c.channel_id == channel_id))
        conn.execute(notification_rules.delete().where(notification_rules.c.channel_id == channel_id))
        conn.execute(notification_channels.delete().where(notification_channels.c.id == channel_id))
    log.info("notification channel %s deleted from account %s", channel_id, account_id)


def _channel_kind(kind: str) -> ChannelKind:
    try:
        return ChannelKind(kind)
    except ValueError:
        kinds = ", ".join(k.value for k in ChannelKind)
        raise InvalidInput("kind", f"{kind[:50]!r} is not a channel kind; use one of: {kinds}") from None


def _checked_target(kind: ChannelKind, target: str) -> str:
    target = target.strip()
    if len(target) > 2000:
        raise InvalidInput("target", "must have at most 2000 characters")
    if kind is ChannelKind.WEBHOOK:
        problem = webhook_url_problem(target)
        if problem:
            raise InvalidInput("target", f"a webhook target {problem}")
        return target
    addresses, problem = email_addresses(target)
    if problem:
        raise InvalidInput("target", problem)
    return ", ".join(addresses)


def _channel_row(conn: Connection, account_id: int, channel_id: int) -> Row[Any]:
    row = conn.execute(
        sa.select(notification_channels).where(
            notification_channels.c.id == channel_id, notification_channels.c.account_id == account_id
        )
    ).first()
    if row is None:
        raise NotFound("notification channel", channel_id)
    return row


def _channel_view(row: Row[Any]) -> ChannelView:
    kind = ChannelKind(row.kind)
    return ChannelView(int(row.id), row.name, kind, mask_target(kind, row.target), row.created_at)


# --- rules --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    id: int
    channel_id: int
    channel_name: str
    kinds: tuple[AlertKind, ...] | None  # None: every kind
    operation_id: int | None
    configuration_id: str | None
    notify_resolved: bool
    created_at: datetime


def create_rule(
    store: Store,
    account_id: int,
    *,
    channel_id: int,
    kinds: list[str] | None,
    operation_id: int | None,
    notify_resolved: bool,
    now: datetime,
) -> RuleView:
    checked = _checked_kinds(kinds)
    with store.write() as conn:
        if not _owned(conn, notification_channels, account_id, channel_id):
            raise InvalidInput("channel_id", f"there is no notification channel {channel_id} in this account")
        if operation_id is not None and not _owned(conn, operations, account_id, operation_id):
            raise InvalidInput("operation_id", f"there is no operation {operation_id} in this account")
        rule_id = conn.execute(
            notification_rules.insert()
            .values(
                account_id=account_id,
                channel_id=channel_id,
                kinds=[k.value for k in checked] if checked is not None else None,
                operation_id=operation_id,
                notify_resolved=notify_resolved,
                created_at=now,
            )
            .returning(notification_rules.c.id)
        ).scalar_one()
        return _rules(conn, account_id, notification_rules.c.id == rule_id)[0]


def list_rules(conn: Connection, account_id: int) -> list[RuleView]:
    return _rules(conn, account_id)


def delete_rule(store: Store, account_id: int, rule_id: int) -> None:
    with store.write() as conn:
        deleted = conn.execute(
            notification_rules.delete().where(
                notification_rules.c.id == rule_id, notification_rules.c.account_id == account_id
            )
        ).rowcount
        if not deleted:
            raise NotFound("notification rule", rule_id)


def _checked_kinds(kinds: list[str] | None) -> tuple[AlertKind, ...] | None:
    if kinds is None:
        return None
    if not kinds:
        raise InvalidInput("kinds", "must name at least one alert kind, or be null for every kind")
    checked: list[AlertKind] = []
    for kind in kinds:
        try:
            value = AlertKind(kind)
        except ValueError:
            allowed = ", ".join(k.value for k in AlertKind)
            raise InvalidInput("kinds", f"{str(kind)[:50]!r} is not an alert kind; use: {allowed}") from None
        if value not in checked:
            checked.append(value)
    return tuple(checked)


def _owned(conn: Connection, table: sa.Table, account_id: int, row_id: int) -> bool:
    found = conn.execute(sa.select(table.c.id).where(table.c.id == row_id, table.c.account_id == account_id))
    return found.first() is not None


def _rules(conn: Connection, account_id: int, *where: sa.ColumnElement[bool]) -> list[RuleView]:
    rows = conn.execute(
        sa.select(
            notification_rules,
            notification_channels.c.name.label("channel_name"),
            operations.c.configuration_id,
        )
        .join(notification_channels, notification_channels.c.id == notification_rules.c.channel_id)
        .outerjoin(operations, operations.c.id == notification_rules.c.operation_id)
        .where(notification_rules.c.account_id == account_id, *where)
        .order_by(notification_rules.c.id)
    ).all()
    return [
        RuleView(
            id=int(row.id),
            channel_id=int(row.channel_id),
            channel_name=row.channel_name,
            kinds=tuple(AlertKind(k) for k in row.kinds) if row.kinds is not None else None,
            operation_id=row.operation_id,
            configuration_id=row.configuration_id,
            notify_resolved=bool(row.notify_resolved),
            created_at=row.created_at,
        )
        for row in rows
    ]


# --- deliveries ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryView:
    id: int
    alert_id: int
    channel_id: int
    channel_name: str
    event: AlertEvent
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime


def list_deliveries(
    conn: Connection,
    account_id: int,
    *,
    alert_id: int | None = None,
    status: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page[DeliveryView]:
    """The account's deliveries, newest first."""
    if page < 1:
        raise InvalidInput("page", f"must be 1 or more, not {page}")
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise InvalidInput("page_size", f"must be between 1 and {PAGE_SIZE_MAX}, not {page_size}")
    conditions = [notification_deliveries.c.account_id == account_id]
    if alert_id is not None:
        conditions.append(notification_deliveries.c.alert_id == alert_id)
    if status is not None:
        if status not in {s.value for s in DeliveryStatus}:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise InvalidInput("status", f"{status[:50]!r} is not a delivery status; use one of: {allowed}")
        conditions.append(notification_deliveries.c.status == status)
    total = conn.execute(sa.select(sa.func.count()).select_from(notification_deliveries).where(*conditions))
    rows = conn.execute(
        sa.select(notification_deliveries, notification_channels.c.name.label("channel_name"))
        .join(notification_channels, notification_channels.c.id == notification_deliveries.c.channel_id)
        .where(*conditions)
        .order_by(notification_deliveries.c.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    items = tuple(
        DeliveryView(
            id=int(row.id),
            alert_id=int(row.alert_id),
            channel_id=int(row.channel_id),
            channel_name=row.channel_name,
            event=AlertEvent(row.event),
            status=DeliveryStatus(row.status),
            attempts=int(row.attempts),
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            sent_at=row.sent_at,
            created_at=row.created_at,
        )
        for row in rows
    )
    return Page(items=items, total=int(total.scalar_one()), page=page, page_size=page_size)


# --- sending ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver_due` pass did."""

    claimed: int = 0
    sent: int = 0
    retrying: int = 0  # failed this time, tried again later
    failed: int = 0  # failed for good: that was the last attempt


@dataclass(frozen=True)
class _Claim:
    id: int
    attempts: int
    event: AlertEvent
    kind: ChannelKind
    target: str
    alert: Alert


def deliver_due(
    store: Store,
    send: Sender,
    now: datetime,
    *,
    limit: int = 20,
    public_url: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    lease: timedelta = DEFAULT_LEASE,
) -> DeliveryReport:
    """Sends the deliveries due at `now` (at most `limit`): claim, send outside any transaction, record."""
    claims = _claim_due(store, now, limit, lease, backoff.max_attempts)
    sent = retrying = failed = 0
    for claim in claims:
        error = _attempt(send, claim.kind, claim.target, build_message(claim.alert, claim.event, public_url))
        outcome = _record(store, claim, error, now, backoff)
        sent += outcome is DeliveryStatus.SENT
        retrying += outcome is DeliveryStatus.PENDING
        failed += outcome is DeliveryStatus.FAILED
    return DeliveryReport(claimed=len(claims), sent=sent, retrying=retrying, failed=failed)


@dataclass(frozen=True)
class ChannelTestResult:
    delivered: bool
    error: str | None


def send_test(
    store: Store, send: Sender, account_id: int, channel_id: int, now: datetime, *, public_url: str | None = None
) -> ChannelTestResult:
    """Sends a test message to a channel now, and answers whether the receiver took it. Nothing is recorded."""
    with store.read() as conn:
        channel = _channel_row(conn, account_id, channel_id)
    kind = ChannelKind(channel.kind)
    error = _attempt(send, kind, channel.target, channel_test_message(channel.name, public_url, now))
    log.info("test notification to channel %s: %s", channel_id, "delivered" if error is None else "failed")
    return ChannelTestResult(delivered=error is None, error=error)


def _claim_due(store: Store, now: datetime, limit: int, lease: timedelta, max_attempts: int) -> list[_Claim]:
    # A `sending` row whose lease ran out belongs to a notifier that died mid-send: it is due again.
    due = sa.and_(
        notification_deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),
        notification_deliveries.c.next_attempt_at <= now,
    )
    with store.write() as conn:
        query = (
            sa.select(
                notification_deliveries.c.id, notification_deliveries.c.status, notification_deliveries.c.attempts
            )
            .where(due)
            .order_by(notification_deliveries.c.next_attempt_at, notification_deliveries.c.id)
            .limit(limit)
        )
        picked = conn.execute(dialect.lock_for_claim(query, conn)).all()
        # A lease that ran out on the last attempt: that attempt's outcome is unknown, and there is no other.
        spent = [int(r.id) for r in picked if r.status == DeliveryStatus.SENDING and r.attempts >= max_attempts]
        if spent:
            conn.execute(
                notification_deliveries.update()
                .where(notification_deliveries.c.id.in_(spent))
                .values(
                    status=DeliveryStatus.FAILED.value,
                    next_attempt_at=None,
                    last_error="the last attempt was interrupted (the process sending it stopped)",
                )
            )
        ids = [int(row.id) for row in picked if int(row.id) not in spent]
        if not ids:
            return []
        conn.execute(
            notification_deliveries.update()
            .where(notification_deliveries.c.id.in_(ids))
            .values(
                status=DeliveryStatus.SENDING.value,
                attempts=notification_deliveries.c.attempts + 1,
                next_attempt_at=now + lease,
            )
        )
        rows = conn.execute(
            sa.select(
                notification_deliveries.c.id.label("delivery_id"),
                notification_deliveries.c.attempts.label("delivery_attempts"),
                notification_deliveries.c.event,
                notification_channels.c.kind.label("channel_kind"),
                notification_channels.c.target,
                alerts,
                operations.c.configuration_id,
            )
            .join(notification_channels, notification_channels.c.id == notification_deliveries.c.channel_id)
            .join(alerts, alerts.c.id == notification_deliveries.c.alert_id)
            .join(operations, operations.c.id == alerts.c.operation_id)
            .where(notification_deliveries.c.id.in_(ids))
            .order_by(notification_deliveries.c.id)
        ).all()
    return [
        _Claim(
            id=int(row.delivery_id),
            attempts=int(row.delivery_attempts),
            event=AlertEvent(row.event),
            kind=ChannelKind(row.channel_kind),
            target=row.target,
            alert=alert_of(row, now),
        )
        for row in rows
    ]


def _attempt(send: Sender, kind: ChannelKind, target: str, message: Message) -> str | None:
    """Sends; answers None, or why it failed in words safe to store and show (the target masked out)."""
    try:
        send(kind, target, message)
    except SendFailed as error:
        reason = str(error)
    except Exception as error:  # a sender's bug must not stop the loop; its text could hold anything
        log.warning("a %s sender raised %s", kind.value, type(error).__name__)
        reason = f"{kind.value} sender error ({type(error).__name__})"
    else:
        return None
    if target:
        reason = reason.replace(target, mask_target(kind, target))
    return reason[:500]


def _record(store: Store, claim: _Claim, error: str | None, now: datetime, backoff: Backoff) -> DeliveryStatus | None:
    """Writes the attempt's outcome, only while this claim still holds the delivery (fenced on status and
    attempts); answers the new status, or None when the claim was lost (the delivery deleted or taken over)."""
    values: dict[str, object]
    if error is None:
        status, values = DeliveryStatus.SENT, {"sent_at": now, "next_attempt_at": None, "last_error": None}
    else:
        delay = backoff.delay(claim.attempts)
        status = DeliveryStatus.FAILED if delay is None else DeliveryStatus.PENDING
        values = {"next_attempt_at": None if delay is None else now + delay, "last_error": error}
    with store.write() as conn:
        updated = conn.execute(
            notification_deliveries.update()
            .where(
                notification_deliveries.c.id == claim.id,
                notification_deliveries.c.status == DeliveryStatus.SENDING.value,
                notification_deliveries.c.attempts == claim.attempts,
            )
            .values(status=status.value, **values)
        ).rowcount
    if not updated:
        log.info("notification delivery %s: claim lost before its outcome was recorded", claim.id)
        return None
    log.info("notification delivery %s attempt %s: %s", claim.id, claim.attempts, status.value)
    return status
