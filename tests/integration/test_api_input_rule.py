"""One rule for bad input, over real HTTP: every bad input under /api/v1/ is a 400 whose `detail` names the field.

The spec adapters outside /api/v1/ keep their codes: spec 001 (/etl/rest/v1) and spec 004 (/api/integrations)
answer FastAPI's 422 for a request it cannot validate (their own checks are 400), spec 003 (/v1/...) answers 400
in its own shape. A launch without a body is an incremental run: every field of its body has a default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runyard.api.errors import bad_input_status
from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, long_task, rest_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    home = tmp_path_factory.mktemp("input-rule")
    with rest_stack(home, f"sqlite:///{home / 'runyard.db'}") as started:
        yield started


@pytest.fixture(scope="module")
def admin(stack: RestStack) -> httpx.Client:
    return stack.as_user("default", "administrator")


@pytest.fixture(scope="module")
def run_id(stack: RestStack, admin: httpx.Client) -> int:
    operation = stack.deploy("input-rule", [sleep_task("only", 0.01)])
    run = stack.launch(admin, operation)
    return int(stack.wait_status(admin, run["id"])["id"])


def assert_bad_input(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 400, f"{response.request.method} {response.request.url}: {response.text}"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, (response.request.url, detail)
    return detail


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/api/v1/runs", {"order": "sideways"}, ["query.order:", "'asc' or 'desc'"]),
        ("/api/v1/runs", {"page_size": 0}, ["query.page_size:", "greater than or equal to 1"]),
        ("/api/v1/runs", {"page_size": 10_000}, ["query.page_size:", "less than or equal to 200"]),
        ("/api/v1/runs", {"page": "first"}, ["query.page:", "valid integer"]),
        ("/api/v1/runs", {"status": "bogus"}, ["query.status:", "'failed'"]),
        ("/api/v1/runs", {"type": "sideways"}, ["query.type:"]),
        ("/api/v1/runs", {"operation": "abc"}, ["query.operation:"]),
        ("/api/v1/runs", {"started_from": "yesterday"}, ["query.started_from:"]),
        ("/api/v1/runs", {"sort": "password"}, ["sort", "password"]),  # the service's own check: 400 already
        ("/api/v1/runs/abc", {}, ["path.run_id:", "valid integer"]),
        ("/api/v1/runs/99999999999999999999", {}, ["path.run_id:"]),
        ("/api/v1/runs/{run}/tasks", {"page_size": 0}, ["query.page_size:"]),
        ("/api/v1/runs/{run}/tasks", {"order": "up"}, ["query.order:"]),
        ("/api/v1/loads", {"page": 0}, ["query.page:"]),
        ("/api/v1/operations", {"state": "sleeping"}, ["query.state:"]),
        ("/api/v1/operations", {"archived": "perhaps"}, ["query.archived:"]),
        ("/api/v1/operations/0", {}, ["path.operation_id:"]),
        ("/api/v1/bulk_metadata/job/", {"id": "abc"}, ["query.id:", "valid integer"]),  # spec 002, under /api/v1/
        ("/api/v1/bulk_metadata/job/", {}, ["id", "exactly one"]),
    ],
)
def test_every_bad_query_or_path_value_is_a_400_naming_it(
    admin: httpx.Client, run_id: int, path: str, params: dict[str, Any], words: list[str]
) -> None:
    assert_bad_input(admin.get(path.replace("{run}", str(run_id)), params=params), *words)


def test_bad_bodies_are_400_naming_the_field_or_the_body(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy("bodies", [long_task("hold")])
    launch = f"/api/v1/operations/{operation}/runs"
    json_headers = {"content-type": "application/json"}
    assert_bad_input(admin.post(launch, json={"type": "sideways"}), "type:", "'incremental' or 'destructive'")
    assert_bad_input(admin.post(launch, json={"type": "incremental", "extra": 1}), "extra:", "Extra inputs")
    assert_bad_input(admin.post(launch, json=[1, 2]), "body:")
    assert_bad_input(admin.post(launch, content=b'{"type": ', headers=json_headers), "body: not valid JSON")
    assert_bad_input(admin.post(launch, content=b"{not json", headers={"content-type": "x"}), "body:", "content-type")
    status = f"/api/v1/operations/{operation}/status"
    assert_bad_input(admin.post(status, json={"activated": True}), "archived: Field required")
    assert_bad_input(admin.post(status), "body", '{"activated": true or false')
    assert_bad_input(admin.post("/api/v1/sql"), "body: required")
    assert_bad_input(admin.post("/api/v1/sql", json={"sql": 1}), "sql: Input should be a valid string")


def test_a_launch_without_a_body_is_an_incremental_run(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy("no-body", [sleep_task("only", 0.01)])

    response = admin.post(f"/api/v1/operations/{operation}/runs")

    assert response.status_code == 202, response.text
    run = response.json()
    assert (run["type"], run["trigger"], run["message_count"]) == ("incremental", "api", 0)
    assert stack.wait_status(admin, run["id"])["status"] == "completed"
    destructive = admin.post(f"/api/v1/operations/{operation}/runs", json={"type": "destructive"})
    assert destructive.status_code == 202, destructive.text
    assert destructive.json()["type"] == "destructive"
    stack.wait_status(admin, destructive.json()["id"])


def test_the_spec_adapters_outside_api_v1_keep_their_codes(admin: httpx.Client, run_id: int) -> None:
    unparsable_audit_id = admin.get("/etl/rest/v1/tasks/abc/")  # spec 001: FastAPI's 422, the field named
    assert unparsable_audit_id.status_code == 422, unparsable_audit_id.text
    assert unparsable_audit_id.json()["detail"].startswith("path.audit_id:")
    bad_type = admin.get(f"/etl/rest/v1/tasks/{run_id}/", params={"type": "bogus"})  # spec 001's own check
    assert bad_type.status_code == 400, bad_type.text
    assert "type" in bad_type.json()["detail"]
    bad_count = admin.get("/api/integrations/v2/biviews/anything", params={"count": "maybe"})  # spec 004
    assert bad_count.status_code == 422, bad_count.text
    assert bad_count.json()["detail"].startswith("query.count:")
    spec003 = admin.post("/v1/dag/status", json={"action": "get_last_status", "limit": 0})  # spec 003's own shape
    assert spec003.status_code == 400, spec003.text
    assert spec003.json()["code"] == 400
    assert "detail" not in spec003.json()


def test_the_openapi_document_says_400_not_422_for_native_routes(stack: RestStack) -> None:
    schema = httpx.get(f"{stack.base_url}/openapi.json", timeout=10).json()
    native = {path: ops for path, ops in schema["paths"].items() if path.startswith("/api/v1/")}

    documented_422 = [
        f"{method} {path}" for path, ops in native.items() for method, op in ops.items() if "422" in op["responses"]
    ]
    assert documented_422 == []
    for path in ("/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/operations/{operation_id}/runs"):
        for operation in native[path].values():
            assert "400" in operation["responses"], path
    launch = native["/api/v1/operations/{operation_id}/runs"]["post"]
    assert launch["requestBody"].get("required", False) is False
    assert "422" in schema["paths"]["/etl/rest/v1/tasks/{audit_id}/"]["get"]["responses"]  # spec 001 keeps it


def test_the_status_of_an_unparsable_request_depends_on_the_path_alone() -> None:
    assert bad_input_status("/api/v1/runs") == 400
    assert bad_input_status("/api/v1/bulk_metadata/job/") == 400
    assert bad_input_status("/etl/rest/v1/tasks/") == 422
    assert bad_input_status("/api/integrations/v2/biviews/x") == 422
