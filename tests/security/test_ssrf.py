"""SSRF (RELIABILITY.md S13): source URLs, CDC connection strings and notification webhooks, refused before any
connection unless RUNYARD_ALLOWED_HOSTS allows them.

Every connection this process attempts is seen by an audit hook (`socket.connect`); a "trap" socket listens on
a loopback port that every loopback form of the corpus names. After each attack the hook saw no connection to the
trap or to a forbidden address, and the trap accepted nothing.
"""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic
import pytest

from runyard.domain.notifications import ChannelKind, Message
from runyard.domain.statuses import RunStatus
from runyard.operations.api_to_table.http import SourceClient, SourceError
from runyard.operations.api_to_table.spec import ApiToTableSpec
from runyard.operations.postgres_cdc.source import SourceError as CdcSourceError
from runyard.operations.postgres_cdc.source import source_from
from runyard.services.notifications import SendFailed
from runyard.services.notify_send import NotificationSender
from runyard.settings import Settings
from tests.integration.api_harness import api_harness
from tests.integration.notify_receivers import webhook_receiver
from tests.integration.rest_harness import RestStack, database, rest_stack
from tests.live_server import serving_handler

FORBIDDEN_IPS = {
    "169.254.169.254", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "::1", "fd00::1",
    "fe80::1", "::ffff:127.0.0.1", "::ffff:7f00:1",
}  # fmt: skip

_connects: list[tuple[str, int]] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _watching.is_set():
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2:
            _connects.append((str(address[0]), int(address[1])))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only while `_watching` is set


@pytest.fixture(scope="module")
def trap() -> Iterator[socket.socket]:
    """A loopback listener that no attack may reach."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


@contextmanager
def no_connection(trap: socket.socket) -> Iterator[None]:
    """Asserts that nothing inside the block connected to the trap or to a forbidden address."""
    port = trap.getsockname()[1]
    _connects.clear()
    _watching.set()
    try:
        yield
    finally:
        _watching.clear()
    reached = [(host, p) for host, p in _connects if p == port or host in FORBIDDEN_IPS]
    assert reached == [], f"connections attempted: {reached}"
    with pytest.raises(BlockingIOError):
        trap.accept()[0].close()


def corpus(port: int) -> list[str]:
    return [
        f"http://localhost:{port}/",
        f"http://localhost.:{port}/",
        f"http://127.0.0.1:{port}/",
        f"http://127.0.0.2:{port}/",
        f"http://[::1]:{port}/",
        f"http://0.0.0.0:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        f"http://2130706433:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        f"http://user:pw@127.0.0.1:{port}/",
        f"https://127.0.0.1:{port}/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET",
        f"ftp://127.0.0.1:{port}/",
    ]


# --- api-to-table sources -----------------------------------------------------------------------------------------


def source_client(base_url: str, allowed: list[str]) -> SourceClient:
    spec = ApiToTableSpec.model_validate(
        {"base_url": base_url, "timeout_seconds": 5, "endpoints": [{"name": "items", "path": "/items"}]}
    )
    return SourceClient(spec, environ={}, allowed_hosts=allowed, backoff_seconds=0)


def test_every_source_url_of_the_corpus_is_refused_before_connecting(trap: socket.socket) -> None:
    for url in corpus(trap.getsockname()[1]):
        with no_connection(trap):
            if not url.startswith("http"):  # file://, gopher://, ftp:// never make a spec
                with pytest.raises(pydantic.ValidationError, match="base_url"):
                    source_client(url, ["public"])
                continue
            client = source_client(url, ["public"])
            with client, pytest.raises(SourceError, match="is not allowed") as error:
                client.get("/items")
            assert "RUNYARD_ALLOWED_HOSTS" in str(error.value), url


@contextmanager
def redirecting_source(location: str) -> Iterator[str]:
    """An allowed loopback source whose every answer is a redirect to `location`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving_handler(Handler) as url:
        yield url


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/", "http://localhost:{port}/", "http://[::1]:{port}/"]
)
def test_a_redirect_from_an_allowed_source_to_a_disallowed_host_is_refused(trap: socket.socket, target: str) -> None:
    port = trap.getsockname()[1]
    with redirecting_source(target.format(port=port)) as base_url:
        client = source_client(base_url, ["127.0.0.1"])
        with no_connection(trap), client, pytest.raises(SourceError, match="redirect to another host"):
            client.get("/items")


# --- postgres-cdc sources -----------------------------------------------------------------------------------------


def cdc_corpus(port: int) -> list[str]:
    return [
        "postgresql://u:s3cret@169.254.169.254/db",
        "postgresql://u:s3cret@localhost/db",
        f"postgresql://u:s3cret@127.0.0.1:{port}/db",
        f"postgresql://u:s3cret@[::1]:{port}/db",
        "postgresql://u:s3cret@10.0.0.1/db",
        "postgresql://u:s3cret@192.168.1.1/db",
        "postgresql://u:s3cret@0.0.0.0/db",
        "postgresql://u:s3cret@2130706433/db",
        "postgresql://u:s3cret@0x7f000001/db",
        "postgresql://u:s3cret@0177.0.0.1/db",
        f"postgresql://u:s3cret@[::ffff:127.0.0.1]:{port}/db",
        "postgresql://u:s3cret@db.example.com/db?host=127.0.0.1",  # the query's host wins
        "postgresql://u:s3cret@db.example.com/db?hostaddr=169.254.169.254",  # hostaddr skips the name
        "postgresql://u:s3cret@8.8.8.8,127.0.0.1/db",  # one bad host of several
        "postgresql://u:s3cret@/db?host=/var/run/postgresql",  # a Unix socket
        "postgresql:///db",  # no host: the default Unix socket
    ]


