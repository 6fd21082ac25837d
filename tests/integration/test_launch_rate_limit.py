"""Launches while a run is active are Rejected runs; past RUNYARD_LAUNCH_REJECTED_PER_MINUTE of them per operation in
the last minute, a launch answers 429 with Retry-After, names the active run and records nothing (RELIABILITY S15).
Over real HTTP (rest_harness.rest_stack): the native API on SQLite and PostgreSQL, spec 003 and the UI on SQLite.
The minute's end is reached by moving the Rejected runs back one minute (the clock moving on), never by sleeping.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runyard.store.tables import runs
from tests.integration.rest_harness import RestStack, long_task, rest_stack
from tests.integration.ui_client import signed_in

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
LIMIT = 3


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url, launch_rejected_per_minute=LIMIT) as running:
        yield running


def run_statuses(stack: RestStack, operation_id: int) -> list[str]:
    with stack.store.read() as conn:
        query = sa.select(runs.c.status).where(runs.c.operation_id == operation_id).order_by(runs.c.id)
        return list(conn.execute(query).scalars())


def a_minute_passes(stack: RestStack, operation_id: int) -> None:
    """The operation's runs one minute older: what the clock moving on would make of them."""
    with stack.store.write() as conn:
        for row in conn.execute(sa.select(runs.c.id, runs.c.created_at).where(runs.c.operation_id == operation_id)):
            older = row.created_at - timedelta(minutes=1)
            conn.execute(runs.update().where(runs.c.id == row.id).values(created_at=older))


def test_past_the_limit_a_launch_answers_429_and_records_nothing(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy("slow", [long_task("wait")])
    active = stack.launch(operator, op_id)["id"]
    for _ in range(LIMIT):
        assert operator.post(f"/api/v1/operations/{op_id}/runs", json={}).status_code == 409

    throttled = operator.post(f"/api/v1/operations/{op_id}/runs", json={})

    assert throttled.status_code == 429, throttled.text
    assert 0 < int(throttled.headers["retry-after"]) <= 60
    detail = throttled.json()["detail"]
    assert f"operation slow cannot start while run {active} is still active" in detail
    assert f"{LIMIT} launches of it were already rejected in the last minute" in detail
    assert "not recorded" in detail
    assert run_statuses(stack, op_id) in (
        ["waiting_to_start"] + ["rejected"] * LIMIT,
        ["running"] + ["rejected"] * LIMIT,
    )
    # Other operations are not held back by this one's limit.
    other = stack.deploy("other", [long_task("wait")])
    stack.launch(operator, other)
    assert operator.post(f"/api/v1/operations/{other}/runs", json={}).status_code == 409


def test_the_limit_slides_with_the_minute(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy("slow", [long_task("wait")])
    stack.launch(operator, op_id)
    for _ in range(LIMIT):
        assert operator.post(f"/api/v1/operations/{op_id}/runs", json={}).status_code == 409
    assert operator.post(f"/api/v1/operations/{op_id}/runs", json={}).status_code == 429

    a_minute_passes(stack, op_id)

    again = operator.post(f"/api/v1/operations/{op_id}/runs", json={})
    assert again.status_code == 409, again.text  # Rejected (and recorded) again, as before the burst
    assert run_statuses(stack, op_id).count("rejected") == LIMIT + 1


@SQLITE_ONLY
def test_spec003_launch_answers_429_in_its_own_shape(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    op_id = stack.deploy("slow", [long_task("wait")])
    active = stack.launch(operator, op_id)
    body = {
        "action": "launch_job",
        "account": "default",
        "environment": "DEV",
        "configuration_type": "tasks",
        "configuration_id": "slow",
    }
    for _ in range(LIMIT):
        assert operator.post("/v1/dag/launch", json=body).status_code == 409

    throttled = operator.post("/v1/dag/launch", json=body)

    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) > 0
    answer = throttled.json()
    assert (set(answer), answer["code"], answer["data"]) == ({"code", "data", "message"}, 429, {})
    assert f"run_id {active['run_key']} is still active" in answer["message"]
    assert len(run_statuses(stack, op_id)) == LIMIT + 1


@SQLITE_ONLY
def test_the_ui_launch_button_shows_the_limit_as_a_flash(stack: RestStack) -> None:
    op_id = stack.deploy("slow", [long_task("wait")])
    client = signed_in(stack, "default", "operator")
    try:
        first = client.post_form("/sources", f"/sources/{op_id}/launch", {"type": "incremental"})
        active = int(first.headers["location"].rsplit("/", 1)[1])
        for _ in range(LIMIT + 1):
            answer = client.post_form("/sources", f"/sources/{op_id}/launch", {"type": "incremental"})
        page = client.follow(answer).text
        found = re.search(r'<p class="flash flash-error"[^>]*>(.*?)</p>', page, re.S)
        assert found is not None, page
        message = html.unescape(found.group(1))
        assert "Too many launches" in message, message
        assert f"run {active} is still active" in message, message
        assert f'href="/runs/{active}"' in page
        assert len(run_statuses(stack, op_id)) == LIMIT + 1
    finally:
        client.close()


def test_a_viewer_is_refused_before_any_limit(stack: RestStack) -> None:
    viewer: httpx.Client = stack.as_user("default", "viewer")
    op_id = stack.deploy("slow", [long_task("wait")])
    assert viewer.post(f"/api/v1/operations/{op_id}/runs", json={}).status_code == 403
    assert run_statuses(stack, op_id) == []
