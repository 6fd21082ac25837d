"""SourceClient against scripted sources (httpx.MockTransport is the injected network seam)."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from runyard.errors import ConfigError
from runyard.operations.api_to_table.http import HostNotAllowed, SourceClient, SourceError, TransientSourceError
from runyard.operations.api_to_table.spec import ApiToTableSpec

BASE = "https://api.example.com/v1"
TOKEN = "s3cr3t-token-value"
KEY = "k3y-value-42"
PASSWORD = "pa55-word-value"
ENV = {"API_TOKEN": TOKEN, "API_KEY": KEY, "API_PASSWORD": PASSWORD, "API_USER": "svc-user"}
SECRETS = (TOKEN, KEY, PASSWORD)

Handler = Callable[[httpx.Request], httpx.Response]


def make_spec(**overrides: Any) -> ApiToTableSpec:
    data: dict[str, Any] = {"base_url": BASE, "endpoints": [{"name": "employees", "path": "/employees"}]}
    data.update(overrides)
    return ApiToTableSpec.model_validate(data)


class Recorder:
    """A scripted source: answers from a list (the last one repeats) and records every request."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers) or [httpx.Response(200, json={"data": []})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else _copy(answer)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _copy(response: httpx.Response) -> httpx.Response:
    return httpx.Response(response.status_code, headers=response.headers, content=response.content)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client_for(sleeps: list[float]) -> Iterator[Callable[..., SourceClient]]:
    made: list[SourceClient] = []

    def make(recorder: Recorder, spec: ApiToTableSpec | None = None, **kwargs: Any) -> SourceClient:
        options: dict[str, Any] = {
            "environ": ENV,
            "allowed_hosts": ["api.example.com"],
            "transport": recorder.transport,
            "sleep": sleeps.append,
        }
        options.update(kwargs)
        client = SourceClient(spec or make_spec(), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- basics and auth ------------------------------------------------------------------------------


def test_get_path_joins_base_url_and_returns_a_page(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, json={"data": [1, 2]}, headers={"Link": '<x>; rel="next"'}))
    page = client_for(recorder, make_spec(headers={"X-Team": "hr"})).get("/employees", {"limit": "2"})
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/employees?limit=2"
    assert request.headers["X-Team"] == "hr"
    assert page.body == {"data": [1, 2]}
    assert page.status == 200
    assert page.attempts == 1
    assert page.size_bytes == len(orjson.dumps({"data": [1, 2]}))
    assert page.latency_ms >= 0
    assert page.headers["link"] == '<x>; rel="next"'


