"""Records to Arrow: nested objects flattened, lists kept, types inferred, ISO dates and times detected."""

from __future__ import annotations

import gc

import pyarrow as pa
import pytest

from runyard.engine.arrow import (
    RecordShapeError,
    align,
    detect_temporal,
    records_to_table,
    schema_to_json,
    unify,
)
from runyard.engine.consolidate import schema_change
from runyard.runtime import tuned_gc
from runyard.staging import Manifest, StagingKey
from runyard.warehouse.duckdb import duckdb_type
from runyard.warehouse.postgres import postgres_type_name


def test_nested_objects_flatten_and_a_null_parent_gives_null_children() -> None:
    table = records_to_table([{"id": 1, "d": {"x": 1, "y": {"z": "a"}}, "s": ["a"]}, {"id": 2, "d": None, "s": []}])
    assert table.column_names == ["id", "d__x", "d__y__z", "s"]
    assert table.to_pylist()[1] == {"id": 2, "d__x": None, "d__y__z": None, "s": []}
    assert pa.types.is_list(table.schema.field("s").type)


def test_a_key_with_mixed_types_becomes_text() -> None:
    table = records_to_table([{"v": 1}, {"v": "two"}, {"v": {"three": 3}}])
    assert table.schema.field("v").type == pa.string()
    assert table.column("v").to_pylist() == ["1", "two", '{"three":3}']


def test_records_must_be_objects() -> None:
    with pytest.raises(RecordShapeError, match="record 2 is a int"):
        records_to_table([{"a": 1}, 5])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2024-01-01", None, "2024-02-03"], pa.date32()),
        (["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+02:00", None], pa.timestamp("us", tz="UTC")),
        (["2024-01-01T10:00:00", "2024-01-01 11:00", None], pa.timestamp("us")),
        (["2024-01-01", "not a date", None], pa.string()),
        (["2023-02-30", None, None], pa.string()),  # an impossible date stays text
        ([None, None, "2024-01-01"], pa.date32()),  # the first value that is there decides
        (["20240101", None, None], pa.string()),
    ],
)
def test_iso_dates_and_times_are_detected_and_checked(values: list[str | None], expected: pa.DataType) -> None:
    table = detect_temporal(pa.table({"c": pa.array(values, type=pa.string())}))
    assert table.schema.field("c").type == expected


def test_unify_promotes_and_align_fills_missing_columns() -> None:
    first = records_to_table([{"id": 1, "n": 1}])
    second = records_to_table([{"id": 2, "n": 1.5, "extra": True}])
    blueprint = unify([first.schema, second.schema])
    assert blueprint.field("n").type == pa.float64()
    assert align(first, blueprint).to_pylist() == [{"id": 1, "n": 1.0, "extra": None}]


def test_tuned_gc_gives_the_collector_back_its_settings() -> None:
    before = gc.get_threshold()
    with tuned_gc():
        assert gc.get_threshold() == (100_000, 50, 100)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _manifest(task: str, schema: pa.Schema) -> Manifest:
    key = StagingKey(account="a", operation_id=1, run_key="r", table="t", task=task, attempt=1)
    return Manifest(key=key, parts=(), rows=0, schema=schema_to_json(schema), extra={})


def test_the_schema_change_names_new_columns_new_types_and_who_brought_them() -> None:
    old_part = pa.schema([("id", pa.int64()), ("salary", pa.int64())])
    new_part = pa.schema([("id", pa.int64()), ("salary", pa.float64()), ("cost_center", pa.string())])
    manifests = [_manifest("Process [e] 1/2", old_part), _manifest("Process [e] 2/2", new_part)]
    blueprint = unify([old_part, new_part])
    message = schema_change("e", blueprint, {"id": "BIGINT", "salary": "BIGINT"}, manifests, duckdb_type)
    assert "1 new column: cost_center (string, from Process [e] 2/2)" in message
    assert "salary (BIGINT -> DOUBLE, from Process [e] 1/2, Process [e] 2/2)" in message
    same = schema_change(
        "e", blueprint, {"id": "BIGINT", "salary": "DOUBLE", "cost_center": "VARCHAR"}, manifests, duckdb_type
    )
    assert same == "e: same columns and types as in the warehouse (3 columns)"
    assert schema_change("e", blueprint, None, manifests, duckdb_type).startswith("e is a new table with 3 columns")


def test_the_schema_change_compares_types_in_the_warehouse_s_own_spelling() -> None:
    part = pa.schema([("id", pa.int64()), ("seen", pa.timestamp("us", tz="UTC")), ("name", pa.string())])
    manifests = [_manifest("Process [e] 1/1", part)]
    on_postgres = {"id": "bigint", "seen": "timestamp with time zone", "name": "text"}

    assert schema_change("e", part, on_postgres, manifests, postgres_type_name) == (
        "e: same columns and types as in the warehouse (3 columns)"
    )
    changed = schema_change("e", part, {**on_postgres, "id": "integer"}, manifests, postgres_type_name)
    assert "id (integer -> bigint, from Process [e] 1/1)" in changed
