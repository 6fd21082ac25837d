"""Warehouse.read and Warehouse.tables on a real DuckDB file: what the SQL Explorer runs its queries through.

The slow query is a cross join of two million-row ranges with a filter no pair passes: a trillion comparisons.
Measured on this machine (2 cores), a 30,000 x 30,000 join of the same shape takes ~2.3 s, so the trillion
would take over half an hour: a timeout or a stop of a second or less is tens of thousands of times shorter.
Each test that uses it also asserts it ended within a few seconds, so a stop that did not land would fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from runyard.warehouse import LoadRequest, TableLoad
from runyard.warehouse.base import Column, QueryFailed
from runyard.warehouse.duckdb import DuckDBWarehouse

SLOW = "SELECT count(*) FROM range(1_000_000) a, range(1_000_000) b WHERE a.range + b.range < 0"
STOPPED_WITHIN = 10.0  # seconds: a stopped slow query ends long before this (it would take over 30 minutes)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "acme.duckdb")
    warehouse.query("CREATE TABLE people AS SELECT range AS id, 'p' || range AS name FROM range(25)")
    yield warehouse
    warehouse.close()


def read(wh: DuckDBWarehouse, sql: str, limit: int = 100, timeout: float = 30.0) -> tuple[list[Column], list[tuple]]:
    result = wh.read(sql, limit=limit, timeout_seconds=timeout)
    return list(result.columns), result.rows


# -- rows, limit, truncated -------------------------------------------------------------------------------------


def test_a_select_returns_its_columns_and_rows(wh: DuckDBWarehouse) -> None:
    result = wh.read("SELECT id, name FROM people ORDER BY id", limit=100, timeout_seconds=30)
    assert result.columns == (Column("id", "BIGINT"), Column("name", "VARCHAR"))
    assert result.rows == [(i, f"p{i}") for i in range(25)]
    assert result.truncated is False


@pytest.mark.parametrize(("limit", "truncated"), [(10, True), (24, True), (25, False), (26, False)])
def test_the_limit_keeps_the_first_rows_and_says_when_there_were_more(
    wh: DuckDBWarehouse, limit: int, truncated: bool
) -> None:
    result = wh.read("SELECT id FROM people ORDER BY id", limit=limit, timeout_seconds=30)
    assert result.rows == [(i,) for i in range(min(limit, 25))]
    assert result.truncated is truncated


def test_an_empty_result_keeps_its_columns(wh: DuckDBWarehouse) -> None:
    result = wh.read("SELECT id, name FROM people WHERE id < 0", limit=10, timeout_seconds=30)
    assert [column.name for column in result.columns] == ["id", "name"]
    assert result.rows == []
    assert result.truncated is False


def test_with_values_from_first_and_a_trailing_semicolon_are_queries(wh: DuckDBWarehouse) -> None:
    assert read(wh, "WITH few AS (SELECT * FROM people WHERE id < 3) SELECT count(*) AS n FROM few")[1] == [(3,)]
    assert read(wh, "VALUES (1, 'a'), (2, 'b')")[1] == [(1, "a"), (2, "b")]
    assert read(wh, "FROM people SELECT max(id)")[1] == [(24,)]
    assert read(wh, "-- a comment\nSELECT 1 AS one;  ")[1] == [(1,)]


def test_explain_returns_the_plan(wh: DuckDBWarehouse) -> None:
    columns, rows = read(wh, "EXPLAIN SELECT * FROM people WHERE id > 3")
    assert [column.name for column in columns] == ["explain_key", "explain_value"]
    assert rows[0][0] == "physical_plan"
    assert "people" in str(rows[0][1])


def test_duplicate_column_names_are_kept_in_order(wh: DuckDBWarehouse) -> None:
    columns, rows = read(wh, "SELECT 1 AS a, 'two' AS a, a.id AS a FROM people AS a WHERE a.id = 7")
    assert columns == [Column("a", "INTEGER"), Column("a", "VARCHAR"), Column("a", "BIGINT")]
    assert rows == [(1, "two", 7)]


def test_values_of_every_common_type_arrive_as_python_values(wh: DuckDBWarehouse) -> None:
    columns, rows = read(
        wh,
        "SELECT 42::HUGEINT AS huge, 18446744073709551615::UBIGINT AS ubig, 12.50::DECIMAL(10,2) AS dec, "
        "'NaN'::DOUBLE AS nan, DATE '2024-02-29' AS d, TIME '12:34:56' AS t, "
        "TIMESTAMP '2024-02-29 01:02:03.456789' AS ts, TIMESTAMPTZ '2024-02-29 01:02:03+02' AS tstz, "
        "'00000000-0000-0000-0000-00000000002a'::UUID AS u, 'a\\x00b'::BLOB AS b, [1, NULL, 3] AS l, "
        "{'k': 'v', 'n': [1]} AS s, true AS yes, NULL AS nothing",
    )
    assert [column.type for column in columns] == [
        "HUGEINT",
        "UBIGINT",
        "DECIMAL(10,2)",
        "DOUBLE",
        "DATE",
        "TIME",
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
        "UUID",
        "BLOB",
        "INTEGER[]",
        "STRUCT(k VARCHAR, n INTEGER[])",
        "BOOLEAN",
        '"NULL"',
    ]
    (row,) = rows
    assert row[:3] == (Decimal(42), 18446744073709551615, Decimal("12.50"))
    assert row[3] != row[3]  # NaN
    assert row[4:7] == (date(2024, 2, 29), clock_time(12, 34, 56), datetime(2024, 2, 29, 1, 2, 3, 456789))
    assert row[7] == datetime(2024, 2, 28, 23, 2, 3, tzinfo=UTC)
    assert row[8:] == (
        "00000000-0000-0000-0000-00000000002a",
        b"a\x00b",
        [1, None, 3],
        {"k": "v", "n": [1]},
        True,
        None,
    )


def test_values_python_cannot_hold_come_back_as_text(wh: DuckDBWarehouse) -> None:
    """TIMESTAMP_NS and infinite dates do not fit Python's datetime: they are text, not a crash."""
    _, rows = read(
        wh,
        "SELECT TIMESTAMP_NS '2024-01-01 00:00:00.123456789' AS ns, DATE 'infinity' AS forever, "
        "'-infinity'::TIMESTAMP AS never, DATE '2024-01-01' AS fine",
    )
    assert rows == [("2024-01-01 00:00:00.123456789", "infinity", "-infinity", date(2024, 1, 1))]


