"""SQL injection (RELIABILITY.md S7) over real HTTP, on SQLite and PostgreSQL stores.

Every filter, sort and search of the native API lists, spec 000's task search, spec 001's and 002's parameters,
every field of spec 003's bodies, spec 004's view, parameters and continuation token, and the UI's list pages get
each payload of `corpus.SQL_PAYLOADS`. Every answer must be 2xx or 4xx with a JSON detail, never a 500, and the
runs database must hold the same tables with the same row counts afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from runyard.services.operations import deploy
from tests.integration.rest_harness import RestStack, database, rest_stack, tasks_spec
from tests.integration.ui_client import UiClient, signed_in
from tests.security.corpus import HEADER_PAYLOADS, SQL_PAYLOADS, assert_answered_safely, store_snapshot

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class World:
    stack: RestStack
    admin: httpx.Client
    operator: httpx.Client
    run_id: int
    operation_id: int


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"injection-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as stack,
    ):
        (deployed,) = deploy(
            stack.store,
            [tasks_spec("injected", [{"name": "only", "executor": "noop", "depends_on": []}])],
            stack.runtime.registry,
        )
        admin = stack.as_user("default", "administrator")
        run = stack.launch(admin, deployed.operation_id)
        stack.wait_status(admin, run["id"])
        yield World(stack, admin, stack.as_user("default", "operator"), run["id"], deployed.operation_id)


@pytest.fixture
def unchanged(world: World) -> Iterator[None]:
    """The runs database's tables and row counts, the same after the test as before it."""
    before = store_snapshot(world.stack.store)
    assert before["runs"] >= 1
    yield
    assert store_snapshot(world.stack.store) == before


def _queries(world: World) -> list[tuple[str, str]]:
    """(path, query parameter) of every filter, sort and search."""
    run = world.run_id
    return [
        *(("/api/v1/runs", name) for name in (
            "operation", "status", "type", "started_from", "started_to", "completed_from", "completed_to",
            "sort", "order", "page", "page_size",
        )),
        *((f"/api/v1/runs/{run}/tasks", name) for name in ("search", "sort", "order", "page", "page_size")),
        *(("/api/v1/operations", name) for name in ("type", "environment", "state", "archived")),
        *(("/api/v1/alerts", name) for name in ("state", "operation_id", "kind", "page")),
        *(("/api/v1/notifications/deliveries", name) for name in ("alert_id", "status")),
        *(("/api/v1/loads", name) for name in ("page", "page_size")),
        ("/etl/rest/v1/tasks/", "type"),  # spec 001
        (f"/etl/rest/v1/tasks/{run}/", "type"),
        ("/api/v1/bulk_metadata/job/", "id"),  # spec 002
        ("/api/v1/bulk_metadata/job/", "name"),
        *(("/api/integration/v2/biviews/runs", name) for name in (  # spec 004
            "fromDate", "toDate", "pagenum", "pageSize", "outputType",
        )),
    ]  # fmt: skip


def test_every_filter_sort_and_search_survives_the_payloads(world: World, unchanged: None) -> None:
    for path, name in _queries(world):
        for payload in SQL_PAYLOADS:
            response = world.operator.get(path, params={name: payload})
            assert_answered_safely(response, f"GET {path}?{name}={payload[:40]!r}")


def test_payloads_as_path_segments(world: World, unchanged: None) -> None:
    templates = [
        "/api/v1/runs/{}",
        "/api/v1/runs/{}/tasks",
        "/api/v1/operations/{}",
        "/api/v1/alerts/{}",
        "/etl/rest/v1/tasks/{}/",
        "/api/integration/v2/biviews/{}",  # spec 004's view name
        "/api/integrations/v2/biviews-status/{}",
    ]
    for template in templates:
        for payload in SQL_PAYLOADS:
            if payload in ("%", "_") or not payload.strip("\x00"):
                continue  # not a path segment httpx sends as one
            path = template.format(quote(payload, safe=""))
            assert_answered_safely(world.operator.get(path), f"GET {template} with {payload[:40]!r}")


