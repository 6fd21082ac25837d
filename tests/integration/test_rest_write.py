"""The REST API over real HTTP, where requests change things: launch and the Rejected run, retry, cancel,
the events stream, users and API tokens, the access log, and a real api-to-table run through the API.

Each test gets its own stack (rest_harness.rest_stack). The launch conflict runs on both backends;
the rest on SQLite, to keep the suite quick (the services they call are covered on both elsewhere).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import sleep_task
from tests.integration.rest_harness import FAILED, RestStack, all_items, long_task, rest_stack

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
STREAM_SECONDS = 20.0
QUICK = [sleep_task("first", 0.2), sleep_task("second", 0.2, depends_on=["first"])]
FAILING = [
    {"name": "boom", "executor": "fail", "max_attempts": 1, "params": {"message": "boom went the task", "seconds": 0.8}}
]


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


def assert_conflict(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail


# --- launch ---------------------------------------------------------------------------------------------------------


def test_launch_then_a_second_launch_is_rejected(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy("slow", [long_task("wait")])

    first = stack.launch(operator, op_id, "destructive")
    second = operator.post(f"/api/v1/operations/{op_id}/runs", json={"type": "incremental"})

    assert (first["status"], first["type"], first["trigger"]) == ("waiting_to_start", "destructive", "api")
    assert_conflict(second, "Rejected - previous load still running", f"run {first['id']} is still active")
    rejected = second.json()["run"]
    assert (rejected["status"], rejected["blocked_by"], rejected["type"]) == ("rejected", first["id"], "incremental")
    assert rejected["status_label"] == "Rejected - previous load still running"
    assert stack.run(operator, rejected["id"])["status"] == "rejected"
    listed = all_items(operator, "/api/v1/runs", {"operation": op_id})
    assert [run["id"] for run in listed] == [rejected["id"], first["id"]]
    assert listed[1]["status"] in {"waiting_to_start", "running"}


# --- retry ----------------------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_retry_only_the_latest_failed_or_canceled_run(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    failing = stack.deploy("failing", FAILING)
    quick = stack.deploy("quick", QUICK)
    failed = stack.wait_status(operator, stack.launch(operator, failing)["id"])
    completed = stack.wait_status(operator, stack.launch(operator, quick)["id"])
    assert (failed["status"], completed["status"]) == ("failed", "completed")

    assert_conflict(
        operator.post(f"/api/v1/runs/{completed['id']}/retry"), f"run {completed['id']}", "cannot be retried"
    )
    retried = operator.post(f"/api/v1/runs/{failed['id']}/retry")
    assert retried.status_code == 202, retried.text
    second = retried.json()
    assert (second["retry_of"], second["trigger"], second["operation_id"]) == (failed["id"], "retry", failing)
    assert second["id"] > failed["id"]
    assert_conflict(operator.post(f"/api/v1/runs/{second['id']}/retry"), "cannot be retried")  # active: fails at 0.8 s
    assert stack.wait_status(operator, second["id"])["status"] == "failed"
    assert_conflict(operator.post(f"/api/v1/runs/{failed['id']}/retry"), f"run {failed['id']}", "cannot be retried")
    third = operator.post(f"/api/v1/runs/{second['id']}/retry")
    assert third.status_code == 202, third.text
    assert third.json()["retry_of"] == second["id"]


# --- cancel ---------------------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_cancel_a_running_run_then_retry_it(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy("slow", [long_task("wait"), sleep_task("after", 0.1, depends_on=["wait"])])
    run = stack.launch(operator, op_id)
    stack.wait_task(operator, run["id"], "wait", "running")

    canceled = operator.post(f"/api/v1/runs/{run['id']}/cancel")

    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] in {"canceling", "canceled"}
    final = stack.wait_status(operator, run["id"], timeout=10)
    assert (final["status"], final["status_label"]) == ("canceled", "Canceled")
    tasks = {task["name"]: task["status"] for task in all_items(operator, f"/api/v1/runs/{run['id']}/tasks")}
    assert tasks == {"wait": "canceled", "after": "canceled"}
    assert_conflict(operator.post(f"/api/v1/runs/{run['id']}/cancel"), "cannot be canceled", "Canceled")
    retried = operator.post(f"/api/v1/runs/{run['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["retry_of"] == run["id"]


# --- the events stream ----------------------------------------------------------------------------------------------


def read_events(client: httpx.Client, run_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every (event, data) of GET /runs/{id}/events until `end`; fails after STREAM_SECONDS."""
    events: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + STREAM_SECONDS
    kind = ""
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=STREAM_SECONDS) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"no end event within {STREAM_SECONDS} s: {events}"
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "end":
                    return events
    raise AssertionError(f"the stream closed without an end event: {events}")


@SQLITE_ONLY
def test_events_stream_the_run_and_its_tasks_until_it_ends(stack: RestStack) -> None:
    viewer = stack.as_user("default", "viewer")
    run = stack.launch(stack.as_user("default", "operator"), stack.deploy("quick", QUICK))

    events = read_events(viewer, run["id"])

    kinds = [kind for kind, _ in events]
    assert kinds[0] == "run"
    assert events[0][1]["id"] == run["id"]
    assert kinds[-1] == "end"
    assert events[-1][1] == {"status": "completed", "status_label": "Completed"}
    task_events = [data for kind, data in events if kind.startswith("task")]
    assert {data["task_name"] for data in task_events} == {"first", "second"}
    assert all(data["run_id"] == run["id"] for data in task_events)
    assert [data["status"] for kind, data in events if kind == "run"][-1] == "completed"
    assert stack.run(viewer, run["id"])["status"] == "completed"


