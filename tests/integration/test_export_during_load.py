"""R22: an export paged out while a new load lands gives the one snapshot page 1 started from.

Spec 004 over real HTTP (tests.integration.rest_harness: create_app served by uvicorn, on SQLite and PostgreSQL
stores; the warehouse is DuckDB). Page 1 starts a session whose background export reads every row in one READ ONLY
transaction and caches the pages. Here that export is held after it has cached page 1 and opened its snapshot, while
a real Data Load (Warehouse.stage then Warehouse.load, as a run's load task does) commits into the same table: new
rows, and new values for some existing keys (a merge). Then the export goes on and every page is read:

- every row of the snapshot comes exactly once, with its values as of page 1: none of the new rows, none of the
  updated values, no duplicates, nothing missing;
- a new export started after the load gives the table as it now is: N + new rows, the updated values.

Two sources: the table itself (ordered by its load time column) and a declared bi-view over another table, without
a time column (so unordered: its rows stream from the table's scan, page by page, across the load's commit).
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pyarrow as pa
import pytest

from runyard.operations.bi_view.spec import BiViewOperation
from runyard.services.export_format import NOT_CACHED, WILL_NOT_EXIST
from runyard.services.operations import deploy
from runyard.staging.layout import Staging
from runyard.warehouse import LoadRequest, TableLoad
from runyard.warehouse.base import LOADED_AT_COLUMN, Warehouse
from tests.integration.rest_harness import RestStack, database, rest_stack, wait_for

BACKENDS = ["sqlite", "postgresql"]
BIVIEWS = "/api/integration/v2/biviews"
TOKEN = "continuation-token"
ROWS = 12_000  # the snapshot: 12 pages of PAGE_SIZE, several of DuckDB's reading batches
PAGE_SIZE = 1_000
NEW_ROWS = 3_000  # the load: ids ROWS .. ROWS + NEW_ROWS - 1 ...
UPDATED = range(0, ROWS, 7)  # ... and new names for these existing ids
HOLD_SECONDS = 30.0  # a bound on how long the export is held, never a speed requirement


@dataclass(frozen=True)
class Source:
    """What is exported (`view`: a table's name or a declared view's) and the table the load lands in."""

    view: str
    table: str


SOURCES = {
    "table": Source("orders", "orders"),
    "view": Source("ORDERS_V", "order_lines"),  # a bi-view without a time column over `order_lines`
}


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"export-load-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as running,
    ):
        deploy(
            running.store,
            [
                BiViewOperation.model_validate(
                    {
                        "configuration_type": "bi-view",
                        "configuration_id": "order-lines",
                        "account": "default",
                        "view_name": "ORDERS_V",
                        "sql": "SELECT id, name FROM order_lines",
                    }
                )
            ],
            running.runtime.registry,
        )
        yield running


def warehouse_of(stack: RestStack) -> Warehouse:
    warehouses = stack.runtime.warehouses
    assert warehouses is not None
    return warehouses.for_account("default")


def load(warehouse: Warehouse, table: str, rows: dict[int, str]) -> None:
    """One Data Load as a run makes it: the rows staged under a new run key, then merged on `id` with their load
    time, and the load record, committed in one transaction."""
    run_key = f"r22-{uuid.uuid4().hex[:12]}"
    warehouse.stage(run_key, table, pa.table({"id": list(rows), "name": list(rows.values())}).to_reader())
    loaded = TableLoad(name=table, mode="merge", primary_key=("id",), loaded_at_column=LOADED_AT_COLUMN)
    result = warehouse.load(LoadRequest(run_key=run_key, operation_id=1, tables=(loaded,)))
    assert not result.already_loaded


class HeldExport:
    """Holds the exports of `staging` before they cache page `number`, until `release()`: the export's snapshot is
    open and its earlier pages are cached meanwhile. `reached` is set once an export is held."""

    def __init__(self, staging: Staging, number: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.number = number
        self.reached = threading.Event()
        self._released = threading.Event()
        write: Callable[[str, str, int, bytes], None] = staging.write_export_page

        def held(account: str, session: str, page: int, data: bytes) -> None:
            if page == self.number:
                self.reached.set()
                assert self._released.wait(HOLD_SECONDS), "the test never released the export"
            write(account, session, page, data)

        monkeypatch.setattr(staging, "write_export_page", held)

    def release(self) -> None:
        self._released.set()


def page(client: httpx.Client, view: str, token: str, number: int) -> httpx.Response:
    """Page `number`, asked again while it is not cached yet (the client's documented retry)."""

    def answered() -> httpx.Response | None:
        response = client.get(f"{BIVIEWS}/{view}", params={"pagenum": number}, headers={TOKEN: token})
        if response.status_code == 400 and response.json()["detail"] == NOT_CACHED:
            return None
        return response

    return wait_for(answered, timeout=60, what=f"page {number} to be cached", poll=0.01)


def rows_of(data: bytes) -> list[tuple[int, str]]:
    return [(int(row["id"]), row["name"]) for row in csv.DictReader(io.StringIO(data.decode()))]


def remaining(client: httpx.Client, view: str, token: str) -> tuple[list[bytes], httpx.Response]:
    """Pages 2, 3, ... until the answer past the last page (returned too)."""
    pages: list[bytes] = []
    number = 2
    while True:
        response = page(client, view, token, number)
        if response.status_code == 404:
            return pages, response
        assert response.status_code == 200, response.text
        pages.append(response.content)
        number += 1


def whole_export(client: httpx.Client, view: str) -> list[tuple[int, str]]:
    first = client.get(f"{BIVIEWS}/{view}", params={"pagenum": 1, "pageSize": PAGE_SIZE})
    assert first.status_code == 200, first.text
    pages, _ = remaining(client, view, first.headers[TOKEN])
    return [row for data in (first.content, *pages) for row in rows_of(data)]


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_pages_read_after_a_load_committed_give_the_snapshot_of_page_1_and_the_next_export_the_new_rows(
    stack: RestStack, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, table = SOURCES[source].view, SOURCES[source].table
    warehouse = warehouse_of(stack)
    snapshot = {key: f"name {key}" for key in range(ROWS)}
    load(warehouse, table, snapshot)
    operator = stack.as_user("default", "operator")
    held = HeldExport(stack.runtime.exports.staging, 2, monkeypatch)

    first = operator.get(f"{BIVIEWS}/{view}", params={"pagenum": 1, "pageSize": PAGE_SIZE})
    assert first.status_code == 200, first.text
    token = first.headers[TOKEN]
    assert held.reached.wait(HOLD_SECONDS), "the export did not go on to page 2"
    new = {key: f"new {key}" for key in range(ROWS, ROWS + NEW_ROWS)}
    load(warehouse, table, new | {key: f"updated {key}" for key in UPDATED})  # commits while the export is open
    (count,) = warehouse.query(f"SELECT count(*) FROM {table}")
    assert count == (ROWS + NEW_ROWS,)
    held.release()
    pages, past = remaining(operator, view, token)

    exported = [row for data in (first.content, *pages) for row in rows_of(data)]
    assert len(exported) == ROWS, f"{len(exported)} rows exported, the snapshot had {ROWS}"
    assert sorted(exported) == sorted(snapshot.items())  # each once, as it was: no new row, no updated value
    assert [len(rows_of(data)) for data in (first.content, *pages)] == [PAGE_SIZE] * (ROWS // PAGE_SIZE)
    assert past.json() == {"detail": WILL_NOT_EXIST, "total_pages": ROWS // PAGE_SIZE, "total_rows": ROWS}

    after = whole_export(operator, view)  # held no more: `held` only holds the first session's page 2 once released
    assert len(after) == ROWS + NEW_ROWS
    assert sorted(after) == sorted((snapshot | new | {key: f"updated {key}" for key in UPDATED}).items())