def test_absolute_url_is_used_as_is(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    client_for(recorder).get("https://api.example.com/v1/employees?cursor=abc")
    assert str(recorder.requests[0].url) == "https://api.example.com/v1/employees?cursor=abc"


def test_bearer_auth(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    page = client_for(recorder, make_spec(auth={"type": "bearer", "token_env": "API_TOKEN"})).get("/employees")
    assert recorder.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert_no_secret(page.url)


def test_api_key_in_header(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    spec = make_spec(auth={"type": "api_key", "name": "X-Api-Key", "in": "header", "value_env": "API_KEY"})
    client_for(recorder, spec).get("/employees")
    assert recorder.requests[0].headers["X-Api-Key"] == KEY


def test_api_key_in_query_is_sent_but_masked_in_page_url(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    spec = make_spec(auth={"type": "api_key", "name": "api_key", "in": "query", "value_env": "API_KEY"})
    page = client_for(recorder, spec).get("/employees", {"limit": "5"})
    assert recorder.requests[0].url.params["api_key"] == KEY
    assert page.url == f"{BASE}/employees?limit=5&api_key=***"
    assert_no_secret(page.url)


def test_api_key_in_query_on_absolute_url_is_replaced_not_duplicated(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    spec = make_spec(auth={"type": "api_key", "name": "api_key", "in": "query", "value_env": "API_KEY"})
    page = client_for(recorder, spec).get(f"{BASE}/employees?cursor=c2&api_key={KEY}")
    assert recorder.requests[0].url.params.get_list("api_key") == [KEY]
    assert_no_secret(page.url)


@pytest.mark.parametrize(
    ("auth", "user"),
    [
        ({"type": "basic", "username": "alice", "password_env": "API_PASSWORD"}, "alice"),
        ({"type": "basic", "username_env": "API_USER", "password_env": "API_PASSWORD"}, "svc-user"),
    ],
)
def test_basic_auth(client_for: Callable[..., SourceClient], auth: dict[str, str], user: str) -> None:
    recorder = Recorder()
    client_for(recorder, make_spec(auth=auth)).get("/employees")
    expected = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    assert recorder.requests[0].headers["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token_env": "MISSING_TOKEN"},
        {"type": "api_key", "name": "k", "in": "query", "value_env": "MISSING_TOKEN"},
        {"type": "basic", "username": "u", "password_env": "MISSING_TOKEN"},
    ],
)
def test_missing_secret_is_a_config_error_naming_the_variable(auth: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="MISSING_TOKEN") as info:
        SourceClient(make_spec(auth=auth), environ=ENV, allowed_hosts=["api.example.com"])
    assert_no_secret(str(info.value))


def test_rate_limit_spaces_requests(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    client = client_for(Recorder(), make_spec(rate_limit={"requests_per_second": 2}))
    for _ in range(3):
        client.get("/employees")
    assert len(sleeps) == 2
    assert all(0.3 < delay <= 0.5 for delay in sleeps)


# --- retries --------------------------------------------------------------------------------------


def test_500_is_retried_then_succeeds(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    messages: list[str] = []
    recorder = Recorder(httpx.Response(500), httpx.Response(502), httpx.Response(200, json=[1]))
    client = client_for(recorder, backoff_seconds=0.5, on_retry=messages.append)
    page = client.get("/employees", {"cursor": "c1"})
    assert page.body == [1]
    assert page.attempts == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.625
    assert 1.0 <= sleeps[1] <= 1.25
    assert messages[0].startswith("GET /v1/employees?cursor=c1 answered 500; retry 1 of 5 in 0.")
    assert messages[1].startswith("GET /v1/employees?cursor=c1 answered 502; retry 2 of 5 in 1.")


def test_backoff_is_capped(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(503))
    client = client_for(recorder, make_spec(max_retries=8), backoff_seconds=1, max_backoff_seconds=5)
    with pytest.raises(TransientSourceError):
        client.get("/employees")
    assert max(sleeps) <= 5
    assert sleeps[-1] == 5


def test_429_honours_retry_after_seconds(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={}))
    assert client_for(recorder).get("/employees").attempts == 2
    assert sleeps == [7.0]


def test_retry_after_is_capped(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200, json={}))
    client_for(recorder, max_retry_after_seconds=60).get("/employees")
    assert sleeps == [60.0]


def test_retry_after_http_date(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200, json={}))
    client_for(recorder).get("/employees")
    assert 25 <= sleeps[0] <= 30


def test_retries_exhausted_is_transient(client_for: Callable[..., SourceClient], sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(500))
    with pytest.raises(TransientSourceError, match=r"answered 500; gave up after 3 attempt") as info:
        client_for(recorder, make_spec(max_retries=2), backoff_seconds=0).get("/employees")
    assert len(recorder.requests) == 3
    assert sleeps == [0, 0]
    assert isinstance(info.value, SourceError)
    assert info.value.url == f"{BASE}/employees"


def test_zero_retries_means_one_attempt(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(429))
    with pytest.raises(TransientSourceError):
        client_for(recorder, make_spec(max_retries=0)).get("/employees")
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_is_terminal_and_not_retried(client_for: Callable[..., SourceClient], status: int) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "nope"}))
    spec = make_spec(auth={"type": "bearer", "token_env": "API_TOKEN"})
    with pytest.raises(SourceError, match=rf"answered {status}") as info:
        client_for(recorder, spec).get("/employees")
    assert type(info.value) is SourceError
    assert info.value.status == status
    assert len(recorder.requests) == 1
    assert "nope" in str(info.value)


def test_error_body_echoing_the_secret_is_scrubbed(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(401, text=f"bad token {TOKEN}"))
    spec = make_spec(auth={"type": "bearer", "token_env": "API_TOKEN"})
    with pytest.raises(SourceError) as info:
        client_for(recorder, spec).get("/employees")
    assert_no_secret(str(info.value))
    assert "check the operation's auth settings" in str(info.value)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("eof")],
)
def test_network_errors_are_retried(
    client_for: Callable[..., SourceClient], sleeps: list[float], error: httpx.HTTPError
) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise error
        return httpx.Response(200, json={"ok": True})

    messages: list[str] = []
    page = client_for(Recorder(flaky), on_retry=messages.append).get("/employees")
    assert page.body == {"ok": True}
    assert page.attempts == 3
    assert len(messages) == 2


def test_timeouts_exhausted_are_transient(client_for: Callable[..., SourceClient]) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(TransientSourceError, match="timed out after 30 s"):
        client_for(Recorder(hang), make_spec(max_retries=1)).get("/employees")