# --- users and API tokens -------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_an_api_token_stops_working_right_after_it_is_revoked(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    created = admin.post("/api/v1/tokens", json={"name": "nightly"})
    assert created.status_code == 201, created.text
    secret, token_id = created.json()["token"], created.json()["id"]
    by_header, by_bearer = stack.client(secret, header="TOKEN"), stack.client(secret)
    assert by_header.get("/api/v1/runs").status_code == 200
    assert by_bearer.get("/api/v1/operations").status_code == 200
    listed = admin.get("/api/v1/tokens").json()
    assert [(t["id"], t["name"], t["login"], t["revoked_at"]) for t in listed] == [(token_id, "nightly", "admin", None)]
    assert secret not in json.dumps(listed)

    revoked = admin.delete(f"/api/v1/tokens/{token_id}")

    assert revoked.status_code == 204, revoked.text
    for client in (by_header, by_bearer):
        response = client.get("/api/v1/runs")
        assert response.status_code == 401
        assert response.json() == FAILED
    assert admin.get("/api/v1/tokens").json()[0]["revoked_at"] is not None


@SQLITE_ONLY
def test_an_administrator_manages_users_and_an_operator_launches(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    op_id = stack.deploy("quick", QUICK)

    created = admin.post("/api/v1/users", json={"login": "olga", "password": "olga-password", "role": "operator"})

    assert created.status_code == 201, created.text
    user = created.json()
    assert (user["login"], user["role"], user["active"]) == ("olga", "operator", True)
    assert "olga" in [u["login"] for u in admin.get("/api/v1/users").json()]
    olga = stack.client(stack.login("olga", "olga-password"))
    run = stack.launch(olga, op_id)
    assert stack.wait_status(olga, run["id"])["status"] == "completed"
    assert olga.get("/api/v1/users").status_code == 403
    taken = admin.post("/api/v1/users", json={"login": "olga", "password": "another-password", "role": "viewer"})
    assert_conflict(taken, "olga")

    assert admin.delete(f"/api/v1/users/{user['id']}").status_code == 204

    assert olga.get("/api/v1/runs").json() == FAILED
    refused = stack.client().post("/api/v1/auth/token", json={"login": "olga", "password": "olga-password"})
    assert (refused.status_code, refused.json()) == (401, FAILED)


# --- the access log -------------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_the_access_log_never_shows_a_query_token(stack: RestStack, caplog: pytest.LogCaptureFixture) -> None:
    token = stack.token_of("default", "viewer")
    access = logging.getLogger("runyard.access")
    access.addHandler(caplog.handler)  # directly: another test may have stopped `runyard` logs propagating
    try:
        with caplog.at_level(logging.INFO, logger="runyard.access"):
            ok = stack.client().get(f"/api/v1/runs?page=1&Authorization=Bearer%20{token}")
            bad = stack.client().get(f"/api/v1/loads?authorization=Bearer%20{token}x")
    finally:
        access.removeHandler(caplog.handler)

    assert (ok.status_code, bad.status_code) == (200, 401)
    lines = [record.getMessage() for record in caplog.records if record.name == "runyard.access"]
    assert any(line.startswith("GET /api/v1/runs?page=1&Authorization=[redacted] 200") for line in lines), lines
    assert any("/api/v1/loads?authorization=[redacted] 401" in line for line in lines), lines
    assert not any(token in line or token[-20:] in line for line in lines), lines


# --- a real api-to-table run ----------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_a_demo_run_through_the_api_makes_a_load_and_a_successful_job(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy_demo()

    run = stack.wait_status(operator, stack.launch(operator, op_id, "destructive")["id"], timeout=60)

    assert run["status"] == "completed", run
    (load,) = all_items(operator, "/api/v1/loads")
    assert load["run_id"] == run["id"]
    assert {table["name"] for table in load["tables"]} == {"employees", "departments", "time_off"}
    assert all(table["rows"] > 0 for table in load["tables"])
    tasks = all_items(operator, f"/api/v1/runs/{run['id']}/tasks", {"search": "pto"})
    assert [task["name"] for task in tasks] == ["Process [time_off]"]
    mc = {task["name"] for task in all_items(operator, f"/api/v1/runs/{run['id']}/tasks", {"search": "mc"})}
    assert mc == {f"Metadata Consolidation [{name}]" for name in ("employees", "departments", "time_off")}
    job = stack.client(stack.token_of("default", "viewer"), header="TOKEN").get(
        "/api/v1/bulk_metadata/job/", params={"name": run["job_name"]}
    )
    assert job.status_code == 200, job.text
    result = json.loads(job.json()["result"])
    assert job.json()["status"] == "successful"
    assert result["updated_objects"] == load["rows"]
    assert result["number_received"] >= load["rows"]
    assert (result["error_objects"], result["error"]) == ([], "")