# -- refusals and errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("CREATE TABLE z AS SELECT 1", "this is a CREATE statement"),
        ("INSERT INTO people VALUES (99, 'x')", "this is an INSERT statement"),
        ("SELECT 1; SELECT 2", "this text holds 2 statements"),
        ("", "there is no query to run"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT nam FROM people", 'Referenced column "nam" not found'),
        ("SELECT * FROM nowhere", "Table with name nowhere does not exist"),
    ],
)
def test_what_cannot_run_fails_with_the_reason(wh: DuckDBWarehouse, sql: str, message: str) -> None:
    with pytest.raises(QueryFailed, match=message) as failed:
        wh.read(sql, limit=10, timeout_seconds=30)
    assert failed.value.interrupted is False
    assert wh.count("people") == 25
    assert [table.name for table in wh.tables()] == ["people"]


def test_a_parser_error_names_its_line(wh: DuckDBWarehouse) -> None:
    with pytest.raises(QueryFailed, match="syntax error") as failed:
        wh.read("SELECT 1\nFROM people\nWHER id = 1", limit=10, timeout_seconds=30)
    assert failed.value.line == 3


def test_a_query_that_would_write_fails_in_the_read_only_transaction(wh: DuckDBWarehouse) -> None:
    wh.query("CREATE SEQUENCE ids")
    with pytest.raises(QueryFailed, match="read-only"):
        wh.read("SELECT nextval('ids')", limit=10, timeout_seconds=30)
    assert wh.query("SELECT nextval('ids')") == [(1,)]


# -- timeout and interrupt ----------------------------------------------------------------------------------------


def ends_in_time(call: Callable[[], object]) -> tuple[QueryFailed, float]:
    started = time.monotonic()
    with pytest.raises(QueryFailed) as failed:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < STOPPED_WITHIN, f"the query ran {elapsed:.1f} s"
    return failed.value, elapsed


def test_a_query_past_its_timeout_is_stopped(wh: DuckDBWarehouse) -> None:
    error, elapsed = ends_in_time(lambda: wh.read(SLOW, limit=10, timeout_seconds=0.5))
    assert str(error) == "the query ran longer than 0.5 s and was stopped"
    assert error.interrupted is True
    assert elapsed >= 0.5
    assert read(wh, "SELECT count(*) FROM people")[1] == [(25,)]  # the warehouse answers as before


def test_a_tiny_timeout_stops_the_query_even_before_it_starts(wh: DuckDBWarehouse) -> None:
    """DuckDB forgets an interrupt that comes before its statement runs: the timeout must land all the same."""
    for _ in range(5):
        error, _ = ends_in_time(lambda: wh.read(SLOW, limit=10, timeout_seconds=0.001))
        assert str(error) == "the query ran longer than 0.001 s and was stopped"


