"""Spec 004 over real HTTP: paged exports with continuation tokens, on SQLite and PostgreSQL stores.

Every page is read through the API the way a BI client reads it: page 1 without a token, every later page with the
`continuation-token` header page 1 answered, retrying a page that is not cached yet.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.operations.bi_view.spec import BiViewOperation
from runyard.services.export_format import NOT_CACHED, WILL_NOT_EXIST
from runyard.services.operations import deploy
from tests.integration.rest_harness import RestStack, database, rest_stack, wait_for

BACKENDS = ["sqlite", "postgresql"]
BIVIEWS = "/api/integration/v2/biviews"
STATUS = "/api/integrations/v2/biviews-status"
ROWS = 25_000
TOKEN = "continuation-token"


@dataclass
class World:
    stack: RestStack
    operator: httpx.Client
    other: httpx.Client
    viewer: httpx.Client

    def warehouse_query(self, sql: str, account: str = "default") -> list[tuple[Any, ...]]:
        warehouses = self.stack.runtime.warehouses
        assert warehouses is not None
        return warehouses.for_account(account).query(sql)

    def pages_on_disk(self, task_id: str, account: str = "default") -> list[str]:
        folder = self.stack.settings.home / "staging" / account / ".exports" / task_id.split(".")[0]
        return sorted(path.name for path in folder.glob("page-*")) if folder.exists() else []


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"exports-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as stack,
    ):
        world = World(
            stack,
            stack.as_user("default", "operator"),
            stack.as_user("other", "operator"),
            stack.as_user("default", "viewer"),
        )
        # `events`: one row a minute from 2024-01-01, loaded at that minute; `tiny`: a table without a time column.
        world.warehouse_query(
            f"CREATE TABLE events AS SELECT range AS id, 'name ' || range AS name, range * 0.5 AS amount, "
            f"TIMESTAMP '2024-01-01' + to_minutes(range) AS _runyard_loaded_at FROM range({ROWS})"
        )
        world.warehouse_query("CREATE TABLE tiny AS SELECT * FROM (VALUES (1, 'a,\"b\"'), (2, NULL)) AS t(id, note)")
        world.warehouse_query("CREATE TABLE empty_one AS SELECT 1 AS id WHERE false")
        world.warehouse_query("CREATE TABLE secret AS SELECT 42 AS answer", account="other")
        deploy(
            stack.store,
            [
                BiViewOperation.model_validate(
                    {
                        "configuration_type": "bi-view",
                        "configuration_id": "big-spenders",
                        "account": "default",
                        "view_name": "BIG_SPENDERS_V",
                        "sql": "SELECT id, amount, _runyard_loaded_at AS seen_at FROM events WHERE amount >= 12000 "
                        "-- the last half\n;",
                        "time_column": "seen_at",
                    }
                )
            ],
            stack.runtime.registry,
        )
        yield world


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def page_until_cached(
    client: httpx.Client, url: str, headers: dict[str, str], params: dict[str, Any]
) -> httpx.Response:
    """A page, asked again while the answer is 400 'not yet cached' (the client's documented retry)."""

    def answered() -> httpx.Response | None:
        response = client.get(url, params=params, headers=headers)
        if response.status_code == 400 and response.json()["detail"] == NOT_CACHED:
            return None
        return response

    return wait_for(answered, timeout=60, what=f"{url} page {params.get('pagenum')} to be cached", poll=0.01)


def read_all(client: httpx.Client, view: str, **params: Any) -> tuple[list[bytes], str, httpx.Response]:
    """Every page of an export, in page order; the token and the answer past the last page."""
    first = client.get(f"{BIVIEWS}/{view}", params={"pagenum": 1, **params})
    assert first.status_code == 200, first.text
    token = first.headers[TOKEN]
    pages = [first.content]
    number = 2
    while True:
        response = page_until_cached(client, f"{BIVIEWS}/{view}", {TOKEN: token}, {"pagenum": number})
        if response.status_code == 404:
            return pages, token, response
        assert response.status_code == 200, response.text
        assert response.headers[TOKEN] == token
        pages.append(response.content)
        number += 1


# --- paging ---------------------------------------------------------------------------------------------------------


def test_every_row_comes_exactly_once_in_time_order_and_past_the_last_page_is_404(world: World) -> None:
    pages, token, past = read_all(world.operator, "events", pageSize=1000)

    rows = [row for page in pages for row in csv_rows(page)]
    assert [int(row["id"]) for row in rows] == list(range(ROWS))
    assert list(rows[0]) == ["id", "name", "amount", "_runyard_loaded_at"]  # every page carries the header
    assert all(len(csv_rows(page)) == 1000 for page in pages)
    assert past.json() == {"detail": WILL_NOT_EXIST, "total_pages": 25, "total_rows": ROWS}
    session = world.operator.get(f"{STATUS}/{token}").json()
    assert session["status"] == "COMPLETED"
    assert session["queue"] == "completed"
    assert (session["accumulate"], session["metric"]) == (ROWS, 1000)
    assert session["task_id"] == token
    assert session["query_config"] == {"filter_params": {"fromDate": None, "toDate": None}, "object_name": "events"}


def test_the_last_page_is_short_and_a_page_can_be_read_again(world: World) -> None:
    pages, token, past = read_all(world.operator, "events", pageSize=10_000)

    assert [len(csv_rows(page)) for page in pages] == [10_000, 10_000, 5_000]
    again = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 2}, headers={TOKEN: token})
    assert again.status_code == 200
    assert again.content == pages[1]
    assert past.json()["total_pages"] == 3