def test_every_cdc_url_of_the_corpus_is_refused_before_connecting(trap: socket.socket) -> None:
    for url in cdc_corpus(trap.getsockname()[1]):
        with no_connection(trap), pytest.raises(CdcSourceError) as refused:
            source_from("CDC_URL", {"CDC_URL": url}, allowed_hosts=["public"])
        message = str(refused.value)
        assert "CDC_URL" in message, url
        assert "is refused" in message or "cannot connect" in message, (url, message)
        assert "s3cret" not in message


def test_a_cdc_host_allowed_by_the_setting_passes() -> None:
    source = source_from("CDC_URL", {"CDC_URL": "postgresql://u:p@127.0.0.1:5432/db"}, allowed_hosts=["127.0.0.1"])
    assert source.url_env == "CDC_URL"


def test_a_cdc_run_against_the_metadata_address_fails_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trap: socket.socket
) -> None:
    from tests.integration.test_postgres_cdc import launch, operation

    monkeypatch.setenv("CDC_SSRF_URL", "postgresql://cdc:s3cret-pw@169.254.169.254:5432/shop")
    with api_harness(tmp_path) as harness, no_connection(trap):
        run = harness.wait(launch(harness, harness.deploy_text(operation(url_env="CDC_SSRF_URL"))).id)
        assert run.status is RunStatus.FAILED
        (error,) = [m.text for m in harness.task(run.id, "Initial Snapshot").messages if m.level == "error"]
        assert "the CDC source (CDC_SSRF_URL) is refused: host '169.254.169.254' is not allowed" in error
        assert "s3cret-pw" not in error


# --- notification webhooks ----------------------------------------------------------------------------------------

MESSAGE = Message(subject="probe", text="probe", body="probe", link="/alerts", facts={})


def test_every_webhook_url_of_the_corpus_is_refused_before_connecting(tmp_path: Path, trap: socket.socket) -> None:
    sender = NotificationSender.from_settings(Settings(home=tmp_path))  # RUNYARD_ALLOWED_HOSTS: public
    try:
        for url in corpus(trap.getsockname()[1]):
            with no_connection(trap), pytest.raises(SendFailed, match="webhook refused") as refused:
                sender(ChannelKind.WEBHOOK, url, MESSAGE)
            assert "RUNYARD_ALLOWED_HOSTS" in str(refused.value), url
    finally:
        sender.close()


def test_a_webhook_on_a_host_the_setting_allows_is_sent_and_the_hook_sees_it(tmp_path: Path) -> None:
    sender = NotificationSender.from_settings(Settings(home=tmp_path, allowed_hosts="public,127.0.0.1"))
    try:
        with webhook_receiver() as receiver:
            _connects.clear()
            _watching.set()
            try:
                sender(ChannelKind.WEBHOOK, f"{receiver.base_url}/hooks/abc", MESSAGE)
            finally:
                _watching.clear()
            assert len(receiver.received) == 1
            assert ("127.0.0.1", int(receiver.base_url.rsplit(":", 1)[1])) in _connects  # the hook does see
    finally:
        sender.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    directory = tmp_path_factory.mktemp("ssrf")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url) as running:
        yield running


@pytest.mark.parametrize("index", range(0, 25, 4))
def test_the_test_send_endpoint_cannot_probe_internal_hosts(stack: RestStack, trap: socket.socket, index: int) -> None:
    """An administrator's test send is the probe an SSRF would use: it answers the refusal, and connects nowhere."""
    admin = stack.as_user("default", "administrator")
    url = corpus(trap.getsockname()[1])[index]
    created = admin.post(
        "/api/v1/notifications/channels", json={"name": f"probe-{index}", "kind": "webhook", "target": url}
    )
    if created.status_code == 400:  # not an http(s) URL: refused when saved
        return
    assert created.status_code == 201, created.text
    with no_connection(trap):
        sent = admin.post(f"/api/v1/notifications/channels/{created.json()['id']}/test")
    assert sent.status_code == 200, sent.text
    assert sent.json()["delivered"] is False
    assert sent.json()["error"].startswith("webhook refused: host "), sent.json()
    assert "/hooks" not in sent.json()["error"]


def test_httpx_is_never_asked_for_a_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would take the request past the guard: webhooks ignore it (trust_env off)."""
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    monkeypatch.setenv("ALL_PROXY", "http://169.254.169.254:3128")
    sender = NotificationSender.from_settings(Settings(home=tmp_path, allowed_hosts="127.0.0.1"))
    try:
        with webhook_receiver() as receiver:
            sender(ChannelKind.WEBHOOK, f"{receiver.base_url}/hooks/abc", MESSAGE)
            assert len(receiver.received) == 1
    finally:
        sender.close()
