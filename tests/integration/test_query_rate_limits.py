"""SQL Explorer queries and export starts are limited per account (RELIABILITY S15): past RUNYARD_SQL_QUERIES_PER_MINUTE
or RUNYARD_EXPORTS_PER_MINUTE in the last minute, a query or a page 1 answers 429 with Retry-After and a detail that
names the limit and its setting, and nothing runs or starts; another account is not held back; later pages of an
export already started are not counted. Over real HTTP (rest_harness.rest_stack) on SQLite and PostgreSQL, the UI on
SQLite. The minute's end is reached by moving the counted events back one minute (the clock moving on), never by
sleeping.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runyard.store.tables import export_sessions, rate_limit_events
from tests.integration.rest_harness import RestStack, rest_stack
from tests.integration.ui_client import csrf_of, signed_in

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
LIMIT = 3
BIVIEWS = "/api/integrations/v2/biviews"
TOKEN = "continuation-token"
# Runs for hours if it ever starts (a trillion rows); a 429 must come back at once, without it running.
SLOW = "SELECT count(*) FROM range(1000000000000)"


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url, sql_queries_per_minute=LIMIT, exports_per_minute=LIMIT) as running:
        warehouses = running.runtime.warehouses
        assert warehouses is not None
        warehouses.for_account("default").query("CREATE TABLE people AS SELECT range AS id FROM range(25)")
        warehouses.for_account("other").query("CREATE TABLE orders AS SELECT range AS id FROM range(5)")
        yield running


def sql(client: httpx.Client, text: str = "SELECT 1 AS one", **extra: object) -> httpx.Response:
    return client.post("/api/v1/sql", json={"sql": text, **extra})


def export(client: httpx.Client, view: str = "people", **params: str | int) -> httpx.Response:
    return client.get(f"{BIVIEWS}/{view}", params={"pagenum": 1, "pageSize": 10, **params})


def events(stack: RestStack, kind: str) -> int:
    with stack.store.read() as conn:
        query = sa.select(sa.func.count()).select_from(rate_limit_events).where(rate_limit_events.c.kind == kind)
        return int(conn.execute(query).scalar_one())


def sessions(stack: RestStack) -> list[str]:
    """What every export session exports, sorted."""
    with stack.store.read() as conn:
        return sorted(conn.execute(sa.select(export_sessions.c.object_name)).scalars())


def a_minute_passes(stack: RestStack) -> None:
    """Every counted event one minute older: what the clock moving on would make of them."""
    with stack.store.write() as conn:
        for row in conn.execute(sa.select(rate_limit_events.c.id, rate_limit_events.c.happened_at)):
            older = row.happened_at - timedelta(minutes=1)
            conn.execute(rate_limit_events.update().where(rate_limit_events.c.id == row.id).values(happened_at=older))


def assert_throttled(response: httpx.Response, what: str, setting: str) -> None:
    assert response.status_code == 429, response.text
    assert 0 < int(response.headers["retry-after"]) <= 60
    detail = response.json()["detail"]
    assert f"Too many {what}: account default is limited to {LIMIT} per minute ({setting})" in detail, detail
    assert "this one was not started" in detail, detail
    assert "Traceback" not in detail


# -- SQL Explorer ------------------------------------------------------------------------------------------------


def test_sql_queries_past_the_limit_answer_429_and_do_not_run(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    for _ in range(LIMIT):
        answer = sql(operator)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [[1]]

    throttled = sql(operator, SLOW, query_id="throttled")

    assert_throttled(throttled, "SQL queries", "RUNYARD_SQL_QUERIES_PER_MINUTE")
    assert throttled.elapsed < timedelta(seconds=10)  # it did not run (it would run for hours)
    assert events(stack, "sql_query") == LIMIT  # the refused one is not counted
    # Per account, not per user: the account's administrator is refused too; the other account is not held back.
    assert sql(stack.as_user("default", "administrator")).status_code == 429
    other = sql(stack.as_user("other", "operator"))
    assert other.status_code == 200, other.text
    assert other.json()["rows"] == [[1]]


def test_a_burst_of_queries_lets_exactly_the_limit_through(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    answers: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = sql(operator).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=one) for _ in range(4 * LIMIT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(answers) == [200] * LIMIT + [429] * (3 * LIMIT)  # no 5xx, and the count holds under the burst
    assert events(stack, "sql_query") == LIMIT


def test_the_sql_limit_slides_with_the_minute(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    for _ in range(LIMIT):
        assert sql(operator).status_code == 200
    assert sql(operator).status_code == 429

    a_minute_passes(stack)

    again = sql(operator)
    assert again.status_code == 200, again.text
    assert events(stack, "sql_query") == 1  # the events past the window were deleted as the new one came


@SQLITE_ONLY
def test_the_sql_page_answers_429_with_the_limit_in_words(stack: RestStack) -> None:
    client = signed_in(stack, "default", "operator")
    try:
        for _ in range(LIMIT):
            assert sql(stack.as_user("default", "operator")).status_code == 200
        page = client.get("/sql")
        answer = client.http.post("/sql", data={"csrf_token": csrf_of(page.text), "sql": "SELECT 1"})
        assert answer.status_code == 429, answer.text
        assert 0 < int(answer.headers["retry-after"]) <= 60
        assert "RUNYARD_SQL_QUERIES_PER_MINUTE" in html.unescape(answer.text)
        download = client.http.post("/sql/csv", data={"csrf_token": csrf_of(page.text), "sql": "SELECT 1"})
        assert download.status_code == 429
        assert "Too many SQL queries" in html.unescape(download.text)
        assert events(stack, "sql_query") == LIMIT
    finally:
        client.close()


# -- exports (spec 004) ------------------------------------------------------------------------------------------


def test_exports_past_the_limit_answer_429_and_start_nothing(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    tokens = []
    for _ in range(LIMIT):
        page = export(operator)
        assert page.status_code == 200, page.text
        tokens.append(page.headers[TOKEN])

    throttled = export(operator)

    assert_throttled(throttled, "exports started", "RUNYARD_EXPORTS_PER_MINUTE")
    assert TOKEN not in throttled.headers
    assert sessions(stack) == ["people"] * LIMIT  # no session row for the refused one
    # Later pages of a started export, and the row count, are not counted.
    second = operator.get(f"{BIVIEWS}/people", params={"pagenum": 2}, headers={TOKEN: tokens[0]})
    assert second.status_code == 200, second.text
    assert second.headers["page-number"] == "2"
    assert operator.get(f"{BIVIEWS}/people", params={"count": "true"}).json() == {"count": 25}
    assert events(stack, "export") == LIMIT
    # Another account is not held back.
    other = export(stack.as_user("other", "operator"), "orders")
    assert other.status_code == 200, other.text
    assert sessions(stack) == ["orders"] + ["people"] * LIMIT


def test_the_export_limit_slides_with_the_minute(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    for _ in range(LIMIT):
        assert export(operator).status_code == 200
    assert export(operator).status_code == 429

    a_minute_passes(stack)

    again = export(operator)
    assert again.status_code == 200, again.text
    assert len(sessions(stack)) == LIMIT + 1


@SQLITE_ONLY
def test_the_exports_page_start_past_the_limit_flashes_it_and_starts_nothing(stack: RestStack) -> None:
    operator = stack.as_user("default", "operator")
    for _ in range(LIMIT):
        assert export(operator).status_code == 200
    client = signed_in(stack, "default", "operator")
    try:
        answer = client.post_form("/exports", "/exports", {"view": "people", "pageSize": "10", "outputType": "csv"})
        page = client.follow(answer).text
        found = re.search(r'<p class="flash flash-error"[^>]*>(.*?)</p>', page, re.S)
        assert found is not None, page
        message = html.unescape(found.group(1))
        assert "Not started: Too many exports started" in message, message
        assert "RUNYARD_EXPORTS_PER_MINUTE" in message, message
    finally:
        client.close()
    assert sessions(stack) == ["people"] * LIMIT
