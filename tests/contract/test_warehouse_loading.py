"""The warehouse contract, loading: stage, then load every table of a run in one transaction, exactly once.

replace and merge (upsert on the key, the last staged row of a key winning; append without one), deletes through
`deleted_column`, new columns on a later load, the load time stamped in `loaded_at_column`, atomicity, exactly once,
high watermarks, staging. See conftest.py for the backends and how the tests compare their words.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import pyarrow as pa
import pytest

from runyard.warehouse.base import (
    LOADED_AT_COLUMN,
    LoadMode,
    LoadRequest,
    LoadResult,
    TableLoad,
    TableResult,
    Warehouse,
    WarehouseError,
    WarehouseProvider,
)
from tests.contract.conftest import ACCOUNT, batches, kinds, merge, replace, stage_load, utc, utc_now

EVIL = 'a"; DROP TABLE x; --'
FLAG = "_deleted"


# -- replace ----------------------------------------------------------------------------------------------------------


def test_replace_replaces_rows_and_columns(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (replace("users"), {"id": [1, 2, 3], "name": ["a", "b", "c"]}))

    result = stage_load(warehouse, "r2", (replace("users"), {"id": [9], "email": ["z@x"]}))

    assert result == LoadResult(already_loaded=False, tables=(TableResult(name="users", rows=1, staged=1),))
    assert warehouse.query("SELECT id, email FROM users") == [(9, "z@x")]
    assert kinds(warehouse.columns("users")) == {"id": "integer", "email": "text"}


def test_a_replace_with_no_rows_empties_the_table(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (replace("users"), {"id": [1, 2]}))

    result = stage_load(warehouse, "r2", (replace("users"), {"id": pa.array([], pa.int64())}))

    assert result.tables == (TableResult(name="users", rows=0, staged=0),)
    assert warehouse.count("users") == 0
    assert kinds(warehouse.columns("users")) == {"id": "integer"}


# -- merge ------------------------------------------------------------------------------------------------------------


def test_merge_creates_then_upserts_on_the_key(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("users", "id"), {"id": [1, 2, 3], "name": ["a", "b", "c"]}))

    result = stage_load(warehouse, "r2", (merge("users", "id"), {"id": [2, 4, 2], "name": ["b-old", "d", "b-new"]}))

    assert result.tables == (TableResult(name="users", rows=4, staged=3),)
    assert warehouse.query("SELECT id, name FROM users ORDER BY id") == [(1, "a"), (2, "b-new"), (3, "c"), (4, "d")]
    assert warehouse.query("SELECT count(*) FROM (SELECT id FROM users GROUP BY id HAVING count(*) > 1) AS d") == [(0,)]


def test_a_first_merge_keeps_the_last_staged_row_of_a_key(warehouse: Warehouse) -> None:
    result = stage_load(warehouse, "r1", (merge("users", "id"), {"id": [1, 1, 2, 1], "name": ["a", "b", "c", "d"]}))

    assert result.tables == (TableResult(name="users", rows=2, staged=4),)
    assert warehouse.query("SELECT id, name FROM users ORDER BY id") == [(1, "d"), (2, "c")]


def test_merge_keeps_the_last_staged_row_of_a_key_across_batches(warehouse: Warehouse) -> None:
    n = 10_000
    warehouse.stage("r1", "events", batches({"id": [i % 100 for i in range(n)], "seq": list(range(n))}, chunk=37))

    warehouse.load(LoadRequest("r1", 1, (merge("events", "id"),)))

    assert warehouse.count("events") == 100
    assert warehouse.query("SELECT min(seq), max(seq) FROM events") == [(n - 100, n - 1)]


def test_merge_on_a_composite_key_matches_null_keys(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("t", "a", "b"), {"a": [1, 1, None], "b": ["x", "y", "z"], "v": [1, 2, 3]}))

    stage_load(warehouse, "r2", (merge("t", "a", "b"), {"a": [1, None], "b": ["y", "z"], "v": [20, 30]}))

    assert warehouse.query("SELECT a, b, v FROM t ORDER BY b") == [(1, "x", 1), (1, "y", 20), (None, "z", 30)]


def test_merge_without_a_key_appends(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("log"), {"line": ["a", "b"]}))

    result = stage_load(warehouse, "r2", (merge("log"), {"line": ["a"]}))

    assert result.tables == (TableResult(name="log", rows=3, staged=1),)
    assert warehouse.query("SELECT line FROM log ORDER BY line") == [("a",), ("a",), ("b",)]


# -- the target's columns follow the staged ones ----------------------------------------------------------------------


def test_a_later_load_adds_new_columns_and_old_rows_get_null(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("users", "id"), {"id": [1, 2], "name": ["a", "b"]}))

    stage_load(warehouse, "r2", (merge("users", "id"), {"id": [3], "name": ["c"], "email": ["c@x"]}))

    assert kinds(warehouse.columns("users")) == {"id": "integer", "name": "text", "email": "text"}
    assert warehouse.query("SELECT id, email FROM users ORDER BY id") == [(1, None), (2, None), (3, "c@x")]


def test_merge_keeps_the_columns_a_later_run_lacks(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("users", "id"), {"id": [1], "name": ["a"]}))

    stage_load(warehouse, "r2", (merge("users", "id"), {"id": [2]}))

    assert list(warehouse.columns("users") or {}) == ["id", "name"]
    assert warehouse.query("SELECT id, name FROM users ORDER BY id") == [(1, "a"), (2, None)]


def test_merge_widens_an_integer_column_to_hold_fractions(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (merge("prices", "id"), {"id": [1, 2], "price": [10, 20]}))

    stage_load(warehouse, "r2", (merge("prices", "id"), {"id": [2, 3], "price": [20.5, 30.25]}))

    assert kinds(warehouse.columns("prices")) == {"id": "integer", "price": "float"}
    assert warehouse.query("SELECT id, price FROM prices ORDER BY id") == [(1, 10.0), (2, 20.5), (3, 30.25)]


# -- deleted_column: staged rows flagged true delete their key and are not inserted -----------------------------------


def deleting(
    name: str = "t", *, mode: LoadMode = "merge", hwm: str | None = None, loaded_at: bool = False
) -> TableLoad:
    return TableLoad(
        name=name,
        mode=mode,
        primary_key=("id",),
        high_watermark=hwm,
        deleted_column=FLAG,
        loaded_at_column=LOADED_AT_COLUMN if loaded_at else None,
    )


def load_one(wh: Warehouse, run_key: str, table: TableLoad, columns: Mapping[str, Sequence[object] | pa.Array]) -> None:
    stage_load(wh, run_key, (table, columns))


def test_a_merge_deletes_the_flagged_keys_and_upserts_the_others(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [1, 2, 3], "name": ["a", "b", "c"], FLAG: [False, False, False]})

    load_one(
        warehouse, "r2", deleting(hwm="2"), {"id": [2, 3, 4], "name": [None, "C", "d"], FLAG: [True, False, False]}
    )

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(1, "a"), (3, "C"), (4, "d")]
    assert list(warehouse.columns("t") or {}) == ["id", "name"]
    assert warehouse.high_watermark(1, "t") == "2"


def test_the_last_staged_row_of_a_key_decides_whether_it_is_deleted(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [1, 2], "name": ["a", "b"], FLAG: [False, False]})

    # 1: updated then deleted (gone); 2: deleted then inserted again (kept, new value); 5: inserted then deleted.
    load_one(
        warehouse,
        "r2",
        deleting(),
        {
            "id": [1, 2, 1, 2, 5, 5],
            "name": ["a2", None, None, "b2", "e", None],
            FLAG: [False, True, True, False, False, True],
        },
    )

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(2, "b2")]


def test_deleting_a_key_the_target_does_not_hold_changes_nothing(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [1], "name": ["a"], FLAG: [False]})

    result = stage_load(warehouse, "r2", (deleting(), {"id": [9], "name": [None], FLAG: [True]}))

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(1, "a")]
    assert (result.tables[0].rows, result.tables[0].staged) == (1, 1)


def test_a_first_merge_creates_the_target_without_the_deleted_rows_or_the_flag(warehouse: Warehouse) -> None:
    load_one(
        warehouse,
        "r1",
        deleting(loaded_at=True),
        {"id": [1, 2, 2], "name": ["a", "b", None], FLAG: [False, False, True]},
    )

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(1, "a")]
    assert list(warehouse.columns("t") or {}) == ["id", "name", LOADED_AT_COLUMN]


def test_a_batch_of_deletes_only_keeps_the_target_columns(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [1, 2], "name": ["a", "b"], "n": [1.5, 2.5], FLAG: [False, False]})

    load_one(warehouse, "r2", deleting(), {"id": pa.array([2], pa.int64()), FLAG: [True]})

    assert warehouse.query("SELECT id, name, n FROM t ORDER BY id") == [(1, "a", 1.5)]
    assert list(warehouse.columns("t") or {}) == ["id", "name", "n"]


def test_a_replace_leaves_out_the_deleted_rows(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [7], "name": ["old"], FLAG: [False]})

    load_one(
        warehouse,
        "r2",
        deleting(mode="replace"),
        {"id": [1, 2, 3, 3], "name": ["a", "b", "c", None], FLAG: [False, True, False, True]},
    )

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(1, "a")]
    assert list(warehouse.columns("t") or {}) == ["id", "name"]


def test_a_flag_column_that_was_not_staged_is_refused_and_nothing_loads(warehouse: Warehouse) -> None:
    load_one(warehouse, "r1", deleting(), {"id": [1], "name": ["a"], FLAG: [False]})

    with pytest.raises(WarehouseError, match=FLAG):
        load_one(warehouse, "r2", deleting(hwm="5"), {"id": [1], "name": ["b"]})

    assert warehouse.query("SELECT id, name FROM t ORDER BY id") == [(1, "a")]
    assert warehouse.high_watermark(1, "t") is None
    assert not warehouse.has_load("r2")


# -- loaded_at_column -------------------------------------------------------------------------------------------------


def stamps(wh: Warehouse, table: str) -> dict[object, datetime]:
    return {key: utc(moment) for key, moment in wh.query(f"SELECT id, {LOADED_AT_COLUMN} FROM {table}")}


def test_every_loaded_row_gets_the_load_time(warehouse: Warehouse) -> None:
    stamped = TableLoad(name="t", mode="merge", primary_key=("id",), loaded_at_column=LOADED_AT_COLUMN)
    slack = 2.0  # seconds: the database's clock may be the one that stamps
    before = utc_now()
    stage_load(warehouse, "r1", (stamped, {"id": [1, 2], "v": ["a", "b"]}))
    after = utc_now()
    first = stamps(warehouse, "t")
    assert kinds(warehouse.columns("t")) == {"id": "integer", "v": "text", LOADED_AT_COLUMN: "timestamp"}
    assert len(set(first.values())) == 1  # one load, one time
    (loaded_at,) = set(first.values())
    assert (loaded_at - before).total_seconds() > -slack
    assert (after - loaded_at).total_seconds() > -slack

    time.sleep(0.05)
    stage_load(warehouse, "r2", (stamped, {"id": [2, 3], "v": ["b2", "c"]}))

    second = stamps(warehouse, "t")
    assert second[1] == first[1]  # a row the load left alone keeps its time
    assert second[2] == second[3]
    assert second[2] > first[2]


def test_a_staged_column_named_like_the_stamp_is_overwritten(warehouse: Warehouse) -> None:
    stamped = TableLoad(name="t", mode="replace", loaded_at_column=LOADED_AT_COLUMN)
    long_ago = pa.array([datetime(2000, 1, 1)] * 2, pa.timestamp("us"))
    before = utc_now()

    stage_load(warehouse, "r1", (stamped, {"id": [1, 2], LOADED_AT_COLUMN: long_ago}))

    assert list(warehouse.columns("t") or {}) == ["id", LOADED_AT_COLUMN]
    assert all((moment - before).total_seconds() > -2.0 for moment in stamps(warehouse, "t").values())


# -- one transaction: everything or nothing ---------------------------------------------------------------------------


def _snapshot(wh: Warehouse) -> dict[str, object]:
    return {
        "a": wh.query("SELECT id, v FROM a ORDER BY id"),
        "a_columns": kinds(wh.columns("a")),
        "b": wh.query("SELECT id FROM b ORDER BY id"),
        "missing": wh.columns("missing"),
        "high_watermark": wh.high_watermark(1, "a"),
        "loads": (wh.has_load("r1"), wh.has_load("r2")),
    }


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        pytest.param(merge("missing", "id"), "missing", id="a table that was not staged"),
        pytest.param(merge("a", "no_such_column"), "no_such_column", id="a key that was not staged"),
    ],
)
def test_a_failing_table_leaves_every_table_unchanged_and_no_load_record(
    warehouse: Warehouse, broken: TableLoad, named: str
) -> None:
    stage_load(warehouse, "r1", (merge("a", "id", hwm="1"), {"id": [1, 2], "v": [1, 2]}), (replace("b"), {"id": [1]}))
    before = _snapshot(warehouse)
    warehouse.stage("r2", "a", batches({"id": [2, 3], "v": [2.5, 3.5], "new": ["n", "n"]}))
    warehouse.stage("r2", "b", batches({"id": [7, 8, 9]}))
    # The tables before the broken one load (a merge that adds a column and widens one, a replace), then it fails.
    tables = (merge("a", "id", hwm="2"), replace("b"), broken) if broken.name != "a" else (replace("b"), broken)

    with pytest.raises(WarehouseError, match=named) as failed:
        warehouse.load(LoadRequest("r2", 1, tables))

    assert "r2" in str(failed.value)
    assert _snapshot(warehouse) == before
    assert not warehouse.has_load("r2")
    # What was staged is still there: the run can load again once its request is right.
    assert warehouse.load(LoadRequest("r2", 1, (merge("a", "id", hwm="2"), replace("b")))).already_loaded is False
    assert warehouse.query("SELECT id, v, new FROM a ORDER BY id") == [(1, 1, None), (2, 2.5, "n"), (3, 3.5, "n")]
    assert warehouse.query("SELECT id FROM b ORDER BY id") == [(7,), (8,), (9,)]
    assert warehouse.high_watermark(1, "a") == "2"


def test_an_invalid_request_is_refused_before_anything_runs(warehouse: Warehouse) -> None:
    warehouse.stage("r1", "a", batches({"id": [1]}))

    with pytest.raises(WarehouseError, match="loaded twice"):
        warehouse.load(LoadRequest("r1", 1, (replace("a"), merge("a", "id"))))
    with pytest.raises(WarehouseError, match="upsert"):
        warehouse.load(LoadRequest("r1", 1, (TableLoad(name="a", mode="upsert"),)))  # type: ignore[arg-type]

    assert warehouse.columns("a") is None
    assert not warehouse.has_load("r1")


# -- exactly once -----------------------------------------------------------------------------------------------------


def test_a_second_load_of_a_run_returns_the_first_results_and_changes_nothing(warehouse: Warehouse) -> None:
    assert not warehouse.has_load("r1")
    first = stage_load(warehouse, "r1", (merge("log", hwm="5"), {"line": ["a", "b"]}), (replace("other"), {"x": [1]}))
    assert warehouse.has_load("r1")
    warehouse.stage("r1", "log", batches({"line": ["c"]}))
    warehouse.stage("r1", "other", batches({"x": [1, 2, 3]}))

    again = warehouse.load(LoadRequest("r1", 1, (merge("log", hwm="9"), replace("other"))))

    assert again == LoadResult(already_loaded=True, tables=first.tables)
    assert first.tables == (TableResult("log", rows=2, staged=2), TableResult("other", rows=1, staged=1))
    assert warehouse.query("SELECT line FROM log ORDER BY line") == [("a",), ("b",)]
    assert warehouse.count("other") == 1
    assert warehouse.high_watermark(1, "log") == "5"


def test_the_load_record_outlives_the_connection(provider: WarehouseProvider) -> None:
    first = stage_load(provider.for_account(ACCOUNT), "r1", (replace("a"), {"id": [1, 2]}))
    provider.close_all()

    reopened = provider.for_account(ACCOUNT)
    reopened.stage("r1", "a", batches({"id": [5]}))

    assert reopened.has_load("r1")
    assert reopened.load(LoadRequest("r1", 1, (replace("a"),))) == LoadResult(True, first.tables)
    assert reopened.count("a") == 2


def test_an_empty_load_records_the_run(warehouse: Warehouse) -> None:
    assert warehouse.load(LoadRequest("r1", 1, ())) == LoadResult(already_loaded=False, tables=())
    assert warehouse.has_load("r1")
    assert warehouse.load(LoadRequest("r1", 1, ())) == LoadResult(already_loaded=True, tables=())


# -- high watermarks --------------------------------------------------------------------------------------------------


def test_the_high_watermark_is_kept_per_operation_and_table(warehouse: Warehouse) -> None:
    assert warehouse.high_watermark(1, "events") is None
    stage_load(warehouse, "r1", (merge("events", "id", hwm="2024-01-01T00:00:00Z"), {"id": [1]}))
    stage_load(warehouse, "r2", (merge("events", "id", hwm="2024-02-01T00:00:00Z"), {"id": [2]}), operation_id=2)
    stage_load(warehouse, "r3", (merge("users", "id", hwm="u7"), {"id": [2]}))
    assert warehouse.high_watermark(1, "events") == "2024-01-01T00:00:00Z"

    stage_load(warehouse, "r4", (merge("events", "id", hwm="2024-03-01T00:00:00Z"), {"id": [3]}))
    stage_load(warehouse, "r5", (merge("events", "id"), {"id": [4]}))  # no watermark: the stored one stays

    assert warehouse.high_watermark(1, "events") == "2024-03-01T00:00:00Z"
    assert warehouse.high_watermark(2, "events") == "2024-02-01T00:00:00Z"
    assert warehouse.high_watermark(1, "users") == "u7"
    assert warehouse.high_watermark(2, "users") is None


# -- names ------------------------------------------------------------------------------------------------------------


def test_odd_names_are_only_names(warehouse: Warehouse) -> None:
    warehouse.query("CREATE TABLE x (keep INTEGER)")
    warehouse.query("INSERT INTO x VALUES (1)")
    table = f"tablé {EVIL}"
    columns: dict[str, Sequence[object]] = {EVIL: [1, 2], "名前": ["a", "b"], "with space": [True, False]}

    stage_load(warehouse, "r1", (merge(table, EVIL), columns))
    stage_load(warehouse, "r2", (merge(table, EVIL), {EVIL: [2, 3], "名前": ["b2", "c"], 'new"col': [1.5, 2.5]}))

    assert kinds(warehouse.columns(table)) == {
        EVIL: "integer",
        "名前": "text",
        "with space": "boolean",
        'new"col': "float",
    }
    assert warehouse.count(table) == 3
    assert warehouse.query("SELECT keep FROM x") == [(1,)]
    assert warehouse.high_watermark(1, table) is None
    warehouse.drop_staging("r1")
    assert warehouse.count(table) == 3
    assert [info.name for info in warehouse.tables()] == [table, "x"]


# -- staging ----------------------------------------------------------------------------------------------------------


def test_stage_counts_and_restaging_replaces(warehouse: Warehouse) -> None:
    assert warehouse.stage("r1", "a", batches({"id": [1, 2, 3]}, chunk=2)) == 3
    assert warehouse.stage("r1", "a", batches({"name": ["x"]})) == 1

    result = warehouse.load(LoadRequest("r1", 1, (replace("a"),)))

    assert result.tables == (TableResult(name="a", rows=1, staged=1),)
    assert list(warehouse.columns("a") or {}) == ["name"]


def test_staged_rows_are_not_published_before_the_load(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (replace("a"), {"id": [1]}))

    warehouse.stage("r2", "a", batches({"id": [1, 2, 3]}))
    warehouse.stage("r2", "b", batches({"id": [1]}))

    assert warehouse.count("a") == 1
    assert warehouse.columns("b") is None
    assert [info.name for info in warehouse.tables()] == ["a"]


def test_a_table_without_columns_cannot_be_staged(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="no columns"):
        warehouse.stage("r1", "a", pa.table({}).to_reader())


def test_staged_runs_and_drop_staging(warehouse: Warehouse) -> None:
    assert warehouse.staged_runs() == set()
    for run_key in ("r1", "r10"):
        warehouse.stage(run_key, "a", batches({"id": [1]}))
        warehouse.stage(run_key, "b", batches({"id": [1]}))
    assert warehouse.staged_runs() == {"r1", "r10"}

    warehouse.drop_staging("r1")
    warehouse.drop_staging("r1")  # idempotent
    warehouse.drop_staging("never-staged")

    assert warehouse.staged_runs() == {"r10"}
    with pytest.raises(WarehouseError, match="not staged"):
        warehouse.load(LoadRequest("r1", 1, (replace("a"),)))
    assert warehouse.load(LoadRequest("r10", 1, (replace("a"), replace("b")))).already_loaded is False
    warehouse.drop_staging("r10")
    assert warehouse.staged_runs() == set()
    assert warehouse.count("a") == warehouse.count("b") == 1


def test_two_threads_stage_at_once(warehouse: Warehouse) -> None:
    barrier = threading.Barrier(2)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def stage(table: str) -> None:
        try:
            barrier.wait(timeout=10)
            counts[table] = warehouse.stage("r1", table, batches({"id": list(range(200_000))}, chunk=1000))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=stage, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert counts == {"a": 200_000, "b": 200_000}
    result = warehouse.load(LoadRequest("r1", 1, (replace("a"), replace("b"))))
    assert [t.rows for t in result.tables] == [200_000, 200_000]


# -- columns, count ---------------------------------------------------------------------------------------------------


def test_columns_and_count_of_a_missing_table(warehouse: Warehouse) -> None:
    assert warehouse.columns("nope") is None
    with pytest.raises(WarehouseError, match="nope"):
        warehouse.count("nope")


def test_columns_are_in_table_order(warehouse: Warehouse) -> None:
    stage_load(warehouse, "r1", (replace("t"), {"z": [1], "a": ["x"], "m": [True]}))

    assert list(warehouse.columns("t") or {}) == ["z", "a", "m"]
    assert warehouse.count("t") == 1


def test_type_name_spells_each_loaded_type_as_columns_reports_it(warehouse: Warehouse) -> None:
    # The schema-change message compares the two: a word of difference would report a type change that is not one.
    staged = pa.table(
        {
            "flag": pa.array([True]),
            "small": pa.array([1], pa.int32()),
            "big": pa.array([1], pa.int64()),
            "ratio": pa.array([0.5]),
            "name": pa.array(["x"]),
            "day": pa.array([datetime(2026, 1, 2).date()]),
            "naive": pa.array([datetime(2026, 1, 2, 3)], pa.timestamp("us")),
            "aware": pa.array([datetime(2026, 1, 2, 3)], pa.timestamp("us", tz="UTC")),
        }
    )
    stage_load(warehouse, "r1", (replace("t"), {name: staged[name].combine_chunks() for name in staged.column_names}))

    reported = warehouse.columns("t") or {}
    spelled = {field.name: warehouse.type_name(field.type) for field in staged.schema}
    assert {name: (kind or "").lower() for name, kind in spelled.items()} == {
        name: reported[name].lower() for name in spelled
    }
