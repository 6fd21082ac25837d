"""What a new user tripped on (issue 17), over real HTTP on loopback, on both runs databases:

- a single run answers its message_count, as the list does (and so do cancel and launch);
- spec 001's and spec 002's paths answer with and without their trailing slash, never by a redirect;
- no redirect of the app hands a `?Authorization=` token back in its Location;
- a job's number_received (spec 002) counts what a hand-written `tasks` run's tasks received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, all_items, database, long_task, rest_stack


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    home = tmp_path_factory.mktemp(f"tripped-{request.param}")
    with (
        database(request.param, home, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(home, url) as started,
    ):
        yield started


@pytest.fixture(scope="module")
def admin(stack: RestStack) -> httpx.Client:
    return stack.as_user("default", "administrator")


def _job(client: httpx.Client, run_id: int) -> dict[str, Any]:
    response = client.get("/api/v1/bulk_metadata/job/", params={"id": run_id})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = json.loads(response.json()["result"])
    return result


# --- 1. message_count -----------------------------------------------------------------------------------------------


def test_a_single_run_answers_its_message_count_as_the_list_does(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy(
        "talkative",
        [
            {"name": "warn", "executor": "fail", "required": False, "max_attempts": 1, "params": {"message": "a"}},
            {"name": "warn too", "executor": "fail", "required": False, "max_attempts": 1, "params": {"message": "b"}},
            sleep_task("work", 0.01),
        ],
    )
    launched = stack.launch(admin, operation)
    assert launched["message_count"] == 0  # a new run: nothing said yet

    run = stack.wait_status(admin, launched["id"])

    listed = [item for item in all_items(admin, "/api/v1/runs", {"operation": operation}) if item["id"] == run["id"]]
    assert run["status"] == "completed_with_errors", run
    assert run["message_count"] == listed[0]["message_count"] == 2


def test_cancel_answers_the_runs_message_count(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy(
        "cancel-count",
        [
            {"name": "warn", "executor": "fail", "required": False, "max_attempts": 1, "params": {"message": "a"}},
            long_task("hold"),
        ],
    )
    run = stack.launch(admin, operation)
    stack.wait_task(admin, run["id"], "warn", "failed")

    canceled = admin.post(f"/api/v1/runs/{run['id']}/cancel")

    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["message_count"] == 1
    stack.wait_status(admin, run["id"])


# --- 2. trailing slashes and redirects ------------------------------------------------------------------------------


def test_spec_001_and_002_paths_answer_with_and_without_their_slash(stack: RestStack, admin: httpx.Client) -> None:
    run = stack.wait_status(admin, stack.launch(admin, stack.deploy("slashes", [sleep_task("only", 0.01)]))["id"])
    token = stack.token_of("default", "administrator")
    client = stack.client()  # the token only in the query string, as spec 001 allows
    query = f"Authorization=Bearer%20{token}"

    for path in (
        "/etl/rest/v1/tasks",
        "/etl/rest/v1/tasks/",
        f"/etl/rest/v1/tasks/{run['id']}",
        f"/etl/rest/v1/tasks/{run['id']}/",
        f"/api/v1/bulk_metadata/job?id={run['id']}",
        f"/api/v1/bulk_metadata/job/?id={run['id']}",
    ):
        target = f"{path}{'&' if '?' in path else '?'}{query}"
        response = client.get(target, follow_redirects=False)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        assert "location" not in response.headers, path
    typed = client.get(f"/etl/rest/v1/tasks?type=stream&{query}", follow_redirects=False)
    assert (typed.status_code, typed.json()) == (200, [])
    by_header = admin.get("/etl/rest/v1/tasks", params={"type": "bogus"}, follow_redirects=False)
    assert by_header.status_code == 400, by_header.text  # the same route: its own check, no redirect


def test_no_redirect_echoes_a_query_token(stack: RestStack) -> None:
    token = stack.token_of("default", "administrator")
    client = stack.client()

    slash = client.get(f"/api/v1/runs/?page=2&Authorization=Bearer%20{token}", follow_redirects=False)
    assert slash.status_code == 307, slash.text  # Starlette's slash redirect: still there, without the token
    assert slash.headers["location"].endswith("/api/v1/runs?page=2"), slash.headers["location"]
    cased = client.get(f"/api/v1/runs/?authorization=Bearer%20{token}", follow_redirects=False)
    assert cased.status_code == 307
    assert token not in cased.headers["location"]
    assert "authorization" not in cased.headers["location"].lower()

    ui = client.get(f"/runs?status=failed&Authorization=Bearer%20{quote(token)}", follow_redirects=False)
    assert ui.status_code == 303, ui.text  # to the login page, with where to come back to
    assert token not in ui.headers["location"]
    assert "authorization" not in ui.headers["location"].lower()
    assert "status" in ui.headers["location"]


# --- 5. number_received for any run type ----------------------------------------------------------------------------


def test_a_tasks_runs_job_counts_the_records_its_tasks_received(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy(
        "hand-written",
        [
            sleep_task("Fetch [a]", 0.01, units=2, params={"records_per_unit": 5}),
            sleep_task("Fetch [b]", 0.01, units=3, params={"records_per_unit": 2}),
            sleep_task(
                "Data Load",
                0.01,
                stage="load",
                params={"records_per_unit": 8, "table": "things"},
                depends_on=["Fetch [a]", "Fetch [b]"],
            ),
        ],
    )
    run = stack.wait_status(admin, stack.launch(admin, operation)["id"])
    assert run["status"] == "completed", run

    result = _job(admin, run["id"])

    assert result["number_received"] == 2 * 5 + 3 * 2  # the load's own records are what it updated, not received
    assert result["updated_objects"] == 2 * 8


def test_a_run_with_extract_tasks_counts_only_those(stack: RestStack, admin: httpx.Client) -> None:
    operation = stack.deploy(
        "staged",
        [
            sleep_task("Process [x]", 0.01, units=2, stage="extract", params={"records_per_unit": 4}),
            sleep_task("x Consolidation", 0.01, units=2, params={"records_per_unit": 4}, depends_on=["Process [x]"]),
        ],
    )
    run = stack.wait_status(admin, stack.launch(admin, operation)["id"])

    assert _job(admin, run["id"])["number_received"] == 8  # the consolidation counts the same records again
