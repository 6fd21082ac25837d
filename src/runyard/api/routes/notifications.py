"""Notifications: where your account's alerts are sent (channels), which go where (rules), and what was sent.

Administrators manage channels and rules; anyone in the account may read the deliveries. A webhook URL carries the
receiver's token: it is answered masked, always.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from runyard.api.contract import one_of
from runyard.api.deps import MAX_ID, AdminDep, IdPath, PrincipalDep, StoreDep
from runyard.api.schemas import (
    ChannelCreate,
    ChannelPublic,
    ChannelTestPublic,
    DeliveriesPage,
    DeliveryPublic,
    RuleCreate,
    RulePublic,
)
from runyard.domain.notifications import DeliveryStatus
from runyard.services import notifications
from runyard.services.app_context import AppContext
from runyard.services.notify_send import NotificationSender

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("/channels", response_model=list[ChannelPublic])
def list_channels(store: StoreDep, principal: AdminDep) -> list[ChannelPublic]:
    with store.read() as conn:
        return [_channel(c) for c in notifications.list_channels(conn, principal.account_id)]


@router.post("/channels", status_code=201, response_model=ChannelPublic)
def create_channel(body: ChannelCreate, store: StoreDep, principal: AdminDep) -> ChannelPublic:
    """A webhook (JSON that Slack and Microsoft Teams incoming webhooks accept) or an email channel."""
    channel = notifications.create_channel(
        store, principal.account_id, name=body.name, kind=body.kind, target=body.target, now=datetime.now(UTC)
    )
    return _channel(channel)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: IdPath, store: StoreDep, principal: AdminDep) -> Response:
    """Deletes the channel, its rules and its deliveries."""
    notifications.delete_channel(store, principal.account_id, channel_id)
    return Response(status_code=204)


@router.post("/channels/{channel_id}/test", response_model=ChannelTestPublic)
def test_channel(channel_id: IdPath, request: Request, store: StoreDep, principal: AdminDep) -> ChannelTestPublic:
    """Sends a test message now and answers whether the receiver took it."""
    context: AppContext = request.app.state.context
    sender = NotificationSender.from_settings(context.settings)
    try:
        result = notifications.send_test(
            store, sender, principal.account_id, channel_id, datetime.now(UTC), public_url=context.settings.public_url
        )
    finally:
        sender.close()
    return ChannelTestPublic(delivered=result.delivered, error=result.error)


@router.get("/rules", response_model=list[RulePublic])
def list_rules(store: StoreDep, principal: AdminDep) -> list[RulePublic]:
    with store.read() as conn:
        return [_rule(r) for r in notifications.list_rules(conn, principal.account_id)]


@router.post("/rules", status_code=201, response_model=RulePublic)
def create_rule(body: RuleCreate, store: StoreDep, principal: AdminDep) -> RulePublic:
    """Sends the alerts of the given kinds (all when null), of one operation or all, to a channel."""
    rule = notifications.create_rule(
        store,
        principal.account_id,
        channel_id=body.channel_id,
        kinds=body.kinds,
        operation_id=body.operation_id,
        notify_resolved=body.notify_resolved,
        now=datetime.now(UTC),
    )
    return _rule(rule)


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: IdPath, store: StoreDep, principal: AdminDep) -> Response:
    notifications.delete_rule(store, principal.account_id, rule_id)
    return Response(status_code=204)


@router.get("/deliveries", response_model=DeliveriesPage)
def list_deliveries(
    store: StoreDep,
    principal: PrincipalDep,
    alert_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this alert's deliveries")] = None,
    status: Annotated[
        str | None,
        Query(max_length=20, description="pending, sending, sent or failed", json_schema_extra=one_of(DeliveryStatus)),
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=notifications.PAGE_SIZE_MAX)] = 50,
) -> DeliveriesPage:
    with store.read() as conn:
        found = notifications.list_deliveries(
            conn, principal.account_id, alert_id=alert_id, status=status, page=page, page_size=page_size
        )
    return DeliveriesPage(
        items=[_delivery(d) for d in found.items], total=found.total, page=found.page, page_size=found.page_size
    )


def _channel(channel: notifications.ChannelView) -> ChannelPublic:
    return ChannelPublic(
        id=channel.id,
        name=channel.name,
        kind=channel.kind.value,
        target=channel.target,
        created_at=channel.created_at,
    )


def _rule(rule: notifications.RuleView) -> RulePublic:
    return RulePublic(
        id=rule.id,
        channel_id=rule.channel_id,
        channel_name=rule.channel_name,
        kinds=[k.value for k in rule.kinds] if rule.kinds is not None else None,
        operation_id=rule.operation_id,
        configuration_id=rule.configuration_id,
        notify_resolved=rule.notify_resolved,
        created_at=rule.created_at,
    )


def _delivery(delivery: notifications.DeliveryView) -> DeliveryPublic:
    return DeliveryPublic(
        id=delivery.id,
        alert_id=delivery.alert_id,
        channel_id=delivery.channel_id,
        channel_name=delivery.channel_name,
        event=delivery.event.value,
        status=delivery.status.value,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_error=delivery.last_error,
        sent_at=delivery.sent_at,
        created_at=delivery.created_at,
    )