def test_api_key_never_in_retry_messages_or_transient_errors(client_for: Callable[..., SourceClient]) -> None:
    messages: list[str] = []
    spec = make_spec(max_retries=2, auth={"type": "api_key", "name": "api_key", "in": "query", "value_env": "API_KEY"})
    with pytest.raises(TransientSourceError) as info:
        client_for(Recorder(httpx.Response(500)), spec, on_retry=messages.append).get("/employees")
    assert "api_key=***" in messages[0]
    for text in [*messages, str(info.value)]:
        assert_no_secret(text)


# --- bodies ---------------------------------------------------------------------------------------


def test_html_content_type_is_refused(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, html="<html><body>Maintenance</body></html>"))
    with pytest.raises(SourceError, match="the source answered HTML, not JSON") as info:
        client_for(recorder).get("/employees")
    assert f"{BASE}/employees" in str(info.value)
    assert len(recorder.requests) == 1


def test_html_body_without_content_type_is_refused(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, content=b"  <!DOCTYPE html><p>oops</p>"))
    with pytest.raises(SourceError, match="HTML, not JSON"):
        client_for(recorder).get("/employees")


def test_malformed_json_names_url_and_position(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, content=b'{"data": [1, 2', headers={"content-type": "application/json"}))
    with pytest.raises(SourceError, match=r"malformed JSON for GET https://api\.example\.com/v1/employees") as info:
        client_for(recorder).get("/employees")
    assert "line 1 column" in str(info.value)
    assert type(info.value) is SourceError


def test_deeply_nested_json_is_refused(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, content=b"[" * 10_000 + b"]" * 10_000))
    with pytest.raises(SourceError, match="malformed JSON"):
        client_for(recorder).get("/employees")


def test_response_size_cap_by_content_length(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(200, content=b"[" + b"1," * 1000 + b"1]"))
    with pytest.raises(SourceError, match="larger than the 1 KiB cap"):
        client_for(recorder, max_response_bytes=1024).get("/employees")


def test_response_size_cap_while_streaming(client_for: Callable[..., SourceClient]) -> None:
    def stream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"[" + b"1," * 400] * 10 + [b"1]"]))  # no Content-Length

    with pytest.raises(SourceError, match="max_response_bytes"):
        client_for(Recorder(stream), max_response_bytes=2048).get("/employees")


