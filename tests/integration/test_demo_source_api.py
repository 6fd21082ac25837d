"""The demo HR source over real loopback HTTP: pagination styles, incremental time_off, faults, auth."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest

from runyard.demo.source_api import (
    MAX_LIMIT,
    DemoSourceConfig,
    DemoSourceServer,
    create_source_app,
    expected_counts,
)

ENDPOINTS = ("employees", "departments", "time_off")
CONFIG = DemoSourceConfig(employees=1000)

Walker = Callable[[httpx.Client, str], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def server() -> Iterator[DemoSourceServer]:
    with DemoSourceServer(CONFIG) as running:
        yield running


@pytest.fixture
def client(server: DemoSourceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield http


@contextmanager
def _serve(config: DemoSourceConfig) -> Iterator[tuple[DemoSourceServer, httpx.Client]]:
    with DemoSourceServer(config) as running, httpx.Client(base_url=running.base_url, timeout=10) as http:
        yield running, http


@pytest.fixture
def fresh() -> Iterator[tuple[DemoSourceServer, httpx.Client]]:
    """A small private server, for tests that change its state."""
    with _serve(DemoSourceConfig(employees=200)) as pair:
        yield pair


def _ok_json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _walk_cursor(http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 97}
    while True:
        body = _ok_json(http.get(f"/{endpoint}", params=params))
        rows += body["data"]
        if body["next_cursor"] is None:
            return rows
        params["cursor"] = body["next_cursor"]


def _walk_next_url(http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = f"/{endpoint}?style=next_url&limit=97"
    while url is not None:
        body = _ok_json(http.get(url))
        rows += body["results"]
        url = body["next"]
    return rows


def _walk_link(http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url: str | None = f"/{endpoint}?style=link&limit=97"
    while url is not None:
        response = http.get(url)
        page = _ok_json(response)
        assert isinstance(page, list)
        rows += page
        url = response.links.get("next", {}).get("url")
    return rows


def _walk_page(http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page, total_pages = 1, 1
    while page <= total_pages:
        body = _ok_json(http.get(f"/{endpoint}", params={"page": page, "page_size": 97}))
        assert body["page"] == page
        rows += body["items"]
        total_pages = body["total_pages"]
        page += 1
    return rows


def _walk_offset(http: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        body = _ok_json(http.get(f"/{endpoint}", params={"offset": len(rows), "limit": 97}))
        rows += body["records"]
        if not body["records"] or len(rows) >= body["total"]:
            return rows


WALKERS: dict[str, Walker] = {
    "cursor": _walk_cursor,
    "next_url": _walk_next_url,
    "link": _walk_link,
    "page": _walk_page,
    "offset": _walk_offset,
}


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]


# -- pagination -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("style", WALKERS)
def test_every_style_walks_every_row_exactly_once(client: httpx.Client, style: str, endpoint: str) -> None:
    ids = _ids(WALKERS[style](client, endpoint))

    assert len(ids) == expected_counts(CONFIG)[endpoint]
    assert sorted(ids) == list(range(1, len(ids) + 1))


def test_expected_counts_match_the_live_server(server: DemoSourceServer, client: httpx.Client) -> None:
    assert expected_counts(CONFIG) == {"employees": 1000, "departments": 50, "time_off": 300}
    assert _ok_json(client.get("/_admin/counts")) == expected_counts(CONFIG) == server.counts()


def test_default_is_cursor_style_with_100_rows(client: httpx.Client) -> None:
    body = _ok_json(client.get("/employees"))

    assert set(body) == {"data", "next_cursor"}
    assert _ids(body["data"]) == list(range(1, 101))
    assert isinstance(body["next_cursor"], str)


def test_last_cursor_page_has_no_next_cursor(client: httpx.Client) -> None:
    body = _ok_json(client.get("/departments", params={"limit": 50}))

    assert len(body["data"]) == 50
    assert body["next_cursor"] is None


def test_next_url_is_absolute_and_keeps_the_style(server: DemoSourceServer, client: httpx.Client) -> None:
    body = _ok_json(client.get("/employees", params={"style": "next_url", "limit": 10}))

    assert body["next"].startswith(f"{server.base_url}/employees?")
    assert "style=next_url" in body["next"]


def test_link_header_is_absent_on_the_last_page(client: httpx.Client) -> None:
    response = client.get("/departments", params={"style": "link", "limit": 50})

    assert response.status_code == 200
    assert "link" not in response.headers


@pytest.mark.parametrize(
    "params",
    [
        {"limit": MAX_LIMIT + 1},
        {"page": 1, "page_size": MAX_LIMIT + 1},
        {"offset": 0, "limit": 0},
        {"limit": "many"},
        {"cursor": "not-a-cursor"},
        {"style": "sideways"},
        {"updated_since": "2024-01-01T00:00:00Z"},
    ],
)
def test_bad_queries_get_a_400_json_error(client: httpx.Client, params: dict[str, Any]) -> None:
    response = client.get("/employees", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "bad_request"


def test_max_limit_is_accepted(client: httpx.Client) -> None:
    body = _ok_json(client.get("/employees", params={"limit": MAX_LIMIT}))

    assert len(body["data"]) == 1000
    assert body["next_cursor"] is None


# -- data -----------------------------------------------------------------------------------------


def test_cost_center_appears_only_in_the_second_half(client: httpx.Client) -> None:
    rows = _ok_json(client.get("/employees", params={"limit": 1000}))["data"]

    assert all("cost_center" not in row for row in rows[:500])
    assert all(isinstance(row["cost_center"], str) for row in rows[500:])


def test_employee_rows_have_the_documented_shape(client: httpx.Client) -> None:
    rows = _ok_json(client.get("/employees", params={"limit": 1000}))["data"]
    row = rows[0]

    assert set(row) == {
        "id", "first_name", "last_name", "email", "hired_at", "salary", "manager_id",
        "department", "skills", "active", "updated_at",
    }  # fmt: skip
    assert set(row["department"]) == {"id", "name", "location"}
    assert set(row["department"]["location"]) == {"city", "country"}
    assert row["hired_at"].endswith("Z")
    assert any(r["salary"] is None for r in rows)
    assert any(r["manager_id"] is None for r in rows)
    assert any(r["skills"] == [] for r in rows)


def test_rows_are_deterministic_for_a_seed() -> None:
    def first_page(config: DemoSourceConfig) -> bytes:
        with DemoSourceServer(config) as running, httpx.Client(base_url=running.base_url) as http:
            return http.get("/employees", params={"limit": 50}).content

    assert first_page(DemoSourceConfig(employees=100)) == first_page(DemoSourceConfig(employees=100))
    assert first_page(DemoSourceConfig(employees=100)) != first_page(DemoSourceConfig(employees=100, seed=8))


def test_a_million_rows_are_served_lazily() -> None:
    started = time.perf_counter()
    with _serve(DemoSourceConfig(employees=1_000_000)) as (_, http):
        body = _ok_json(http.get("/employees", params={"page": 10_000, "page_size": 100}))

    assert _ids(body["items"])[-1] == 1_000_000
    assert body["total_pages"] == 10_000
    assert time.perf_counter() - started < 5


def test_create_source_app_returns_an_asgi_app() -> None:
    assert callable(create_source_app(DemoSourceConfig(employees=10)))


# -- time_off increments --------------------------------------------------------------------------


def test_updated_since_is_strict_and_ascending(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    rows = _ok_json(http.get("/time_off", params={"limit": 5000}))["data"]
    pivot = rows[41]["updated_at"]

    since = _ok_json(http.get("/time_off", params={"updated_since": pivot, "limit": 5000}))["data"]

    assert since == rows[42:]
    assert [r["updated_at"] for r in rows] == sorted(r["updated_at"] for r in rows)


def test_admin_add_appends_rows_after_every_existing_one(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    server, http = fresh
    before = _ok_json(http.get("/time_off", params={"limit": 5000}))["data"]
    watermark = max(r["updated_at"] for r in before)

    added = _ok_json(http.post("/_admin/time_off/add", params={"count": 7}))
    new = _ok_json(http.get("/time_off", params={"updated_since": watermark}))["data"]

    assert added["count"] == server.counts()["time_off"] == 60 + 7
    assert _ids(new) == list(range(61, 68))
    assert all(r["updated_at"] > watermark for r in new)
    assert added["max_updated_at"] == new[-1]["updated_at"]


def test_admin_update_retouches_existing_rows(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    server, http = fresh
    before = {r["id"]: r for r in _ok_json(http.get("/time_off", params={"limit": 5000}))["data"]}
    watermark = max(r["updated_at"] for r in before.values())

    http.post("/_admin/time_off/add", params={"count": 2, "update": 3}).raise_for_status()
    changed = _ok_json(http.get("/time_off", params={"updated_since": watermark, "style": "link"}))

    touched = [r for r in changed if r["id"] in before]
    assert len(touched) == 3
    assert sorted(_ids(changed)[3:]) == [61, 62]
    assert [r["updated_at"] for r in changed] == sorted(r["updated_at"] for r in changed)
    assert all(r["approved"] is True and r["days"] == before[r["id"]]["days"] + 0.5 for r in touched)
    assert server.counts()["time_off"] == expected_counts(server.config, time_off_added=2)["time_off"]
    assert sorted(_ids(_walk_offset(http, "time_off"))) == list(range(1, 63))


def test_cursor_walk_survives_rows_added_midway(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    first = _ok_json(http.get("/time_off", params={"limit": 50}))

    http.post("/_admin/time_off/add", params={"count": 5}).raise_for_status()
    rest = _ok_json(http.get("/time_off", params={"limit": 50, "cursor": first["next_cursor"]}))

    assert _ids(first["data"]) + _ids(rest["data"]) == list(range(1, 66))


# -- faults ---------------------------------------------------------------------------------------


def _stats(http: httpx.Client, endpoint: str) -> dict[str, int]:
    stats: dict[str, int] = _ok_json(http.get("/_admin/stats"))[endpoint]
    return stats


def _set_faults(http: httpx.Client, **faults: Any) -> dict[str, Any]:
    body: dict[str, Any] = _ok_json(http.post("/_admin/faults", json=faults))
    return body


def _get_retrying(http: httpx.Client, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
    for _ in range(5):
        response = http.get(url, params=params)
        if response.status_code not in (429, 500):
            return response
    raise AssertionError(f"{url} kept failing")


def test_failed_pages_succeed_on_retry_and_are_counted(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, fail_rate=1.0)
    pages = 0
    params: dict[str, Any] = {"limit": 30}
    while True:
        assert http.get("/employees", params=params).status_code == 500
        body = _ok_json(http.get("/employees", params=params))
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]

    stats = _stats(http, "employees")
    assert pages == 7
    assert stats["status_500"] == pages
    assert stats["status_200"] == pages
    assert stats["requests"] == 2 * pages


def test_fail_rate_picks_a_stable_fraction_of_pages(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, fail_rate=0.5)
    ids = []
    for page in range(1, 41):
        response = _get_retrying(http, "/employees", {"page": page, "page_size": 5})
        ids += _ids(_ok_json(response)["items"])

    failures = _stats(http, "employees")["status_500"]
    assert ids == list(range(1, 201))
    assert 8 <= failures <= 32


def test_throttled_pages_get_429_with_retry_after(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, throttle_rate=1.0, retry_after=2)

    throttled = http.get("/departments")
    retried = http.get("/departments")

    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "2"
    assert retried.status_code == 200
    assert _stats(http, "departments")["status_429"] == 1


def test_throttle_then_fail_then_succeed(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, throttle_rate=1.0, throttle_attempts=2, fail_rate=1.0, fail_attempts=1)

    statuses = [http.get("/departments").status_code for _ in range(4)]

    assert statuses == [429, 429, 500, 200]


def test_malformed_page_stays_malformed_until_cleared(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, malformed_pages=[{"endpoint": "employees", "page": 3}])

    good = http.get("/employees", params={"page": 2, "page_size": 10})
    bad = [http.get("/employees", params={"page": 3, "page_size": 10}) for _ in range(2)]
    _ok_json(good)
    for response in bad:
        assert response.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(response.content)

    _set_faults(http, malformed_pages=[])
    assert len(_ok_json(http.get("/employees", params={"page": 3, "page_size": 10}))["items"]) == 10
    assert _stats(http, "employees")["malformed"] == 2


def test_malformed_page_counts_pages_in_cursor_walks(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, malformed_pages=[{"endpoint": "time_off", "page": 2}])
    first = _ok_json(http.get("/time_off", params={"limit": 10}))

    second = http.get("/time_off", params={"limit": 10, "cursor": first["next_cursor"]})

    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(second.content)


def test_html_endpoint_answers_200_html(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, html_endpoints=["departments"])

    response = http.get("/departments")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert http.get("/employees").headers["content-type"] == "application/json"
    assert _stats(http, "departments")["html"] == 1


def test_slow_pages_are_delayed(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, slow_rate=1.0, slow_ms=150)

    started = time.perf_counter()
    _ok_json(http.get("/departments"))

    assert time.perf_counter() - started >= 0.15
    assert _stats(http, "departments")["slowed"] == 1


def test_faults_can_be_read_and_cleared(fresh: tuple[DemoSourceServer, httpx.Client]) -> None:
    _, http = fresh
    _set_faults(http, fail_rate=0.25, html_endpoints=["employees"])

    current = _ok_json(http.get("/_admin/faults"))
    cleared = _ok_json(http.delete("/_admin/faults"))

    assert current["fail_rate"] == 0.25
    assert current["html_endpoints"] == ["employees"]
    assert cleared["fail_rate"] == 0
    assert cleared["html_endpoints"] == []


@pytest.mark.parametrize(
    "faults",
    [{"fail_rate": 2}, {"explode": True}, {"malformed_pages": [{"endpoint": "nope", "page": 1}]}, [1, 2]],
)
def test_invalid_faults_are_rejected(fresh: tuple[DemoSourceServer, httpx.Client], faults: Any) -> None:
    _, http = fresh

    response = http.post("/_admin/faults", json=faults)

    assert response.status_code == 400
    assert _ok_json(http.get("/_admin/faults"))["fail_rate"] == 0


def test_faults_set_at_construction() -> None:
    config = DemoSourceConfig(employees=10, fail_rate=1.0, malformed_pages=(("departments", 1),))
    with _serve(config) as (_, http):
        assert http.get("/employees").status_code == 500
        assert http.get("/employees").status_code == 200
        assert http.get("/departments").status_code == 500
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(http.get("/departments").content)


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="fail_rate"):
        DemoSourceConfig(fail_rate=1.5)


# -- auth -----------------------------------------------------------------------------------------


def test_bearer_token_is_required() -> None:
    with _serve(DemoSourceConfig(employees=10, token="s3cret")) as (_, http):
        missing = http.get("/employees")
        wrong = http.get("/employees", headers={"Authorization": "Bearer nope"})
        right = http.get("/employees", headers={"Authorization": "Bearer s3cret"})

        assert missing.status_code == wrong.status_code == 401
        assert missing.json()["error"] == "unauthorized"
        assert len(_ok_json(right)["data"]) == 10
        assert _stats(http, "employees")["status_401"] == 2


def test_api_key_is_accepted_in_header_or_query_and_kept_in_next_urls() -> None:
    with _serve(DemoSourceConfig(employees=30, api_key="k3y")) as (_, http):
        assert http.get("/employees").status_code == 401
        assert http.get("/employees", params={"api_key": "wrong"}).status_code == 401
        assert http.get("/employees", headers={"X-API-Key": "k3y"}).status_code == 200

        url: str | None = "/employees?style=next_url&limit=7&api_key=k3y"
        ids: list[int] = []
        while url is not None:
            body = _ok_json(http.get(url))
            ids += _ids(body["results"])
            url = body["next"]
        assert ids == list(range(1, 31))


# -- server lifecycle -----------------------------------------------------------------------------


def test_server_binds_loopback_and_stops_cleanly() -> None:
    server = DemoSourceServer(DemoSourceConfig(employees=5))
    server.start()
    base_url = server.base_url
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/_admin/health").json() == {"status": "ok"}
    finally:
        server.stop()
        server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/_admin/health")