def test_the_window_is_from_date_inclusive_to_date_exclusive_on_the_load_time(world: World) -> None:
    window = {"fromDate": "2024-01-01T01:00:00", "toDate": "2024-01-01T02:00:00", "pageSize": 50}
    pages, token, _ = read_all(world.operator, "events", **window)

    ids = [int(row["id"]) for page in pages for row in csv_rows(page)]
    assert ids == list(range(60, 120))
    count = world.operator.get(f"{BIVIEWS}/events", params={**window, "count": "true"})
    assert count.json() == {"count": 60}
    filters = world.operator.get(f"{STATUS}/{token}").json()["query_config"]["filter_params"]
    assert filters == {"fromDate": "2024-01-01 01:00:00", "toDate": "2024-01-01 02:00:00"}


def test_gzip_and_json_pages(world: World) -> None:
    gz, _, _ = read_all(world.operator, "events", pageSize=20_000, outputType="gzip")
    assert [len(csv_rows(gzip.decompress(page))) for page in gz] == [20_000, 5_000]
    response = world.operator.get(f"{BIVIEWS}/tiny", params={"pagenum": 1, "outputType": "json"})
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [{"id": 1, "note": 'a,"b"'}, {"id": 2, "note": None}]
    plain = world.operator.get(f"{BIVIEWS}/tiny", params={"pagenum": 1})
    assert plain.headers["content-type"] == "text/csv; charset=utf-8"
    assert plain.text.splitlines() == ['"id","note"', '1,"a,""b"""', "2,"]


def test_an_empty_export_answers_its_header_alone(world: World) -> None:
    pages, _, past = read_all(world.operator, "empty_one")
    assert pages == [b'"id"\n']
    assert past.json() == {"detail": WILL_NOT_EXIST, "total_pages": 1, "total_rows": 0}


def test_pagenum_zero_answers_204_and_later_pages_need_the_token(world: World) -> None:
    assert world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 0}).status_code == 204
    without = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 2})
    assert without.status_code == 400
    assert TOKEN in without.json()["detail"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 10_001}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"outputType": "xml"}, "outputType"),
        ({"fromDate": "01/02/2024"}, "fromDate"),
        ({"fromDate": "2024-02-01", "toDate": "2024-01-01"}, "toDate"),
        ({"pagenum": -1}, "pagenum"),
    ],
)
def test_bad_parameters_answer_400_naming_them(world: World, params: dict[str, Any], named: str) -> None:
    response = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 1, **params})
    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_a_window_on_a_table_without_a_time_column_is_refused(world: World) -> None:
    response = world.operator.get(f"{BIVIEWS}/tiny", params={"pagenum": 1, "fromDate": "2024-01-01T00:00:00"})
    assert response.status_code == 400
    assert "no time column" in response.json()["detail"]


# --- tokens and accounts --------------------------------------------------------------------------------------------


def test_another_accounts_token_is_404_and_a_tampered_one_400(world: World) -> None:
    first = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 1, "pageSize": 100})
    token = first.headers[TOKEN]

    stolen = world.other.get(f"{BIVIEWS}/events", params={"pagenum": 2}, headers={TOKEN: token})
    assert stolen.status_code == 404
    assert world.other.get(f"{STATUS}/{token}").status_code == 404
    assert world.other.delete(f"{STATUS}/{token}").status_code == 404
    assert all(token != s["task_id"] for queue in world.other.get(STATUS).json().values() for s in queue)

    session_id, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    other_session = session_id[:-1] + ("0" if session_id[-1] != "0" else "1")  # another id, under the same signature
    for forged in (f"{session_id}.{flipped}", session_id, f"{other_session}.{signature}", "not-a-token"):
        assert forged != token
        response = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 2}, headers={TOKEN: forged})
        assert response.status_code == 400, forged
        assert "continuation token is not valid" in response.json()["detail"]
    assert world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 2}, headers={TOKEN: token}).status_code == 200


