"""Notifications on both databases, to real receivers on loopback: a webhook (a small HTTP server) and email (an
aiosmtpd server). Enqueue and dedupe, rules, delivery, retries with backoff against a receiver that is down, the
final failure, two notifiers at once, and the Notifier thread. Time is driven by the `now` passed in, not waited."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from runyard.domain.alerts import Alert, AlertEvent, AlertKind, AlertState
from runyard.domain.notifications import Backoff
from runyard.errors import Conflict, InvalidInput, NotFound
from runyard.services import notifications as notes
from runyard.services.accounts import account_id, create_account
from runyard.services.notify_send import NotificationSender, SmtpConfig
from runyard.store.database import Store
from runyard.store.tables import alerts, notification_deliveries, notification_rules
from runyard.worker.notifier import Notifier
from tests.factories import make_operation
from tests.integration.notify_receivers import closed_port_url, smtp_receiver, webhook_receiver
from tests.integration.rest_harness import wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "XyZsecretTOKEN1234"  # the part of a webhook URL that must never leave the store
NOTIFIER_TIMEOUT = 20.0


@pytest.fixture
def account(store: Store) -> int:
    make_operation(store, configuration_id="orders")
    with store.read() as conn:
        return account_id(conn, "default")


def operation_id(store: Store, configuration_id: str = "orders") -> int:
    from runyard.store.tables import operations

    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(operations.c.id).where(operations.c.configuration_id == configuration_id)
            ).scalar_one()
        )


def open_alert(
    store: Store, account: int, *, kind: AlertKind = AlertKind.FAILED, silenced: bool = False, key: str = "k"
) -> Alert:
    op = operation_id(store)
    silenced_until = T0 + timedelta(hours=1) if silenced else None
    with store.write() as conn:
        alert_id = conn.execute(
            alerts.insert()
            .values(
                account_id=account,
                operation_id=op,
                kind=kind.value,
                key=key,
                summary="orders: run 7 Failed",
                evidence="task extract failed after 3 attempts",
                opened_at=T0,
                updated_at=T0,
                silenced_until=silenced_until,
            )
            .returning(alerts.c.id)
        ).scalar_one()
    return Alert(
        id=int(alert_id),
        account_id=account,
        operation_id=op,
        configuration_id="orders",
        run_id=None,
        run_type="incremental",
        kind=kind,
        state=AlertState.SILENCED if silenced else AlertState.OPEN,
        summary="orders: run 7 Failed",
        evidence="task extract failed after 3 attempts",
        opened_at=T0,
        updated_at=T0,
        resolved_at=None,
        resolution=None,
        silenced_until=silenced_until,
    )


def enqueue(store: Store, alert: Alert, event: AlertEvent = AlertEvent.OPENED) -> int:
    with store.write() as conn:
        return notes.enqueue(conn, alert, event, T0)


def deliveries(store: Store) -> list[sa.Row[object]]:
    with store.read() as conn:
        return list(conn.execute(sa.select(notification_deliveries).order_by(notification_deliveries.c.id)).all())


def webhook(store: Store, account: int, url: str, name: str = "hook") -> int:
    channel = notes.create_channel(store, account, name=name, kind="webhook", target=url, now=T0)
    notes.create_rule(
        store, account, channel_id=channel.id, kinds=None, operation_id=None, notify_resolved=True, now=T0
    )
    return channel.id


@pytest.fixture
def sender() -> Iterator[NotificationSender]:
    sending = NotificationSender(SmtpConfig(host=None))
    yield sending
    sending.close()


# --- delivery ---------------------------------------------------------------------------------------------------


def test_a_webhook_and_an_email_arrive_at_the_local_receivers(
    store: Store, account: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_receiver() as hook, smtp_receiver() as smtp:
        webhook(store, account, f"{hook.base_url}/services/{TOKEN}")
        mail = notes.create_channel(
            store, account, name="ops mail", kind="email", target="ops@example.com, oncall@example.com", now=T0
        )
        notes.create_rule(
            store, account, channel_id=mail.id, kinds=["failed"], operation_id=None, notify_resolved=True, now=T0
        )
        alert = open_alert(store, account)
        assert enqueue(store, alert) == 2

        send = NotificationSender(
            SmtpConfig(host=smtp.host, port=smtp.port, sender="runyard@example.com", user=None, password=None)
        )
        try:
            report = notes.deliver_due(store, send, T0, limit=10, public_url="https://runyard.example.com")
        finally:
            send.close()

        assert (report.claimed, report.sent, report.retrying, report.failed) == (2, 2, 0, 0)
        (posted,) = hook.received
        assert posted.path == f"/services/{TOKEN}"
        assert posted.headers["Content-Type"] == "application/json"
        body = posted.body
        assert "orders: run 7 Failed" in body["text"]
        assert "https://runyard.example.com/alerts" in body["text"]
        assert body["summary"] == body["title"]
        assert "orders: run 7 Failed" in body["title"]
        assert (body["runyard"]["alert_id"], body["runyard"]["event"]) == (alert.id, "opened")
        assert TOKEN not in str(body)

        (email,) = smtp.mails
        assert email.sender == "runyard@example.com"
        assert sorted(email.recipients) == ["oncall@example.com", "ops@example.com"]
        assert "orders: run 7 Failed" in str(email.message["Subject"])
        content = email.message.get_content()
        assert "task extract failed after 3 attempts" in content
        assert "https://runyard.example.com/alerts" in content
        assert TOKEN not in content

    rows = deliveries(store)
    assert [(r.status, r.attempts, r.last_error, r.sent_at) for r in rows] == [("sent", 1, None, T0)] * 2
    assert "notification delivery" in caplog.text  # the deliveries were logged, their URL was not
    assert TOKEN not in caplog.text


def test_a_receiver_that_is_down_gets_the_retries_with_backoff_then_the_delivery_fails(
    store: Store, account: int, sender: NotificationSender
) -> None:
    backoff = Backoff(base_seconds=10, max_attempts=3)
    down = closed_port_url(f"/hooks/{TOKEN}")
    with webhook_receiver(statuses=[500, 500, 500]) as failing:
        webhook(store, account, down, name="refused")
        webhook(store, account, f"{failing.base_url}/hooks/{TOKEN}", name="answers 500")
        enqueue(store, open_alert(store, account))

        first = notes.deliver_due(store, sender, T0, backoff=backoff)
        assert (first.sent, first.retrying) == (0, 2)
        rows = deliveries(store)
        assert [(r.status, r.attempts, r.next_attempt_at) for r in rows] == [
            ("pending", 1, T0 + timedelta(seconds=10))
        ] * 2
        # not due yet: nothing is sent
        assert notes.deliver_due(store, sender, T0 + timedelta(seconds=9), backoff=backoff).claimed == 0

        second = notes.deliver_due(store, sender, T0 + timedelta(seconds=10), backoff=backoff)
        assert second.retrying == 2
        # the second wait is four times the base
        assert {r.next_attempt_at for r in deliveries(store)} == {T0 + timedelta(seconds=50)}

        third = notes.deliver_due(store, sender, T0 + timedelta(seconds=50), backoff=backoff)
        assert (third.failed, third.retrying) == (2, 0)
        assert len(failing.received) == 3
        # failed for good: never claimed again
        assert notes.deliver_due(store, sender, T0 + timedelta(days=1), backoff=backoff).claimed == 0

    refused, answered = deliveries(store)
    assert (refused.status, refused.attempts, refused.next_attempt_at) == ("failed", 3, None)
    assert refused.last_error == "webhook unreachable (ConnectError)"
    assert (answered.status, answered.attempts) == ("failed", 3)
    assert answered.last_error == "webhook answered HTTP 500"
    for row in (refused, answered):
        assert TOKEN not in row.last_error
        assert "127.0.0.1" not in row.last_error


def test_a_receiver_that_comes_back_gets_the_notification(
    store: Store, account: int, sender: NotificationSender
) -> None:
    with webhook_receiver(statuses=[503]) as hook:
        webhook(store, account, f"{hook.base_url}/h")
        enqueue(store, open_alert(store, account))
        assert notes.deliver_due(store, sender, T0, backoff=Backoff(base_seconds=1)).retrying == 1
        assert notes.deliver_due(store, sender, T0 + timedelta(seconds=1), backoff=Backoff(base_seconds=1)).sent == 1
        assert len(hook.received) == 2
    (row,) = deliveries(store)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_an_email_channel_without_an_smtp_server_fails_clearly(
    store: Store, account: int, sender: NotificationSender
) -> None:
    channel = notes.create_channel(store, account, name="mail", kind="email", target="ops@example.com", now=T0)
    notes.create_rule(
        store, account, channel_id=channel.id, kinds=None, operation_id=None, notify_resolved=True, now=T0
    )
    enqueue(store, open_alert(store, account))
    notes.deliver_due(store, sender, T0, backoff=Backoff(max_attempts=1))
    (row,) = deliveries(store)
    assert row.status == "failed"
    assert "no SMTP server is configured" in row.last_error


def test_two_notifiers_at_once_send_each_delivery_once(store: Store, account: int, sender: NotificationSender) -> None:
    with webhook_receiver() as hook:
        webhook(store, account, f"{hook.base_url}/h")
        for key in ("a", "b", "c"):
            enqueue(store, open_alert(store, account, key=key))
        start = threading.Barrier(2)
        reports: list[notes.DeliveryReport] = []

        def run() -> None:
            start.wait()
            reports.append(notes.deliver_due(store, sender, T0))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r.sent for r in reports) == 3
        assert sorted(p.body["runyard"]["alert_id"] for p in hook.received) == sorted(
            r.alert_id for r in deliveries(store)
        )
        assert len(hook.received) == 3


def test_a_claim_whose_notifier_died_is_taken_again_after_its_lease(
    store: Store, account: int, sender: NotificationSender
) -> None:
    with webhook_receiver() as hook:
        webhook(store, account, f"{hook.base_url}/h")
        enqueue(store, open_alert(store, account))

        def dies(*_: object) -> None:
            raise KeyboardInterrupt  # the process goes away between the claim and the outcome

        with pytest.raises(KeyboardInterrupt):
            notes.deliver_due(store, dies, T0)
        (row,) = deliveries(store)
        assert (row.status, row.attempts) == ("sending", 1)
        assert notes.deliver_due(store, sender, T0 + timedelta(seconds=1)).claimed == 0  # still leased
        assert notes.deliver_due(store, sender, T0 + notes.DEFAULT_LEASE).sent == 1
        assert len(hook.received) == 1


def test_a_last_attempt_whose_notifier_died_fails_the_delivery(store: Store, account: int) -> None:
    webhook(store, account, "https://hooks.example.com/x")
    enqueue(store, open_alert(store, account))

    def dies(*_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        notes.deliver_due(store, dies, T0, backoff=Backoff(max_attempts=1))
    report = notes.deliver_due(store, dies, T0 + notes.DEFAULT_LEASE, backoff=Backoff(max_attempts=1))
    assert report.claimed == 0
    (row,) = deliveries(store)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "interrupted" in row.last_error


def test_the_notifier_thread_delivers_and_stops(store: Store, account: int, sender: NotificationSender) -> None:
    with webhook_receiver() as hook:
        webhook(store, account, f"{hook.base_url}/h")
        enqueue(store, open_alert(store, account))
        notifier = Notifier(store, sender, notify_seconds=0.05, clock=lambda: T0 + timedelta(seconds=1))
        notifier.start()
        try:
            wait_for(lambda: hook.received, timeout=NOTIFIER_TIMEOUT, what="the notifier to deliver")
        finally:
            notifier.stop()
    (row,) = deliveries(store)
    assert row.status == "sent"


# --- enqueue and rules ------------------------------------------------------------------------------------------


def test_enqueue_twice_makes_one_delivery(store: Store, account: int) -> None:
    webhook(store, account, "https://hooks.example.com/x")
    alert = open_alert(store, account)
    assert enqueue(store, alert) == 1
    assert enqueue(store, alert) == 0
    assert enqueue(store, alert, AlertEvent.RESOLVED) == 1
    assert [(r.event, r.status) for r in deliveries(store)] == [("opened", "pending"), ("resolved", "pending")]


def test_rules_choose_the_channels(store: Store, account: int) -> None:
    make_operation(store, configuration_id="other-op")
    other_op = operation_id(store, "other-op")
    channels = {
        name: notes.create_channel(store, account, name=name, kind="webhook", target="https://h.example.com/1", now=T0)
        for name in ("all", "slow", "other-op", "quiet")
    }

    def rule(name: str, kinds: list[str] | None, op: int | None = None, resolved: bool = True) -> None:
        notes.create_rule(
            store, account, channel_id=channels[name].id, kinds=kinds, operation_id=op, notify_resolved=resolved, now=T0
        )

    rule("all", None)
    rule("slow", ["running_long"])
    rule("other-op", None, other_op)
    rule("quiet", ["failed"], resolved=False)
    alert = open_alert(store, account)  # a failed run of "orders"
    assert enqueue(store, alert) == 2  # all, quiet
    assert enqueue(store, alert, AlertEvent.RESOLVED) == 1  # all: quiet skips resolutions
    silenced = open_alert(store, account, key="s", silenced=True)
    assert enqueue(store, silenced) == 0
    by_channel = {(r.channel_id, r.event) for r in deliveries(store)}
    assert by_channel == {
        (channels["all"].id, "opened"),
        (channels["quiet"].id, "opened"),
        (channels["all"].id, "resolved"),
    }


def test_channel_and_rule_validation(store: Store, account: int) -> None:
    with pytest.raises(InvalidInput) as bad_url:
        notes.create_channel(store, account, name="x", kind="webhook", target="ftp://files.example.com/", now=T0)
    assert bad_url.value.field == "target"
    with pytest.raises(InvalidInput) as bad_mail:
        notes.create_channel(store, account, name="x", kind="email", target="ops@example.com, nobody", now=T0)
    assert bad_mail.value.field == "target"
    with pytest.raises(InvalidInput) as bad_kind:
        notes.create_channel(store, account, name="x", kind="sms", target="+1555", now=T0)
    assert bad_kind.value.field == "kind"
    channel = notes.create_channel(
        store, account, name="x", kind="webhook", target=f"https://h.example.com/{TOKEN}", now=T0
    )
    assert channel.target == "https://h.example.com/…1234"
    with pytest.raises(Conflict):
        notes.create_channel(store, account, name="x", kind="email", target="a@example.com", now=T0)

    other = create_account(store, "other")
    with pytest.raises(InvalidInput) as foreign:
        notes.create_rule(
            store, other, channel_id=channel.id, kinds=None, operation_id=None, notify_resolved=True, now=T0
        )
    assert foreign.value.field == "channel_id"
    with pytest.raises(InvalidInput) as kinds:
        notes.create_rule(
            store,
            account,
            channel_id=channel.id,
            kinds=["failed", "boom"],
            operation_id=None,
            notify_resolved=True,
            now=T0,
        )
    assert kinds.value.field == "kinds"
    with pytest.raises(InvalidInput) as op:
        notes.create_rule(
            store, account, channel_id=channel.id, kinds=None, operation_id=999_999, notify_resolved=True, now=T0
        )
    assert op.value.field == "operation_id"
    with pytest.raises(NotFound):
        notes.delete_channel(store, other, channel.id)
    with store.read() as conn:
        assert notes.list_rules(conn, account) == []


def test_deleting_a_channel_deletes_its_rules_and_deliveries(store: Store, account: int) -> None:
    channel_id = webhook(store, account, "https://hooks.example.com/x")
    enqueue(store, open_alert(store, account))
    notes.delete_channel(store, account, channel_id)
    assert deliveries(store) == []
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(notification_rules)).scalar_one() == 0
        assert notes.list_channels(conn, account) == []


def test_list_deliveries_filters_and_pages(store: Store, account: int) -> None:
    webhook(store, account, "https://hooks.example.com/x")
    first = open_alert(store, account, key="a")
    enqueue(store, first)
    enqueue(store, open_alert(store, account, key="b"))
    with store.read() as conn:
        page = notes.list_deliveries(conn, account, page=1, page_size=1)
        assert (page.total, len(page.items)) == (2, 1)
        (only,) = notes.list_deliveries(conn, account, alert_id=first.id).items
        assert (only.alert_id, only.status) == (first.id, "pending")
        assert notes.list_deliveries(conn, account, status="sent").total == 0
        with pytest.raises(InvalidInput) as bad:
            notes.list_deliveries(conn, account, status="lost")
        assert bad.value.field == "status"
