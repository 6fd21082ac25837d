"""Notifications: which alerts a rule sends, when a failed delivery is tried again, and what a message says.

Pure: the message is built from the alert alone (its summary, evidence, kind, ids and times) and the public URL
of runyard itself, never from an operation's configuration, a channel's target or the environment, so it cannot
carry a secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from runyard.domain.alerts import Alert, AlertEvent


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"  # POST JSON that Slack and Microsoft Teams incoming webhooks accept
    EMAIL = "email"  # a mail over SMTP to one or more addresses


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by a notifier, which holds it until next_attempt_at (its lease)
    SENT = "sent"  # the receiver took it
    FAILED = "failed"  # every attempt failed; last_error says why


# --- when to try again ----------------------------------------------------------------------------------------

# Multiples of the base delay between attempts: with a 30 s base, 30 s, 2 min, 10 min, 30 min, 2 h.
_STEPS = (1, 4, 20, 60, 240)


@dataclass(frozen=True)
class Backoff:
    """How long to wait after each failed attempt, and how many attempts there are in all."""

    base_seconds: float = 30.0
    max_attempts: int = 6

    def delay(self, attempts: int) -> timedelta | None:
        """The wait after `attempts` failed attempts, or None when that was the last one (the delivery fails)."""
        if attempts >= self.max_attempts:
            return None
        step = _STEPS[min(max(attempts, 1), len(_STEPS)) - 1]
        return timedelta(seconds=self.base_seconds * step)


# --- which alerts a rule sends --------------------------------------------------------------------------------


def rule_matches(kinds: Sequence[str] | None, operation_id: int | None, alert: Alert) -> bool:
    """A rule sends an alert when the alert's kind is among its kinds (None: every kind) and, if the rule names
    an operation, the alert is about that operation."""
    if kinds is not None and alert.kind.value not in kinds:
        return False
    return operation_id is None or operation_id == alert.operation_id


# --- what a message says --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One notification: `subject` is one line (the mail's subject, the card's title); `text` is markdown for
    webhooks; `body` is the plain-text mail."""

    subject: str
    text: str
    body: str
    link: str
    facts: dict[str, Any]


def alert_link(public_url: str | None, alert: Alert) -> str:
    """Where the alert is seen in runyard: its run, or the Alerts page. A path when no public URL is set."""
    path = f"/runs/{alert.run_id}" if alert.run_id is not None else "/alerts"
    return f"{public_url.rstrip('/')}{path}" if public_url else path


def build_message(alert: Alert, event: AlertEvent, public_url: str | None) -> Message:
    what = "Resolved" if event is AlertEvent.RESOLVED else alert.kind.label
    subject = _one_line(f"[runyard] {what}: {alert.summary}")
    link = alert_link(public_url, alert)
    lines = [
        f"{alert.kind.label}: {alert.summary}",
        *([alert.evidence] if alert.evidence else []),
        f"Configuration: {alert.configuration_id}",
        *([f"Run: {alert.run_id}"] if alert.run_id is not None else []),
        f"Opened: {_time(alert.opened_at)}",
        *([f"Resolved: {_time(alert.resolved_at)}"] if event is AlertEvent.RESOLVED and alert.resolved_at else []),
        *([f"Resolution: {alert.resolution}"] if event is AlertEvent.RESOLVED and alert.resolution else []),
    ]
    facts: dict[str, Any] = {
        "alert_id": alert.id,
        "event": event.value,
        "kind": alert.kind.value,
        "kind_label": alert.kind.label,
        "state": alert.state.value,
        "summary": alert.summary,
        "evidence": alert.evidence,
        "configuration_id": alert.configuration_id,
        "operation_id": alert.operation_id,
        "run_id": alert.run_id,
        "run_type": alert.run_type,
        "opened_at": _time(alert.opened_at),
        "updated_at": _time(alert.updated_at),
        "resolved_at": _time(alert.resolved_at) if alert.resolved_at else None,
        "resolution": alert.resolution,
        "link": link,
    }
    head = f"Resolved: {alert.summary}" if event is AlertEvent.RESOLVED else lines[0]
    text = "\n".join([head, *lines[1:], link])
    body = "\n".join([head, "", *lines[1:], "", f"Open in runyard: {link}", ""])
    return Message(subject=subject, text=text, body=body, link=link, facts=facts)


def webhook_payload(message: Message) -> dict[str, Any]:
    """JSON both incoming webhooks take: Slack shows `text`; Teams' connector card (MessageCard) shows `title`
    over `text`, with `summary` in the notification; `runyard` holds the alert for any other receiver."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.subject,
        "title": message.subject,
        "themeColor": "2E7D32" if message.facts.get("event") == AlertEvent.RESOLVED.value else "C62828",
        "text": message.text,
        "runyard": message.facts,
    }


def channel_test_message(channel_name: str, public_url: str | None, now: datetime) -> Message:
    """What `POST /notifications/channels/{id}/test` sends: no alert, only a line to see that the channel works."""
    link = f"{public_url.rstrip('/')}/alerts" if public_url else "/alerts"
    subject = _one_line(f"[runyard] Test notification for channel {channel_name}")
    text = f"This is a test notification from runyard, sent {_time(now)}.\n{link}"
    facts: dict[str, Any] = {"event": "test", "channel": channel_name, "sent_at": _time(now), "link": link}
    return Message(subject=subject, text=text, body=text + "\n", link=link, facts=facts)


def _time(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:199] + "…"


# --- channel targets ------------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"^[^@\s,<>\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL cannot be used, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    return None


def email_addresses(target: str) -> tuple[list[str], str | None]:
    """The addresses of a comma-separated list, and why it cannot be used (or None)."""
    addresses = [part.strip() for part in target.split(",") if part.strip()]
    if not addresses:
        return [], "must name at least one address"
    for address in addresses:
        if not _ADDRESS.match(address):
            return addresses, f"{address[:100]!r} is not an email address"
    return addresses, None


def mask_target(kind: ChannelKind, target: str) -> str:
    """What the API shows of a target: a webhook URL's scheme and host and its last four characters (the rest
    is the receiver's token); email addresses whole."""
    if kind is ChannelKind.EMAIL:
        return target
    parts = urlsplit(target)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}/…{target[-4:]}"
