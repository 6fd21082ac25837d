"""TableLoad.deleted_column on the DuckDB warehouse: staged rows flagged true delete their key and are not inserted."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from runyard.warehouse import LoadRequest, LoadResult, TableLoad, WarehouseError
from runyard.warehouse.base import LOADED_AT_COLUMN
from runyard.warehouse.duckdb import DuckDBWarehouse

FLAG = "_deleted"


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "acme.duckdb")
    yield warehouse
    warehouse.close()


def load(wh: DuckDBWarehouse, run_key: str, table: TableLoad, columns: Mapping[str, Sequence[object]]) -> LoadResult:
    wh.stage(run_key, table.name, pa.table(dict(columns)).to_reader())
    return wh.load(LoadRequest(run_key=run_key, operation_id=1, tables=(table,)))


def merge(name: str = "t", *, hwm: str | None = None, loaded_at: bool = False) -> TableLoad:
    return TableLoad(
        name=name,
        mode="merge",
        primary_key=("id",),
        high_watermark=hwm,
        deleted_column=FLAG,
        loaded_at_column=LOADED_AT_COLUMN if loaded_at else None,
    )


def rows(wh: DuckDBWarehouse, table: str = "t") -> list[tuple[object, ...]]:
    return wh.query(f"SELECT COLUMNS(lambda c: c <> '{LOADED_AT_COLUMN}') FROM main.{table} ORDER BY ALL")


def test_a_merge_deletes_the_flagged_keys_and_upserts_the_others(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [1, 2, 3], "name": ["a", "b", "c"], FLAG: [False, False, False]})

    load(wh, "r2", merge(hwm="2"), {"id": [2, 3, 4], "name": [None, "C", "d"], FLAG: [True, False, False]})

    assert rows(wh) == [(1, "a"), (3, "C"), (4, "d")]
    assert FLAG not in (wh.columns("t") or {})
    assert wh.high_watermark(1, "t") == "2"


def test_the_last_staged_row_of_a_key_decides(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [1, 2], "name": ["a", "b"], FLAG: [False, False]})

    # 1: updated then deleted (gone); 2: deleted then inserted again (kept, new value); 5: inserted then deleted.
    load(
        wh,
        "r2",
        merge(),
        {
            "id": [1, 2, 1, 2, 5, 5],
            "name": ["a2", None, None, "b2", "e", None],
            FLAG: [False, True, True, False, False, True],
        },
    )

    assert rows(wh) == [(2, "b2")]


def test_deleting_a_key_the_target_does_not_hold_changes_nothing(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [1], "name": ["a"], FLAG: [False]})

    result = load(wh, "r2", merge(), {"id": [9], "name": [None], FLAG: [True]})

    assert rows(wh) == [(1, "a")]
    assert (result.tables[0].rows, result.tables[0].staged) == (1, 1)


def test_a_first_merge_creates_the_target_without_the_deleted_rows_or_the_flag(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(loaded_at=True), {"id": [1, 2, 2], "name": ["a", "b", None], FLAG: [False, False, True]})

    assert rows(wh) == [(1, "a")]
    assert list(wh.columns("t") or {}) == ["id", "name", LOADED_AT_COLUMN]


def test_a_batch_of_deletes_only_keeps_the_target_columns(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [1, 2], "name": ["a", "b"], "n": [1.5, 2.5], FLAG: [False, False]})

    load(wh, "r2", merge(), {"id": pa.array([2], pa.int64()), FLAG: [True]})

    assert rows(wh) == [(1, "a", 1.5)]
    assert list(wh.columns("t") or {}) == ["id", "name", "n"]


def test_a_replace_leaves_out_the_deleted_rows(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [7], "name": ["old"], FLAG: [False]})
    replace = TableLoad(name="t", mode="replace", primary_key=("id",), deleted_column=FLAG)

    load(wh, "r2", replace, {"id": [1, 2, 3, 3], "name": ["a", "b", "c", None], FLAG: [False, True, False, True]})

    assert rows(wh) == [(1, "a")]
    assert FLAG not in (wh.columns("t") or {})


def test_a_flag_column_that_was_not_staged_is_refused_and_nothing_loads(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", merge(), {"id": [1], "name": ["a"], FLAG: [False]})

    with pytest.raises(WarehouseError, match="deletion flag column '_deleted' was not staged"):
        load(wh, "r2", merge(hwm="5"), {"id": [1], "name": ["b"]})

    assert rows(wh) == [(1, "a")]
    assert wh.high_watermark(1, "t") is None
    assert not wh.has_load("r2")
