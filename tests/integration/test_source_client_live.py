"""SourceClient against the demo HR source over real loopback HTTP (default network transport)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.operations.api_to_table.http import HostNotAllowed, SourceClient, SourceError
from runyard.operations.api_to_table.spec import ApiToTableSpec

API_KEY = "live-demo-key-123"


@pytest.fixture(scope="module")
def server() -> Iterator[DemoSourceServer]:
    config = DemoSourceConfig(
        employees=300,
        api_key=API_KEY,
        fail_rate=0.5,
        fail_attempts=2,
        throttle_rate=0.5,
        throttle_attempts=1,
        retry_after=1,
        malformed_pages=(("departments", 1),),
        html_endpoints=("time_off",),
    )
    with DemoSourceServer(config) as running:
        yield running


def spec_for(server: DemoSourceServer, **overrides: Any) -> ApiToTableSpec:
    data: dict[str, Any] = {
        "base_url": server.base_url,
        "auth": {"type": "api_key", "name": "api_key", "in": "query", "value_env": "DEMO_KEY"},
        "timeout_seconds": 10,
        "endpoints": [{"name": "employees", "path": "/employees"}],
    }
    data.update(overrides)
    return ApiToTableSpec.model_validate(data)


def client_for(server: DemoSourceServer, messages: list[str], **overrides: Any) -> SourceClient:
    return SourceClient(
        spec_for(server, **overrides),
        environ={"DEMO_KEY": API_KEY},
        allowed_hosts=["127.0.0.1"],
        backoff_seconds=0,
        max_retry_after_seconds=0.01,
        on_retry=messages.append,
    )


def test_faults_are_retried_and_every_page_arrives(server: DemoSourceServer) -> None:
    messages: list[str] = []
    ids: list[int] = []
    with client_for(server, messages) as client:
        page = client.get("/employees", {"limit": "40"})
        while True:
            assert isinstance(page.body, dict)
            ids += [row["id"] for row in page.body["data"]]
            assert "api_key=***" in page.url
            assert API_KEY not in page.url
            cursor = page.body["next_cursor"]
            if cursor is None:
                break
            page = client.get("/employees", {"limit": "40", "cursor": cursor})
    assert len(ids) == 300
    assert len(set(ids)) == 300
    assert any("answered 500" in m for m in messages)
    assert any("answered 429" in m for m in messages)
    assert all(API_KEY not in m for m in messages)


def test_malformed_and_html_pages_are_terminal(server: DemoSourceServer) -> None:
    with client_for(server, []) as client:
        with pytest.raises(SourceError, match="malformed JSON"):
            client.get("/departments", {"style": "page", "page": "1", "page_size": "50"})
        with pytest.raises(SourceError, match="HTML, not JSON"):
            client.get("/time_off")


def test_loopback_is_refused_unless_listed(server: DemoSourceServer) -> None:
    before = httpx.get(server.url("/_admin/stats"), timeout=5).json()["employees"]["requests"]
    client = SourceClient(spec_for(server), environ={"DEMO_KEY": API_KEY}, allowed_hosts=["public", "localhost"])
    with client, pytest.raises(HostNotAllowed, match=r"'127\.0\.0\.1'"):
        client.get("/employees")
    assert httpx.get(server.url("/_admin/stats"), timeout=5).json()["employees"]["requests"] == before
