"""The Idempotency-Key of launches and retries over real HTTP: the same request sent again answers the run the first
one made, on both stores; another request with the key is refused; keys are per account and last a day."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.services.launch_keys import KEY_TTL
from runyard.store.tables import launch_keys
from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, all_items, long_task, rest_stack

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SENDERS = 8
FAILING = [{"name": "boom", "executor": "fail", "max_attempts": 1, "params": {"message": "boom", "seconds": 0.2}}]


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


def launch(client: httpx.Client, operation_id: int, key: str | None, run_type: str = "incremental") -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(f"/api/v1/operations/{operation_id}/runs", json={"type": run_type}, headers=headers)


def run_ids(client: httpx.Client, operation_id: int) -> list[int]:
    return [run["id"] for run in all_items(client, "/api/v1/runs", {"operation": operation_id})]


def test_a_launch_sent_again_with_its_key_answers_the_same_run_and_records_nothing_more(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    slow = stack.deploy("slow", [long_task("wait")])
    other = stack.deploy("other", [long_task("wait")])

    first = launch(operator, slow, "key-1")
    again = launch(operator, slow, "key-1")

    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["trigger"] == "api"
    assert run_ids(operator, slow) == [first.json()["id"]]  # no second run, and no Rejected one

    for sent in (launch(operator, slow, "key-1", "destructive"), launch(operator, other, "key-1")):
        assert sent.status_code == 409, sent.text
        assert sent.json()["detail"] == (
            f"this Idempotency-Key was already sent with another request (the incremental launch of operation "
            f"{slow}); send a new key for a new request"
        )
    assert run_ids(operator, other) == []

    rejected = launch(operator, slow, "key-2")  # a new key is a new launch: Rejected, the first being active
    rejected_again = launch(operator, slow, "key-2")
    assert (rejected.status_code, rejected_again.status_code) == (409, 409), (rejected.text, rejected_again.text)
    assert rejected_again.json()["run"]["id"] == rejected.json()["run"]["id"]
    assert run_ids(operator, slow) == [rejected.json()["run"]["id"], first.json()["id"]]

    elsewhere = stack.deploy("slow", [long_task("wait")], account="other")
    theirs = launch(stack.as_user("other", "operator"), elsewhere, "key-1")  # keys belong to an account
    assert theirs.status_code == 202, theirs.text
    assert theirs.json()["id"] != first.json()["id"]


def test_launches_sent_at_once_with_one_key_make_one_run(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    slow = stack.deploy("slow", [long_task("wait")])
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    start = threading.Barrier(SENDERS)

    def send() -> None:
        with stack.as_user("default", "operator") as client:
            start.wait()
            answer = launch(client, slow, "together")
        with lock:
            answers.append(answer)

    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)

    assert [answer.status_code for answer in answers] == [202] * SENDERS, [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert run_ids(operator, slow) == [answers[0].json()["id"]]


@SQLITE_ONLY
def test_a_retry_sent_again_with_its_key_answers_the_same_retry(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    failing = stack.deploy("failing", FAILING)
    failed = stack.wait_status(operator, stack.launch(operator, failing)["id"])
    assert failed["status"] == "failed"

    retry = f"/api/v1/runs/{failed['id']}/retry"
    first = operator.post(retry, headers={"Idempotency-Key": "retry-1"})
    again = operator.post(retry, headers={"Idempotency-Key": "retry-1"})  # no longer the latest run: replayed anyway

    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["retry_of"] == failed["id"]
    refused = operator.post(retry, headers={"Idempotency-Key": "retry-2"})  # a new retry of a run that is not latest
    assert refused.status_code == 409, refused.text
    assert run_ids(operator, failing) == [first.json()["id"], failed["id"]]


@SQLITE_ONLY
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey"])
def test_a_key_that_is_not_1_to_255_printable_characters_is_refused(stack: RestStack, key: str) -> None:
    operator = stack.as_user("default", "operator")
    slow = stack.deploy("slow", [long_task("wait")])

    sent = launch(operator, slow, key)

    assert sent.status_code == 400, sent.text
    assert "Idempotency-Key" in sent.json()["detail"]
    assert run_ids(operator, slow) == []


@SQLITE_ONLY
def test_a_key_older_than_a_day_launches_anew(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    quick = stack.deploy("quick", [sleep_task("nap", 0.1)])
    first: dict[str, Any] = launch(operator, quick, "daily").json()
    assert stack.wait_status(operator, first["id"])["status"] == "completed"

    with stack.store.write() as conn:  # a day and a minute go by
        stored = conn.execute(sa.select(launch_keys.c.created_at).where(launch_keys.c.key == "daily")).scalar_one()
        conn.execute(
            launch_keys.update()
            .where(launch_keys.c.key == "daily")
            .values(created_at=stored - KEY_TTL - timedelta(minutes=1))
        )
    later = launch(operator, quick, "daily")

    assert later.status_code == 202, later.text
    assert later.json()["id"] != first["id"]
    with stack.store.read() as conn:
        kept = conn.execute(sa.select(launch_keys.c.run_id).where(launch_keys.c.key == "daily")).scalars().all()
    assert kept == [later.json()["id"]]  # the expired key was replaced
