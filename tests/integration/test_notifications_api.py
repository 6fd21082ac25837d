"""The notifications API over real HTTP: channels and rules (administrators only, your account only), the webhook URL
always masked, validation naming the field, the test send reaching real local receivers, and the deliveries list.

On SQLite: the services underneath are covered on both backends by test_notifications.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runyard.domain.alerts import Alert, AlertEvent, AlertKind, AlertState
from runyard.services import notifications
from runyard.services.accounts import account_id
from runyard.services.notify_send import NotificationSender, SmtpConfig
from runyard.store.tables import alerts
from tests.factories import sleep_task
from tests.integration.notify_receivers import SmtpReceiver, closed_port_url, smtp_receiver, webhook_receiver
from tests.integration.rest_harness import RestStack, rest_stack

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

TOKEN = "T0KENsecretB0Bxyz9876"
CHANNELS = "/api/v1/notifications/channels"
RULES = "/api/v1/notifications/rules"
DELIVERIES = "/api/v1/notifications/deliveries"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with smtp_receiver() as receiver:
        yield receiver


@pytest.fixture
def stack(tmp_path: Path, database_url: str, smtp: SmtpReceiver) -> Iterator[RestStack]:
    with rest_stack(
        tmp_path / "home",
        database_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_from="runyard@example.com",
        public_url="https://runyard.example.com",
        allowed_hosts=["public", "127.0.0.1"],  # the local receivers: webhooks honour RUNYARD_ALLOWED_HOSTS
    ) as running:
        yield running


def create_channel(client: httpx.Client, name: str, kind: str, target: str) -> dict[str, object]:
    response = client.post(CHANNELS, json={"name": name, "kind": kind, "target": target})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def assert_bad(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


def test_an_administrator_manages_channels_and_rules_and_the_url_stays_masked(
    stack: RestStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = stack.as_user("default", "administrator")
    url = f"https://hooks.example.com/services/{TOKEN}"
    hook = create_channel(admin, "team chat", "webhook", url)
    assert hook["target"] == "https://hooks.example.com/…9876"
    mail = create_channel(admin, "on call", "email", "ops@example.com,oncall@example.com")
    assert mail["target"] == "ops@example.com, oncall@example.com"

    listed = admin.get(CHANNELS)
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()] == ["on call", "team chat"]
    assert TOKEN not in listed.text

    operation_id = stack.deploy("orders", [sleep_task("a")])
    rule = admin.post(
        RULES,
        json={"channel_id": hook["id"], "kinds": ["failed", "overdue"], "operation_id": operation_id},
    )
    assert rule.status_code == 201, rule.text
    assert rule.json()["kinds"] == ["failed", "overdue"]
    assert rule.json()["configuration_id"] == "orders"
    assert rule.json()["notify_resolved"] is True
    every = admin.post(RULES, json={"channel_id": mail["id"], "notify_resolved": False})
    assert every.status_code == 201, every.text
    assert every.json()["kinds"] is None
    assert [r["id"] for r in admin.get(RULES).json()] == [rule.json()["id"], every.json()["id"]]

    assert admin.delete(f"{RULES}/{rule.json()['id']}").status_code == 204
    assert admin.delete(f"{RULES}/{rule.json()['id']}").status_code == 404
    assert admin.delete(f"{CHANNELS}/{mail['id']}").status_code == 204  # with its rule
    assert admin.get(RULES).json() == []
    assert [c["name"] for c in admin.get(CHANNELS).json()] == ["team chat"]
    assert TOKEN not in caplog.text


def test_only_administrators_manage_channels_and_rules(stack: RestStack) -> None:
    for role in ("operator", "viewer"):
        client = stack.as_user("default", role)
        assert client.get(CHANNELS).status_code == 403
        assert (
            client.post(
                CHANNELS, json={"name": "x", "kind": "webhook", "target": "https://h.example.com/1"}
            ).status_code
            == 403
        )
        assert client.get(RULES).status_code == 403
        assert client.get(DELIVERIES).status_code == 200
    assert httpx.get(f"{stack.base_url}{CHANNELS}").status_code == 401


def test_another_accounts_channel_is_not_found(stack: RestStack) -> None:
    hook = create_channel(stack.as_user("default", "administrator"), "mine", "webhook", "https://h.example.com/abcd")
    other = stack.as_user("other", "administrator")
    assert other.get(CHANNELS).json() == []
    assert other.delete(f"{CHANNELS}/{hook['id']}").status_code == 404
    assert other.post(f"{CHANNELS}/{hook['id']}/test").status_code == 404
    assert_bad(other.post(RULES, json={"channel_id": hook["id"]}), "channel_id")


def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    assert_bad(admin.post(CHANNELS, json={"name": "x", "kind": "webhook", "target": "ftp://h.example.com/x"}), "target")
    assert_bad(admin.post(CHANNELS, json={"name": "x", "kind": "webhook", "target": "not a url"}), "target")
    assert_bad(admin.post(CHANNELS, json={"name": "x", "kind": "email", "target": "ops@example.com, nobody"}), "target")
    assert_bad(admin.post(CHANNELS, json={"name": "x", "kind": "pager", "target": "123"}), "kind")
    assert_bad(admin.post(CHANNELS, json={"name": "", "kind": "webhook", "target": "https://h.example.com/1"}), "name")
    assert admin.get(CHANNELS).json() == []

    hook = create_channel(admin, "x", "webhook", "https://h.example.com/1")
    duplicate = admin.post(CHANNELS, json={"name": "x", "kind": "email", "target": "a@example.com"})
    assert duplicate.status_code == 409, duplicate.text
    assert_bad(admin.post(RULES, json={"channel_id": hook["id"], "kinds": ["failed", "gone"]}), "kinds")
    assert_bad(admin.post(RULES, json={"channel_id": hook["id"], "kinds": []}), "kinds")
    assert_bad(admin.post(RULES, json={"channel_id": hook["id"], "operation_id": 999_999}), "operation_id")
    assert admin.get(RULES).json() == []
    assert_bad(admin.get(DELIVERIES, params={"status": "lost"}), "status")


def test_the_test_send_reaches_the_local_receivers(stack: RestStack, smtp: SmtpReceiver) -> None:
    admin = stack.as_user("default", "administrator")
    with webhook_receiver(statuses=[200, 500]) as receiver:
        hook = create_channel(admin, "hook", "webhook", f"{receiver.base_url}/hooks/{TOKEN}")
        sent = admin.post(f"{CHANNELS}/{hook['id']}/test")
        assert sent.status_code == 200, sent.text
        assert sent.json() == {"delivered": True, "error": None}
        (posted,) = receiver.received
        assert posted.path == f"/hooks/{TOKEN}"
        assert "Test notification" in posted.body["title"]
        assert "https://runyard.example.com/alerts" in posted.body["text"]

        failing = admin.post(f"{CHANNELS}/{hook['id']}/test")
        assert failing.json() == {"delivered": False, "error": "webhook answered HTTP 500"}

    down = create_channel(admin, "down", "webhook", closed_port_url(f"/hooks/{TOKEN}"))
    refused = admin.post(f"{CHANNELS}/{down['id']}/test").json()
    assert refused["delivered"] is False
    assert TOKEN not in refused["error"]

    mail = create_channel(admin, "mail", "email", "ops@example.com")
    assert admin.post(f"{CHANNELS}/{mail['id']}/test").json() == {"delivered": True, "error": None}
    (received,) = smtp.mails
    assert received.recipients == ["ops@example.com"]
    assert "Test notification" in str(received.message["Subject"])


def test_deliveries_are_listed_with_their_attempts(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    hook = create_channel(admin, "hook", "webhook", closed_port_url(f"/{TOKEN}"))
    assert admin.post(RULES, json={"channel_id": hook["id"]}).status_code == 201
    operation_id = stack.deploy("orders", [sleep_task("a")])
    now = datetime.now(UTC)
    with stack.store.write() as conn:
        account = account_id(conn, "default")
        alert_id = conn.execute(
            alerts.insert()
            .values(
                account_id=account,
                operation_id=operation_id,
                kind="failed",
                key="k",
                summary="orders failed",
                evidence="",
                opened_at=now,
                updated_at=now,
            )
            .returning(alerts.c.id)
        ).scalar_one()
        alert = Alert(
            int(alert_id), account, operation_id, "orders", None, None, AlertKind.FAILED, AlertState.OPEN,
            "orders failed", "", now, now, None, None, None,
        )  # fmt: skip
        assert notifications.enqueue(conn, alert, AlertEvent.OPENED, now) == 1
    sender = NotificationSender(SmtpConfig(host=None))
    try:
        assert notifications.deliver_due(stack.store, sender, now).retrying == 1
    finally:
        sender.close()

    viewer = stack.as_user("default", "viewer")
    page = viewer.get(DELIVERIES, params={"alert_id": alert_id})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert (item["channel_name"], item["event"], item["status"], item["attempts"]) == ("hook", "opened", "pending", 1)
    assert item["last_error"] == "webhook unreachable (ConnectError)"
    assert TOKEN not in page.text
    assert viewer.get(DELIVERIES, params={"status": "sent"}).json()["total"] == 0
    assert stack.as_user("other", "viewer").get(DELIVERIES).json()["total"] == 0
    with stack.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 1