def test_gzip_bomb_is_capped_after_decompression(client_for: Callable[..., SourceClient]) -> None:
    inflated = b"[" + b"0," * 500_000 + b"0]"
    bomb = gzip.compress(inflated)
    recorder = Recorder(lambda request: httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"}))
    assert len(bomb) < 64 * 1024
    with pytest.raises(SourceError, match="larger than"):
        client_for(recorder, max_response_bytes=64 * 1024).get("/employees")


def test_undecodable_body_is_a_source_error(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(
        lambda request: httpx.Response(200, content=iter([b"not gzip"]), headers={"content-encoding": "gzip"})
    )
    with pytest.raises(SourceError, match="cannot be decompressed"):
        client_for(recorder).get("/employees")


# --- redirects ------------------------------------------------------------------------------------


def test_same_host_redirect_is_followed(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(
        httpx.Response(301, headers={"Location": "/v2/employees"}), httpx.Response(200, json={"moved": True})
    )
    spec = make_spec(auth={"type": "bearer", "token_env": "API_TOKEN"})
    page = client_for(recorder, spec).get("/employees")
    assert page.body == {"moved": True}
    assert page.url == "https://api.example.com/v2/employees"
    assert recorder.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "location",
    ["https://evil.example.net/steal", "http://127.0.0.1:9000/_admin", "https://api.example.com:8443/v1/x"],
)
def test_redirect_to_another_host_is_refused(client_for: Callable[..., SourceClient], location: str) -> None:
    recorder = Recorder(httpx.Response(302, headers={"Location": location}))
    with pytest.raises(SourceError, match=r"redirect to another host \(.*\) refused"):
        client_for(recorder, allowed_hosts=["api.example.com", "evil.example.net", "127.0.0.1"]).get("/employees")
    assert len(recorder.requests) == 1


def test_redirect_loop_is_bounded(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder(httpx.Response(302, headers={"Location": "/v1/employees"}))
    with pytest.raises(SourceError, match="redirected more than 5 times"):
        client_for(recorder).get("/employees")
    assert len(recorder.requests) == 6


# --- SSRF guard -----------------------------------------------------------------------------------

RESOLVED = {"localhost": ["127.0.0.1", "::1"], "internal.corp": ["10.1.2.3"], "api.example.com": ["93.184.216.34"]}


def stub_resolver(host: str) -> list[str]:
    return RESOLVED.get(host, ["93.184.216.34"])


SSRF_CORPUS = [
    "http://localhost/",
    "http://LOCALHOST./",
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/_admin/faults",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://api.example.com/x",
    "http://internal.corp/api",
]


@pytest.mark.parametrize("url", SSRF_CORPUS)
def test_ssrf_corpus_is_refused_before_any_request(client_for: Callable[..., SourceClient], url: str) -> None:
    recorder = Recorder()
    client = client_for(recorder, allowed_hosts=["public"], resolver=stub_resolver)
    with pytest.raises(HostNotAllowed, match="RUNYARD_ALLOWED_HOSTS"):
        client.get(url)
    assert recorder.requests == []


def test_base_url_on_a_refused_host_is_refused(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    client = client_for(recorder, make_spec(base_url="http://169.254.169.254"), allowed_hosts=["api.example.com"])
    with pytest.raises(HostNotAllowed, match=r"'169\.254\.169\.254'"):
        client.get("/latest/meta-data")
    assert recorder.requests == []


def test_name_not_listed_is_refused_when_it_resolves_to_a_private_address(
    client_for: Callable[..., SourceClient],
) -> None:
    recorder = Recorder()
    client = client_for(recorder, allowed_hosts=["api.example.com"], resolver=stub_resolver)
    with pytest.raises(HostNotAllowed, match=r"resolves to 10\.1\.2\.3"):
        client.get("http://internal.corp/x")
    assert recorder.requests == []


def test_name_not_listed_with_a_public_address_needs_public(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    with pytest.raises(HostNotAllowed):
        client_for(recorder, allowed_hosts=["127.0.0.1"], resolver=stub_resolver).get("https://other.example.org/")
    client_for(recorder, allowed_hosts=["public"], resolver=stub_resolver).get("https://other.example.org/")
    assert len(recorder.requests) == 1


def test_unresolvable_name_is_a_connection_error(client_for: Callable[..., SourceClient]) -> None:
    def fail(host: str) -> list[str]:
        raise OSError(-2, "Name or service not known")

    recorder = Recorder()
    with pytest.raises(TransientSourceError, match=r"could not resolve host 'nowhere\.invalid'"):
        client_for(recorder, make_spec(max_retries=1), allowed_hosts=["public"], resolver=fail).get(
            "https://nowhere.invalid/"
        )
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:8080/x"),
        (["127.0.0.0/8"], "http://127.3.2.1/x"),
        (["::1"], "http://[::1]:8080/x"),
        (["localhost"], "http://localhost:8080/x"),
        (["*.example.com"], "https://eu.api.example.com/x"),
        (["10.0.0.0/8"], "http://internal.corp/x"),
        (["public"], "https://api.example.com/x"),
    ],
)
def test_allowed_when_listed(client_for: Callable[..., SourceClient], allowed: list[str], url: str) -> None:
    recorder = Recorder()
    page = client_for(recorder, allowed_hosts=allowed, resolver=stub_resolver).get(url)
    assert page.status == 200
    assert len(recorder.requests) == 1


def test_wildcard_does_not_match_the_apex_or_lookalikes(client_for: Callable[..., SourceClient]) -> None:
    recorder = Recorder()
    client = client_for(recorder, allowed_hosts=["*.example.com"], resolver=lambda host: ["10.0.0.1"])
    for url in ("https://example.com/", "https://evilexample.com/", "https://example.com.evil.net/"):
        with pytest.raises(HostNotAllowed):
            client.get(url)
    assert recorder.requests == []


def test_redirect_hops_pass_through_the_guard(client_for: Callable[..., SourceClient]) -> None:
    """Same-host redirects are re-checked too: a listed-by-IP host stays the only one reachable."""
    recorder = Recorder(httpx.Response(302, headers={"Location": "/next"}), httpx.Response(200, json=[]))
    client = client_for(recorder, make_spec(base_url="http://127.0.0.1:8080"), allowed_hosts=["127.0.0.1"])
    assert client.get("/first").url == "http://127.0.0.1:8080/next"
    assert len(recorder.requests) == 2


def test_rebinding_is_refused_at_connect_time() -> None:
    """First answer public (passes the request check), second private (the connect): no connection."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    client = SourceClient(
        make_spec(base_url="http://rebind.example.org", max_retries=0),
        environ={},
        allowed_hosts=["public"],
        resolver=lambda host: next(answers),
    )
    with client, pytest.raises(HostNotAllowed, match=r"resolves to 127\.0\.0\.1"):
        client.get("/x")


def test_environment_proxy_is_ignored(client_for: Callable[..., SourceClient], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    recorder = Recorder()
    client_for(recorder).get("/employees")
    assert len(recorder.requests) == 1