def test_on_start_gives_a_stop_that_works_from_another_thread(wh: DuckDBWarehouse) -> None:
    handed: list[Callable[[], None]] = []
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            wh.read(SLOW, limit=10, timeout_seconds=60, on_start=handed.append)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + STOPPED_WITHIN
    while not handed:
        assert time.monotonic() < deadline, "read() never called on_start"
        time.sleep(0.01)
    started = time.monotonic()
    handed[0]()
    thread.join(STOPPED_WITHIN)
    assert not thread.is_alive(), "the stopped query is still running"
    assert time.monotonic() - started < STOPPED_WITHIN
    assert len(outcome) == 1, outcome
    assert isinstance(outcome[0], QueryFailed), outcome
    assert str(outcome[0]) == "the query was stopped"
    assert outcome[0].interrupted is True


def test_a_stop_asked_before_the_query_starts_still_stops_it(wh: DuckDBWarehouse) -> None:
    error, _ = ends_in_time(lambda: wh.read(SLOW, limit=10, timeout_seconds=60, on_start=lambda stop: stop()))
    assert str(error) == "the query was stopped"


def test_a_quick_query_is_not_reported_as_timed_out(wh: DuckDBWarehouse) -> None:
    for _ in range(20):
        assert wh.read("SELECT count(*) FROM people", limit=1, timeout_seconds=30).rows == [(25,)]


def test_reads_run_side_by_side(wh: DuckDBWarehouse) -> None:
    """A long query on one cursor does not hold another reader back."""
    handed: list[Callable[[], None]] = []
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            wh.read(SLOW, limit=10, timeout_seconds=60, on_start=handed.append)
        except QueryFailed as error:
            errors.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        deadline = time.monotonic() + STOPPED_WITHIN
        while not handed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert wh.read("SELECT count(*) FROM people", limit=1, timeout_seconds=5).rows == [(25,)]
    finally:
        while not handed:
            time.sleep(0.01)
        handed[0]()
        thread.join(STOPPED_WITHIN)
    assert [str(error) for error in errors] == ["the query was stopped"]


# -- tables() -------------------------------------------------------------------------------------------------


def test_tables_lists_tables_and_views_with_their_columns_and_hides_runyards_own(wh: DuckDBWarehouse) -> None:
    wh.query("CREATE VIEW adults AS SELECT id, name FROM people WHERE id > 17")
    wh.query('CREATE TABLE "Mixed Case" ("Odd ""name""" INTEGER, ts TIMESTAMP)')
    wh.stage("run1", "people", pa.table({"id": [1], "name": ["x"]}).to_reader())
    wh.load(LoadRequest(run_key="run0", operation_id=1, tables=()))  # a load record in _runyard.loads
    wh.stage("run2", "later", pa.table({"x": [1]}).to_reader())  # staged, not loaded: hidden
    assert wh.query("SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_runyard_staging__')") == [
        (2,)
    ]
    listed = {table.name: table for table in wh.tables()}
    assert list(listed) == ["adults", "Mixed Case", "people"]  # by name, case-insensitively
    assert listed["adults"].kind == "view"
    assert listed["adults"].columns == (Column("id", "BIGINT"), Column("name", "VARCHAR"))
    assert listed["people"].kind == "table"
    assert listed["Mixed Case"].columns == (Column('Odd "name"', "INTEGER"), Column("ts", "TIMESTAMP"))
    assert not any(name.startswith("_runyard") for name in listed)


def test_tables_shows_the_loaded_at_column_of_loaded_tables(wh: DuckDBWarehouse) -> None:
    wh.stage("r1", "loaded", pa.table({"id": [1, 2]}).to_reader())
    wh.load(
        LoadRequest(
            run_key="r1",
            operation_id=1,
            tables=(TableLoad(name="loaded", mode="replace", loaded_at_column="_runyard_loaded_at"),),
        )
    )
    listed = {table.name: table for table in wh.tables()}
    assert [column.name for column in listed["loaded"].columns] == ["id", "_runyard_loaded_at"]
    _columns, rows = read(wh, "SELECT id, _runyard_loaded_at IS NOT NULL AS stamped FROM loaded ORDER BY id")
    assert rows == [(1, True), (2, True)]


def test_an_empty_warehouse_has_no_tables(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "empty.duckdb")
    try:
        assert warehouse.tables() == []
    finally:
        warehouse.close()
