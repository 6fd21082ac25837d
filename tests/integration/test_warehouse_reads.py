"""Warehouse.read on a real DuckDB file: what only DuckDB's dialect and types give.

What every warehouse does (limits, refusals, errors, timeouts, stops, tables()) is in tests/contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

import pytest

from runyard.warehouse.base import Column, QueryFailed
from runyard.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "acme.duckdb")
    warehouse.query("CREATE TABLE people AS SELECT range AS id, 'p' || range AS name FROM range(25)")
    yield warehouse
    warehouse.close()


def read(
    wh: DuckDBWarehouse, sql: str, limit: int = 100, timeout: float = 30.0
) -> tuple[list[Column], list[tuple[object, ...]]]:
    result = wh.read(sql, limit=limit, timeout_seconds=timeout)
    return list(result.columns), result.rows


def test_columns_carry_duckdbs_type_names(wh: DuckDBWarehouse) -> None:
    columns, _ = read(wh, "SELECT id, name FROM people")
    assert columns == [Column("id", "BIGINT"), Column("name", "VARCHAR")]


def test_duckdbs_own_query_forms_are_queries(wh: DuckDBWarehouse) -> None:
    assert read(wh, "VALUES (1, 'a'), (2, 'b')")[1] == [(1, "a"), (2, "b")]
    assert read(wh, "FROM people SELECT max(id)")[1] == [(24,)]


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


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("CREATE TABLE z AS SELECT 1", "this is a CREATE statement"),
        ("INSERT INTO people VALUES (99, 'x')", "this is an INSERT statement"),
        ("SELECT 1; SELECT 2", "this text holds 2 statements"),
        ("", "there is no query to run"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
    ],
)
def test_duckdbs_refusals_say_why(wh: DuckDBWarehouse, sql: str, message: str) -> None:
    """DuckDB's parser names what a refused text is; and the file system stays closed to a query."""
    with pytest.raises(QueryFailed, match=message):
        wh.read(sql, limit=10, timeout_seconds=30)
    assert wh.count("people") == 25
