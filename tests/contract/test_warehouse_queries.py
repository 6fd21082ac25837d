"""The warehouse contract, reading: `read()` (what the SQL Explorer runs its queries through) and `tables()`.

The slow query is a cross join of two million-row series with a filter no pair passes: a trillion comparisons,
which would run for many minutes on either backend, so a timeout or a stop of a second or less is thousands of
times shorter. Each test that uses it also asserts it ended within a few seconds, so a stop that did not land
would fail. It is portable: both DuckDB and PostgreSQL have generate_series(start, stop) with column aliases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from runyard.warehouse.base import LOADED_AT_COLUMN, Column, LoadRequest, QueryFailed, TableLoad, Warehouse
from tests.contract.conftest import batches, kind_of, replace, stage_load

SLOW = (
    "SELECT count(*) FROM generate_series(1, 1000000) AS a(x), generate_series(1, 1000000) AS b(y) WHERE a.x + b.y < 0"
)
STOPPED_WITHIN = 10.0  # seconds: a stopped slow query ends long before this


@pytest.fixture
def people(warehouse: Warehouse) -> Warehouse:
    """The warehouse with a table `people` of 25 rows: id 0..24, name 'p<id>'."""
    stage_load(warehouse, "people", (replace("people"), {"id": list(range(25)), "name": [f"p{i}" for i in range(25)]}))
    warehouse.drop_staging("people")
    return warehouse


def read(wh: Warehouse, sql: str, limit: int = 100, timeout: float = 30.0) -> list[tuple[object, ...]]:
    return wh.read(sql, limit=limit, timeout_seconds=timeout).rows


def described(columns: tuple[Column, ...]) -> list[tuple[str, str]]:
    return [(column.name, kind_of(column.type)) for column in columns]


# -- rows, limit, truncated -------------------------------------------------------------------------------------


def test_a_select_returns_its_columns_and_rows(people: Warehouse) -> None:
    result = people.read("SELECT id, name FROM people ORDER BY id", limit=100, timeout_seconds=30)

    assert described(result.columns) == [("id", "integer"), ("name", "text")]
    assert result.rows == [(i, f"p{i}") for i in range(25)]
    assert result.truncated is False


@pytest.mark.parametrize(("limit", "truncated"), [(1, True), (10, True), (24, True), (25, False), (26, False)])
def test_the_limit_keeps_the_first_rows_and_says_when_there_were_more(
    people: Warehouse, limit: int, truncated: bool
) -> None:
    result = people.read("SELECT id FROM people ORDER BY id", limit=limit, timeout_seconds=30)

    assert result.rows == [(i,) for i in range(min(limit, 25))]
    assert result.truncated is truncated


def test_an_empty_result_keeps_its_columns(people: Warehouse) -> None:
    result = people.read("SELECT id, name FROM people WHERE id < 0", limit=10, timeout_seconds=30)

    assert [column.name for column in result.columns] == ["id", "name"]
    assert result.rows == []
    assert result.truncated is False


def test_with_queries_comments_and_a_trailing_semicolon_are_queries(people: Warehouse) -> None:
    assert read(people, "WITH few AS (SELECT * FROM people WHERE id < 3) SELECT count(*) AS n FROM few") == [(3,)]
    assert read(people, "-- a comment\nSELECT 1 AS one;  ") == [(1,)]
    assert read(people, "select max(id) from people") == [(24,)]


def test_explain_returns_the_plan(people: Warehouse) -> None:
    rows = read(people, "EXPLAIN SELECT * FROM people WHERE id > 3")

    assert rows
    assert "people" in " ".join(str(value) for row in rows for value in row)


def test_duplicate_column_names_are_kept_in_order(people: Warehouse) -> None:
    result = people.read(
        "SELECT 1 AS a, 'two' AS a, p.id AS a FROM people AS p WHERE p.id = 7", limit=10, timeout_seconds=30
    )

    assert described(result.columns) == [("a", "integer"), ("a", "text"), ("a", "integer")]
    assert result.rows == [(1, "two", 7)]


# -- refusals and errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE z AS SELECT 1 AS one",
        "INSERT INTO people VALUES (99, 'x')",
        "UPDATE people SET name = 'x'",
        "DELETE FROM people",
        "DROP TABLE people",
        "ALTER TABLE people ADD COLUMN z INTEGER",
        "CREATE VIEW z AS SELECT 1 AS one",
        "SELECT 1; DROP TABLE people",
        "SELECT 1; SELECT 2",
        "WITH gone AS (DELETE FROM people RETURNING id) SELECT count(*) FROM gone",
        "",
        "  -- nothing but a comment",
    ],
)
def test_only_a_query_that_reads_runs(people: Warehouse, sql: str) -> None:
    with pytest.raises(QueryFailed) as failed:
        people.read(sql, limit=10, timeout_seconds=30)

    assert failed.value.interrupted is False
    assert str(failed.value)
    assert people.count("people") == 25
    assert people.query("SELECT count(*) FROM people WHERE name = 'x'") == [(0,)]
    assert [(table.name, [column.name for column in table.columns]) for table in people.tables()] == [
        ("people", ["id", "name"])
    ]


def test_a_select_that_would_write_is_refused(people: Warehouse) -> None:
    """A SELECT that writes (advancing a sequence) fails: in a read-only transaction, or for want of the right."""
    people.query("CREATE SEQUENCE ids")

    with pytest.raises(QueryFailed) as failed:
        people.read("SELECT nextval('ids')", limit=10, timeout_seconds=30)

    assert failed.value.interrupted is False
    assert people.query("SELECT nextval('ids')") == [(1,)]


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT nam FROM people", "nam"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELECT no_such_function(id) FROM people", "no_such_function"),
        ("SELECT CAST(name || 'abc' AS INTEGER) FROM people", "abc"),  # fails while it runs, not before
    ],
)
def test_sql_the_database_rejects_fails_with_its_message(people: Warehouse, sql: str, named: str) -> None:
    with pytest.raises(QueryFailed, match=named) as failed:
        people.read(sql, limit=10, timeout_seconds=30)

    assert failed.value.reason == str(failed.value)
    assert failed.value.interrupted is False
    assert read(people, "SELECT count(*) FROM people") == [(25,)]  # the warehouse answers as before


def test_a_syntax_error_names_its_line(people: Warehouse) -> None:
    with pytest.raises(QueryFailed, match=r"(?i)syntax error") as failed:
        people.read("SELECT 1\nFROM people\nWHER id = 1", limit=10, timeout_seconds=30)

    assert failed.value.line == 3
    assert failed.value.interrupted is False


# -- timeout and interrupt ----------------------------------------------------------------------------------------


def ends_in_time(call: Callable[[], object]) -> tuple[QueryFailed, float]:
    started = time.monotonic()
    with pytest.raises(QueryFailed) as failed:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < STOPPED_WITHIN, f"the query ran {elapsed:.1f} s"
    return failed.value, elapsed


def test_a_query_past_its_timeout_is_stopped(people: Warehouse) -> None:
    error, elapsed = ends_in_time(lambda: people.read(SLOW, limit=10, timeout_seconds=0.5))

    assert error.interrupted is True
    assert "0.5 s" in str(error)
    assert elapsed >= 0.5
    assert read(people, "SELECT count(*) FROM people") == [(25,)]  # the warehouse answers as before


def test_a_tiny_timeout_stops_the_query_even_before_it_starts(people: Warehouse) -> None:
    for _ in range(5):
        error, _ = ends_in_time(lambda: people.read(SLOW, limit=10, timeout_seconds=0.001))
        assert error.interrupted is True


def test_on_start_gives_a_stop_that_works_from_another_thread(people: Warehouse) -> None:
    handed: list[Callable[[], None]] = []
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            people.read(SLOW, limit=10, timeout_seconds=60, on_start=handed.append)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + STOPPED_WITHIN
    while not handed:
        assert time.monotonic() < deadline, "read() never called on_start"
        time.sleep(0.01)
    time.sleep(0.2)  # the query is running now
    started = time.monotonic()
    handed[0]()
    thread.join(STOPPED_WITHIN)

    assert not thread.is_alive(), "the stopped query is still running"
    assert time.monotonic() - started < STOPPED_WITHIN
    assert len(outcome) == 1, outcome
    assert isinstance(outcome[0], QueryFailed), outcome
    assert outcome[0].interrupted is True
    assert "longer than" not in str(outcome[0])  # a stop, not a timeout
    assert read(people, "SELECT count(*) FROM people") == [(25,)]


def test_a_stop_asked_before_the_query_starts_still_stops_it(people: Warehouse) -> None:
    error, _ = ends_in_time(lambda: people.read(SLOW, limit=10, timeout_seconds=60, on_start=lambda stop: stop()))

    assert error.interrupted is True


def test_a_quick_query_is_not_reported_as_timed_out(people: Warehouse) -> None:
    for _ in range(20):
        assert people.read("SELECT count(*) FROM people", limit=1, timeout_seconds=30).rows == [(25,)]


def test_reads_run_side_by_side(people: Warehouse) -> None:
    """A long query does not hold another reader back."""
    handed: list[Callable[[], None]] = []
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            people.read(SLOW, limit=10, timeout_seconds=60, on_start=handed.append)
        except QueryFailed as error:
            errors.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        deadline = time.monotonic() + STOPPED_WITHIN
        while not handed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert people.read("SELECT count(*) FROM people", limit=1, timeout_seconds=5).rows == [(25,)]
    finally:
        while not handed:
            time.sleep(0.01)
        handed[0]()
        thread.join(STOPPED_WITHIN)
    assert [error.interrupted for error in errors if isinstance(error, QueryFailed)] == [True]


# -- tables() -------------------------------------------------------------------------------------------------


def test_tables_lists_tables_and_views_with_their_columns_and_hides_runyards_own(people: Warehouse) -> None:
    people.query("CREATE VIEW adults AS SELECT id, name FROM people WHERE id > 17")
    people.query('CREATE TABLE "Mixed Case" ("Odd ""name""" INTEGER, ts TIMESTAMP)')
    people.stage("run1", "people", batches({"id": [1], "name": ["x"]}))  # staged, not loaded: hidden
    people.load(LoadRequest(run_key="run0", operation_id=1, tables=()))  # a load record
    stage_load(people, "run3", (TableLoad(name="marks", mode="merge", high_watermark="9"), {"m": [1]}))  # a watermark
    people.stage("run2", "later", batches({"x": [1]}))
    assert people.staged_runs() >= {"run1", "run2"}

    listed = {table.name: table for table in people.tables()}

    assert list(listed) == ["adults", "marks", "Mixed Case", "people"]  # by name, case-insensitively
    assert listed["adults"].kind == "view"
    assert described(listed["adults"].columns) == [("id", "integer"), ("name", "text")]
    assert listed["people"].kind == "table"
    assert described(listed["people"].columns) == [("id", "integer"), ("name", "text")]
    assert listed["Mixed Case"].kind == "table"
    assert described(listed["Mixed Case"].columns) == [('Odd "name"', "integer"), ("ts", "timestamp")]


def test_tables_shows_the_loaded_at_column_of_loaded_tables(warehouse: Warehouse) -> None:
    stage_load(
        warehouse, "r1", (TableLoad(name="loaded", mode="replace", loaded_at_column=LOADED_AT_COLUMN), {"id": [1, 2]})
    )

    listed = {table.name: table for table in warehouse.tables()}

    assert described(listed["loaded"].columns) == [("id", "integer"), (LOADED_AT_COLUMN, "timestamp")]
    sql = f"SELECT id, {LOADED_AT_COLUMN} IS NOT NULL AS stamped FROM loaded ORDER BY id"
    assert read(warehouse, sql) == [(1, True), (2, True)]


def test_an_empty_warehouse_has_no_tables(warehouse: Warehouse) -> None:
    assert warehouse.tables() == []
    assert warehouse.staged_runs() == set()
