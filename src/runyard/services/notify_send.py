"""The senders: a webhook POST over HTTP(S), an email over SMTP. Every failure becomes a `SendFailed` whose words
name what went wrong (a status, a timeout, an SMTP reply) and never the webhook URL or a credential."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from runyard.domain.notifications import ChannelKind, Message, email_addresses, webhook_payload
from runyard.operations.api_to_table.http import HostNotAllowed, HostPolicy, guarded_transport
from runyard.services.notifications import SendFailed
from runyard.settings import Settings

WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

_posting = threading.local()


class _HideWebhookRequests(logging.Filter):
    """httpx logs each request's whole URL at INFO, and a webhook URL carries the receiver's token: the lines it
    logs while this thread posts a webhook are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_posting, "active", False)


_HIDE = _HideWebhookRequests()


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None
    port: int = 25
    sender: str = "runyard@localhost"
    user: str | None = None
    password: str | None = None
    tls: str = "none"  # none | starttls | ssl
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            user=settings.smtp_user,
            password=password,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
        )

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"SmtpConfig(host={self.host!r}, port={self.port}, tls={self.tls!r})"


class NotificationSender:
    """A `Sender` (see services.notifications): `sender(kind, target, message)`. Safe to share between threads.

    With `allowed_hosts` (RUNYARD_ALLOWED_HOSTS, as `from_settings` passes it) a webhook may only reach the hosts
    sources may: otherwise whoever may edit a channel could probe internal hosts through the test send (SSRF).
    """

    def __init__(
        self, smtp: SmtpConfig, client: httpx.Client | None = None, *, allowed_hosts: Iterable[str] | None = None
    ) -> None:
        self._smtp = smtp
        self._owns_client = client is None
        self._policy = HostPolicy(allowed_hosts) if allowed_hosts is not None else None
        transport = guarded_transport(self._policy) if self._policy is not None and client is None else None
        self._client = client or httpx.Client(timeout=WEBHOOK_TIMEOUT, follow_redirects=False, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings) -> NotificationSender:
        return cls(SmtpConfig.from_settings(settings), allowed_hosts=settings.allowed_hosts)

    def __call__(self, kind: ChannelKind, target: str, message: Message) -> None:
        if kind is ChannelKind.WEBHOOK:
            try:
                if self._policy is not None:
                    self._policy.check_url(target)
                post_webhook(self._client, target, message)
            except HostNotAllowed as error:  # its words name the host and the reason, never the URL's path
                raise SendFailed(f"webhook refused: {error}") from None
        else:
            send_email(self._smtp, target, message)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def post_webhook(client: httpx.Client, url: str, message: Message) -> None:
    # httpx's exceptions carry the request and often the URL in their text: only their class is kept.
    logging.getLogger("httpx").addFilter(_HIDE)  # a logger holds a filter once, however often it is added
    _posting.active = True
    try:
        response = client.post(url, json=webhook_payload(message))
    except httpx.TimeoutException as error:
        raise SendFailed(f"webhook timed out ({type(error).__name__})") from None
    except httpx.HTTPError as error:
        raise SendFailed(f"webhook unreachable ({type(error).__name__})") from None
    finally:
        _posting.active = False
    if not response.is_success:
        raise SendFailed(f"webhook answered HTTP {response.status_code}")


def send_email(smtp: SmtpConfig, target: str, message: Message) -> None:
    if not smtp.host:
        raise SendFailed("email cannot be sent: no SMTP server is configured (set RUNYARD_SMTP_HOST)")
    recipients, problem = email_addresses(target)
    if problem:
        raise SendFailed(f"email cannot be sent: {problem}")
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="runyard")
    mail.set_content(message.body)
    try:
        with _connect(smtp) as server:
            if smtp.user and smtp.password is not None:
                server.login(smtp.user, smtp.password)
            server.send_message(mail, from_addr=smtp.sender, to_addrs=recipients)
    except smtplib.SMTPResponseException as error:
        raise SendFailed(f"SMTP server answered {error.smtp_code}: {_reply(error.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused:
        raise SendFailed("SMTP server refused every recipient") from None
    except (smtplib.SMTPException, OSError) as error:
        raise SendFailed(f"SMTP server unreachable ({type(error).__name__})") from None


def _connect(smtp: SmtpConfig) -> smtplib.SMTP:
    assert smtp.host is not None
    if smtp.tls == "ssl":
        return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context())
    server = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    if smtp.tls == "starttls":
        try:
            server.starttls(context=ssl.create_default_context())
        except BaseException:
            server.close()
            raise
    return server


def _reply(text: bytes | str) -> str:
    line = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return " ".join(line.split())[:200]