def test_a_token_only_pages_its_own_view(world: World) -> None:
    token = world.operator.get(f"{BIVIEWS}/tiny", params={"pagenum": 1}).headers[TOKEN]
    response = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 1}, headers={TOKEN: token})
    assert response.status_code == 400
    assert "tiny" in response.json()["detail"]


def test_an_account_exports_only_its_own_tables(world: World) -> None:
    assert world.operator.get(f"{BIVIEWS}/secret", params={"pagenum": 1}).status_code == 404
    assert world.other.get(f"{BIVIEWS}/secret", params={"pagenum": 1}).text == '"answer"\n42\n'


def test_viewers_and_strangers_cannot_export(world: World) -> None:
    assert world.viewer.get(f"{BIVIEWS}/events", params={"pagenum": 1}).status_code == 403
    assert world.viewer.get(STATUS).status_code == 403
    anonymous = httpx.get(f"{world.stack.base_url}{BIVIEWS}/events", params={"pagenum": 1})
    assert anonymous.status_code == 401


def test_the_status_lists_every_session_by_queue_in_the_documents_shape(world: World) -> None:
    token = world.operator.get(f"{BIVIEWS}/tiny", params={"pagenum": 1}).headers[TOKEN]
    wait_for(
        lambda: world.operator.get(f"{STATUS}/{token}").json()["status"] == "COMPLETED",
        timeout=30,
        what="the tiny export to complete",
    )
    listing = world.operator.get(STATUS).json()
    assert list(listing) == ["active", "completed", "draining", "stale"]
    (mine,) = [s for s in listing["completed"] if s["task_id"] == token]
    assert set(mine) == {
        "accumulate",
        "activity_tracker",
        "message",
        "metric",
        "query_config",
        "status",
        "task_id",
    }
    assert set(mine["activity_tracker"]) == {"elapsed_time", "initated_time", "last_activity"}
    assert mine["accumulate"] == 2
    assert mine["metric"] == 2


def test_both_path_spellings_answer(world: World) -> None:
    for prefix in ("/api/integration/v2", "/api/integrations/v2"):
        response = world.operator.get(f"{prefix}/biviews/tiny", params={"pagenum": 1})
        assert response.status_code == 200, prefix
        assert world.operator.get(f"{prefix}/biviews-status").status_code == 200


def test_cancel_drains_the_session_and_deletes_its_pages(world: World) -> None:
    token = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 1, "pageSize": 100}).headers[TOKEN]
    wait_for(lambda: world.pages_on_disk(token), timeout=30, what="pages in the cache")

    canceled = world.operator.delete(f"{STATUS}/{token}")

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "CANCELED"
    assert canceled.json()["queue"] == "draining"
    assert world.pages_on_disk(token) == []
    gone = world.operator.get(f"{BIVIEWS}/events", params={"pagenum": 1}, headers={TOKEN: token})
    assert gone.status_code == 404


def page_files(home: Path) -> list[Path]:
    return sorted((home / "staging").rglob("page-*"))


def test_nothing_in_a_session_answer_leaks_json_unsafe_values(world: World) -> None:
    json.dumps(world.operator.get(STATUS).json())


def test_a_million_rows_page_out_exactly_once_in_order(world: World) -> None:
    world.warehouse_query(
        "CREATE OR REPLACE TABLE million AS SELECT range AS id, md5(range::VARCHAR) AS digest, "
        "TIMESTAMP '2020-01-01' + to_microseconds(range) AS _runyard_loaded_at FROM range(1000000)"
    )
    # Stored in another order than the export's, so that the order comes from the time column.
    world.warehouse_query("CREATE OR REPLACE TABLE million AS SELECT * FROM million ORDER BY digest")

    pages, _, past = read_all(world.operator, "million", pageSize=10_000)

    ids = [int(line.split(b",", 1)[0]) for page in pages for line in page.splitlines()[1:]]
    assert len(pages) == 100
    assert ids == list(range(1_000_000))
    assert past.json()["total_rows"] == 1_000_000


def test_a_declared_view_exports_its_select_filtered_and_ordered_on_its_time_column(world: World) -> None:
    window = {"fromDate": "2024-01-17T16:00:00", "toDate": "2024-01-17T17:00:00"}  # minutes 24000 to 24059
    pages, token, past = read_all(world.operator, "big_spenders_v", pageSize=7, **window)

    rows = [row for page in pages for row in csv_rows(page)]
    assert list(rows[0]) == ["id", "amount", "seen_at"]
    assert [int(row["id"]) for row in rows] == list(range(24_000, 24_060))
    assert past.json()["total_rows"] == 60
    session = world.operator.get(f"{STATUS}/{token}").json()
    assert session["query_config"]["object_name"] == "big_spenders_v"
    assert world.other.get(f"{BIVIEWS}/BIG_SPENDERS_V", params={"pagenum": 1}).status_code == 404