def test_the_continuation_token_header_survives_the_payloads(world: World, unchanged: None) -> None:
    for payload in HEADER_PAYLOADS:
        response = world.operator.get(
            "/api/integration/v2/biviews/runs", params={"pagenum": 2}, headers={"continuation-token": payload}
        )
        assert_answered_safely(response, f"continuation-token {payload[:40]!r}")
        assert response.status_code == 400, response.text


SPEC003 = [
    ("/v1/dag/launch", "launch_job"),
    ("/v1/dag/status", "check_run_status"),
    ("/v1/dag/status", "get_last_status"),
    ("/v1/workflow/status", None),
    ("/v1/configuration/status", None),
]
SPEC003_FIELDS = ("account", "environment", "configuration_type", "configuration_id", "job_id", "execution_date")


def _spec003_body(action: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account": "default",
        "environment": "DEV",
        "configuration_type": "tasks",
        "configuration_id": "injected",
        "job_id": "tasks|injected",
        "execution_date": "2024-01-01",
    }
    if action is not None:
        body["action"] = action
    return body


def test_every_field_of_spec_003_bodies_survives_the_payloads(world: World, unchanged: None) -> None:
    for path, action in SPEC003:
        for field in (*SPEC003_FIELDS, *(("action",) if action else ())):
            for payload in SQL_PAYLOADS:
                body = _spec003_body(action) | {field: payload}
                response = world.operator.post(path, json=body)
                assert_answered_safely(response, f"POST {path} {field}={payload[:40]!r}")
                assert response.status_code != 200 or path != "/v1/dag/launch", response.text  # nothing launched


def test_json_bodies_of_the_native_api_survive_the_payloads(world: World, unchanged: None) -> None:
    """Operation status and launch bodies: strings where enums and numbers belong (refused, nothing written)."""
    operation = world.operation_id
    for payload in SQL_PAYLOADS:
        for path, body in (
            (f"/api/v1/operations/{operation}/status", {"action": payload}),
            (f"/api/v1/operations/{operation}/runs", {"type": payload}),
        ):
            response = world.admin.post(path, json=body)
            assert_answered_safely(response, f"POST {path} {payload[:40]!r}")
            assert 400 <= response.status_code < 500, response.text


UI_FILTERS = ("q", "search", "status", "type", "sort", "order", "page", "environment", "state", "kind")


def test_the_ui_list_pages_survive_the_payloads(world: World, unchanged: None) -> None:
    ui: UiClient = signed_in(world.stack, "default", "operator")
    try:
        for path in ("/", "/sources", "/runs", f"/runs/{world.run_id}", "/loads", "/attention", "/alerts", "/exports"):
            for payload in SQL_PAYLOADS[::2]:
                response = ui.get(path, params=dict.fromkeys(UI_FILTERS, payload))
                assert response.status_code < 500, f"GET {path}: {response.status_code} {response.text[:300]}"
    finally:
        ui.close()


def test_sign_in_with_payloads_is_refused_and_writes_only_attempts(world: World) -> None:
    before = store_snapshot(world.stack.store)
    for payload in ("' OR 1=1 --", "admin'--", "admin\x00", "\u2019 OR \u20181\u2019=\u20181"):
        response = httpx.post(
            f"{world.stack.base_url}/api/v1/auth/token", json={"login": payload, "password": payload}, timeout=15
        )
        assert_answered_safely(response, f"sign-in as {payload!r}")
        # 400 on PostgreSQL for the NUL (its text cannot hold one: refused before any password check)
        assert response.status_code in (400, 401, 422, 429), response.text
    after = store_snapshot(world.stack.store)
    before.pop("sign_in_attempts", None)
    after.pop("sign_in_attempts", None)
    assert after == before
