"""The warehouse contract, exporting: `count_rows()` and `export()`, what the export sessions page out.

An export reads a table, or a declared view's SELECT, from one snapshot: in pages of exactly the size asked (the
last one shorter), ordered by its time column and filtered on it to [from_time, to_time) when those are given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from runyard.warehouse.base import ExportQuery, LoadRequest, QueryFailed, TableLoad, Warehouse
from tests.contract.conftest import batches, kind_of, stage_load

ROWS = 5_000  # several of DuckDB's reading batches (2,048 rows)
START = datetime(2024, 3, 1)
NULL_TIMES = 3  # the events with no time
LOAD_SECONDS = 60.0  # a bound on how long a load may take beside an open export, never a speed requirement


def moment(i: int) -> datetime:
    return START + timedelta(minutes=i)


@pytest.fixture
def events(warehouse: Warehouse) -> Warehouse:
    """`events`: ids 0..ROWS-1 staged in reverse order, `ts` = START + id minutes, but NULL for the last
    NULL_TIMES ids; `name` = 'e<id>'."""
    ids = list(reversed(range(ROWS)))
    times = [None if i >= ROWS - NULL_TIMES else moment(i) for i in ids]
    columns = {"id": ids, "ts": pa.array(times, pa.timestamp("us")), "name": [f"e{i}" for i in ids]}
    stage_load(warehouse, "r0", (TableLoad(name="events", mode="merge", primary_key=("id",)), columns))
    warehouse.drop_staging("r0")
    return warehouse


def exported(wh: Warehouse, query: ExportQuery, page_rows: int = 1_000) -> list[pa.Table]:
    with wh.export(query) as reader:
        return list(reader.pages(page_rows))


def ids(pages: list[pa.Table]) -> list[int]:
    return [value for page in pages for value in page.column("id").to_pylist()]


# -- counting -------------------------------------------------------------------------------------------------------


def test_count_rows_counts_the_table_or_its_time_window(events: Warehouse) -> None:
    assert events.count_rows(ExportQuery(source="events")) == ROWS
    assert events.count_rows(ExportQuery(source="events", time_column="ts")) == ROWS
    assert events.count_rows(ExportQuery("events", time_column="ts", from_time=moment(10), to_time=moment(20))) == 10
    assert events.count_rows(ExportQuery("events", time_column="ts", from_time=moment(ROWS - 10))) == 10 - NULL_TIMES
    assert events.count_rows(ExportQuery("events", time_column="ts", to_time=moment(5))) == 5


def test_count_rows_of_a_views_select(events: Warehouse) -> None:
    query = ExportQuery(source="odd", sql="SELECT id, ts FROM events WHERE id % 2 = 1", time_column="ts")

    assert events.count_rows(query) == ROWS // 2
    assert events.count_rows(ExportQuery("odd", query.sql, "ts", from_time=moment(0), to_time=moment(10))) == 5


# -- pages ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page_rows", "sizes"),
    [
        (1_000, [1_000] * 5),
        (3_000, [3_000, 2_000]),
        (2_049, [2_049, 2_049, 902]),
        (ROWS, [ROWS]),
        (ROWS + 1, [ROWS]),
        (7, [7] * (ROWS // 7) + [ROWS % 7]),
    ],
)
def test_pages_are_exactly_the_size_asked(events: Warehouse, page_rows: int, sizes: list[int]) -> None:
    pages = exported(events, ExportQuery(source="events"), page_rows)

    assert [page.num_rows for page in pages] == sizes
    assert sorted(ids(pages)) == list(range(ROWS))


def test_an_export_is_ordered_by_its_time_column_nulls_first(events: Warehouse) -> None:
    with events.export(ExportQuery(source="events", time_column="ts")) as reader:
        assert [column.name for column in reader.columns] == ["id", "ts", "name"]
        assert [kind_of(column.type) for column in reader.columns] == ["integer", "timestamp", "text"]
        pages = list(reader.pages(1_000))

    exported_ids = ids(pages)
    assert sorted(exported_ids[:NULL_TIMES]) == list(range(ROWS - NULL_TIMES, ROWS))
    assert exported_ids[NULL_TIMES:] == list(range(ROWS - NULL_TIMES))
    assert pages[0].column("name").to_pylist()[NULL_TIMES] == "e0"


def test_an_export_keeps_the_time_window(events: Warehouse) -> None:
    query = ExportQuery(source="events", time_column="ts", from_time=moment(100), to_time=moment(2_600))

    pages = exported(events, query, 1_000)

    assert ids(pages) == list(range(100, 2_600))
    assert [page.num_rows for page in pages] == [1_000, 1_000, 500]
    assert events.count_rows(query) == 2_500


def test_an_export_of_a_views_select(events: Warehouse) -> None:
    sql = "SELECT id, name FROM events WHERE id < 10\n-- a closing comment"
    pages = exported(events, ExportQuery(source="first ten", sql=sql))
    assert sorted(ids(pages)) == list(range(10))
    assert pages[0].column_names == ["id", "name"]

    timed = ExportQuery("first ten", "SELECT id, ts FROM events WHERE id < 10", "ts", moment(3), moment(6))
    assert ids(exported(events, timed)) == [3, 4, 5]


def test_an_export_without_rows_has_no_page_and_keeps_its_columns(events: Warehouse) -> None:
    query = ExportQuery(source="events", time_column="ts", from_time=moment(ROWS * 2))

    with events.export(query) as reader:
        assert [column.name for column in reader.columns] == ["id", "ts", "name"]
        assert list(reader.pages(100)) == []
    assert events.count_rows(query) == 0


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(ExportQuery(source="nowhere"), id="unknown table"),
        pytest.param(ExportQuery("events", time_column="no_such_column", from_time=START), id="unknown time column"),
        pytest.param(ExportQuery(source="events", from_time=START), id="a window without a time column"),
        pytest.param(ExportQuery(source="v", sql="SELECT nam FROM events"), id="a view's bad SQL"),
        pytest.param(ExportQuery(source="v", sql="DELETE FROM events"), id="a view that writes"),
        pytest.param(ExportQuery(source="v", sql="SELECT 1; DROP TABLE events"), id="two statements"),
    ],
)
def test_what_cannot_be_exported_fails_with_query_failed(events: Warehouse, query: ExportQuery) -> None:
    with pytest.raises(QueryFailed):
        events.count_rows(query)
    with pytest.raises(QueryFailed), events.export(query) as reader:
        list(reader.pages(100))
    assert events.count("events") == ROWS


def test_interrupt_from_another_thread_stops_an_export(warehouse: Warehouse) -> None:
    n = 200_000
    warehouse.stage("r0", "big", batches({"id": list(range(n))}))
    warehouse.load(LoadRequest("r0", 1, (TableLoad(name="big", mode="replace"),)))
    read = 0

    def rest_of(pages: Iterator[pa.Table]) -> int:
        return sum(page.num_rows for page in pages)

    with warehouse.export(ExportQuery(source="big")) as reader:
        pages = reader.pages(1_000)
        read += next(pages).num_rows
        stopping = threading.Thread(target=reader.interrupt)
        stopping.start()
        stopping.join(10)
        with pytest.raises(QueryFailed) as failed:
            read += rest_of(pages)

    assert failed.value.interrupted is True
    assert read < n
    assert warehouse.count("big") == n  # the warehouse answers as before


# -- one snapshot ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("time_column", ["ts", None], ids=["ordered", "unordered"])
def test_an_export_reads_one_snapshot_while_a_load_commits(events: Warehouse, time_column: str | None) -> None:
    """A merge commits new rows and new values for existing keys after the first page was read: the export gives
    the table as it was when it started, every row once; the next export gives the table as it is now."""
    new = ROWS + 1_000
    updated = list(range(0, ROWS, 7))
    columns = {
        "id": list(range(ROWS, new)) + updated,
        "ts": pa.array([moment(i) for i in range(ROWS, new)] + [moment(i) for i in updated], pa.timestamp("us")),
        "name": ["new"] * (new - ROWS) + ["updated"] * len(updated),
    }
    events.stage("r1", "events", batches(columns))
    request = LoadRequest("r1", 1, (TableLoad(name="events", mode="merge", primary_key=("id",)),))
    query = ExportQuery(source="events", time_column=time_column)
    failures: list[BaseException] = []

    def load() -> None:
        try:
            events.load(request)
        except BaseException as error:
            failures.append(error)

    with events.export(query) as reader:
        pages: Iterator[pa.Table] = reader.pages(1_000)
        first = next(pages)
        loading = threading.Thread(target=load)
        loading.start()
        loading.join(LOAD_SECONDS)
        assert not loading.is_alive(), "the load waited for the export to end"
        assert failures == []
        assert events.has_load("r1")
        rest = list(pages)

    snapshot = [first, *rest]
    assert [page.num_rows for page in snapshot] == [1_000] * (ROWS // 1_000)
    assert sorted(ids(snapshot)) == list(range(ROWS))
    names = [name for page in snapshot for name in page.column("name").to_pylist()]
    assert sorted(names) == sorted(f"e{i}" for i in range(ROWS))

    after = exported(events, query)
    assert sorted(ids(after)) == list(range(new))
    assert events.count_rows(query) == new
    updated_now = sorted(
        i
        for page in after
        for i, name in zip(page["id"].to_pylist(), page["name"].to_pylist(), strict=True)
        if name == "updated"
    )
    assert updated_now == updated
