"""The pure rules of notifications: backoff, which alerts a rule sends, what a message says (and never says)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from runyard.domain.alerts import Alert, AlertEvent, AlertKind, AlertState
from runyard.domain.notifications import (
    Backoff,
    ChannelKind,
    alert_link,
    build_message,
    channel_test_message,
    email_addresses,
    mask_target,
    rule_matches,
    webhook_payload,
    webhook_url_problem,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_alert(**changes: object) -> Alert:
    alert = Alert(
        id=11,
        account_id=1,
        operation_id=5,
        configuration_id="orders_PROD",
        run_id=42,
        run_type="incremental",
        kind=AlertKind.RUNNING_LONG,
        state=AlertState.OPEN,
        summary="orders_PROD: run 42 running long",
        evidence="ran 42 min; its last 20 incremental runs took 6-9 min",
        opened_at=T0,
        updated_at=T0,
        resolved_at=None,
        resolution=None,
        silenced_until=None,
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


# --- backoff ------------------------------------------------------------------------------------------------------


def test_the_default_backoff_waits_30_s_2_min_10_min_30_min_2_h_then_gives_up() -> None:
    backoff = Backoff()
    waits = [backoff.delay(n) for n in range(1, 7)]
    assert waits == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
        timedelta(minutes=30),
        timedelta(hours=2),
        None,
    ]


def test_the_backoff_base_scales_every_wait_and_the_longest_repeats() -> None:
    backoff = Backoff(base_seconds=0.5, max_attempts=8)
    assert backoff.delay(1) == timedelta(seconds=0.5)
    assert backoff.delay(2) == timedelta(seconds=2)
    assert backoff.delay(6) == backoff.delay(7) == timedelta(seconds=120)
    assert backoff.delay(8) is None


def test_one_attempt_only_means_no_retry() -> None:
    assert Backoff(max_attempts=1).delay(1) is None


# --- rules --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "operation_id", "matches"),
    [
        (None, None, True),
        (["running_long"], None, True),
        (["failed", "running_long"], 5, True),
        (["failed"], None, False),
        (None, 6, False),
        (["running_long"], 6, False),
        ([], None, False),
    ],
)
def test_rule_matches(kinds: list[str] | None, operation_id: int | None, matches: bool) -> None:
    assert rule_matches(kinds, operation_id, make_alert()) is matches


# --- messages -----------------------------------------------------------------------------------------------------


def test_the_message_carries_the_alert_and_a_link() -> None:
    message = build_message(make_alert(), AlertEvent.OPENED, "https://runyard.example.com/")
    assert message.link == "https://runyard.example.com/runs/42"
    assert message.subject == "[runyard] Running long: orders_PROD: run 42 running long"
    for text in (message.text, message.body):
        assert "orders_PROD: run 42 running long" in text
        assert "ran 42 min; its last 20 incremental runs took 6-9 min" in text
        assert "https://runyard.example.com/runs/42" in text
        assert "2026-03-01T12:00:00+00:00" in text


def test_a_link_without_a_public_url_is_a_path_and_without_a_run_the_alerts_page() -> None:
    assert alert_link(None, make_alert()) == "/runs/42"
    assert alert_link("http://h:8000", make_alert(run_id=None)) == "http://h:8000/alerts"


def test_a_resolution_says_so() -> None:
    alert = make_alert(state=AlertState.RESOLVED, resolved_at=T0 + timedelta(hours=1), resolution="run 42 ended")
    message = build_message(alert, AlertEvent.RESOLVED, None)
    assert message.subject.startswith("[runyard] Resolved: ")
    assert "Resolution: run 42 ended" in message.body
    assert webhook_payload(message)["runyard"]["event"] == "resolved"


def test_the_webhook_json_suits_slack_and_teams_and_holds_the_alert() -> None:
    payload = webhook_payload(build_message(make_alert(), AlertEvent.OPENED, None))
    assert isinstance(payload["text"], str)  # Slack shows `text`
    assert "orders_PROD: run 42 running long" in payload["text"]
    assert payload["@type"] == "MessageCard"  # Teams' connector card: summary, title, text
    assert payload["summary"] == payload["title"] == "[runyard] Running long: orders_PROD: run 42 running long"
    facts = payload["runyard"]
    assert facts["kind"] == "running_long"
    assert facts["state"] == "open"
    assert facts["event"] == "opened"
    assert (facts["alert_id"], facts["run_id"], facts["configuration_id"]) == (11, 42, "orders_PROD")
    json.dumps(payload)  # plain JSON


def test_a_message_is_one_line_in_its_subject() -> None:
    message = build_message(make_alert(summary="a\nb\r\nc" + "x" * 400), AlertEvent.OPENED, None)
    assert "\n" not in message.subject
    assert len(message.subject) <= 200


def test_a_message_is_built_from_the_alert_only() -> None:
    """Nothing but the alert and the public URL goes in: the function has no other input to leak from. A secret
    that reached an alert's text would show, so alerts must not carry one; this checks the fields it uses."""
    message = build_message(make_alert(), AlertEvent.OPENED, "https://runyard.example.com")
    payload = json.dumps(webhook_payload(message))
    assert set(message.facts) == {
        "alert_id",
        "event",
        "kind",
        "kind_label",
        "state",
        "summary",
        "evidence",
        "configuration_id",
        "operation_id",
        "run_id",
        "run_type",
        "opened_at",
        "updated_at",
        "resolved_at",
        "resolution",
        "link",
    }
    for word in ("password", "token", "secret", "Authorization"):
        assert word not in payload
        assert word not in message.body


def test_the_test_message_names_the_channel_only() -> None:
    message = channel_test_message("ops", None, T0)
    assert "ops" in message.subject
    assert message.link == "/alerts"


# --- targets ------------------------------------------------------------------------------------------------------


def test_a_webhook_url_is_masked_to_its_host_and_last_four_characters() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXsecretYYYYabcd"
    assert mask_target(ChannelKind.WEBHOOK, url) == "https://hooks.slack.com/…abcd"
    assert "secret" not in mask_target(ChannelKind.WEBHOOK, "https://user:secret@h.example.com/x1234")
    assert mask_target(ChannelKind.EMAIL, "a@example.com") == "a@example.com"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.slack.com/services/T/B/x", True),
        ("http://127.0.0.1:8080/hook", True),
        ("ftp://example.com/x", False),
        ("hooks.slack.com/services", False),
        ("https:///nohost", False),
        ("https://exa mple.com/", False),
    ],
)
def test_webhook_urls(url: str, ok: bool) -> None:
    assert (webhook_url_problem(url) is None) is ok


def test_email_addresses() -> None:
    assert email_addresses(" a@example.com, b.c@mail.example.org ,") == (
        ["a@example.com", "b.c@mail.example.org"],
        None,
    )
    assert email_addresses("")[1] == "must name at least one address"
    assert email_addresses("a@example.com, nope")[1] == "'nope' is not an email address"
    assert email_addresses("a@localhost")[1] is not None
