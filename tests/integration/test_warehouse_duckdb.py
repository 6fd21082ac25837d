"""The DuckDB warehouse on real files with real Arrow data: what only DuckDB does (a locked-down file, its types,
its case-insensitive names, its staging tables, one file per account) and R2 (SIGKILL inside the load).

What every warehouse does (replace, merge, deletes, atomicity, exactly once, watermarks, staging) is in
tests/contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from runyard.warehouse import LoadRequest, LoadResult, TableLoad, WarehouseError
from runyard.warehouse.duckdb import CONFIG, DuckDBWarehouse, DuckDBWarehouses


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(tmp_path / "acme.duckdb")
    yield warehouse
    warehouse.close()


def batches(columns: Mapping[str, Sequence[object]], chunk: int | None = None) -> pa.RecordBatchReader:
    return pa.table(dict(columns)).to_reader(max_chunksize=chunk)


def load(
    wh: DuckDBWarehouse, run_key: str, *tables: tuple[TableLoad, Mapping[str, Sequence[object]]], operation_id: int = 1
) -> LoadResult:
    """Stage every table of a run, then load them together."""
    for table, columns in tables:
        wh.stage(run_key, table.name, batches(columns))
    return wh.load(LoadRequest(run_key=run_key, operation_id=operation_id, tables=tuple(t for t, _ in tables)))


def rows(wh: DuckDBWarehouse, sql: str) -> list[tuple[object, ...]]:
    return wh.query(sql)


def merge(name: str, *key: str, hwm: str | None = None) -> TableLoad:
    cursor_field = "updated" if hwm else None
    return TableLoad(name=name, mode="merge", primary_key=key, cursor_field=cursor_field, high_watermark=hwm)


def replace(name: str) -> TableLoad:
    return TableLoad(name=name, mode="replace")


# -- a locked-down file ----------------------------------------------------------------------


@pytest.mark.parametrize("setting", sorted(set(CONFIG) - {"memory_limit"}))
def test_the_file_is_opened_locked_down(wh: DuckDBWarehouse, setting: str) -> None:
    assert wh.query("SELECT current_setting(?)", [setting]) == [(CONFIG[setting],)]


def test_duckdb_memory_is_bounded(wh: DuckDBWarehouse) -> None:
    assert wh.query("SELECT current_setting('memory_limit')") == [("488.2 MiB",)]  # 512 MB, as DuckDB prints it


def test_cursors_print_no_progress_bar(wh: DuckDBWarehouse) -> None:
    # The parent connection has it on and the locked configuration cannot turn it off.
    assert wh.query("SELECT current_setting('enable_progress_bar')") == [(False,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET enable_external_access",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM glob('/*')",
        "ATTACH '/tmp/runyard-other.duckdb' AS other",
        "COPY (SELECT 1) TO '/tmp/runyard-out.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
    ],
)
def test_sql_cannot_reach_the_filesystem_or_unlock_it(wh: DuckDBWarehouse, sql: str) -> None:
    with pytest.raises(WarehouseError):
        wh.query(sql)
    assert wh.query("SELECT current_setting('enable_external_access')") == [(False,)]
    assert not Path("/tmp/runyard-out.csv").exists()


# -- DuckDB's types ------------------------------------------------------------------------


def test_columns_carry_duckdbs_type_names(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("t", "id"), {"id": [1], "name": ["a"], "yes": [True], "price": [10]}))
    load(wh, "r2", (merge("t", "id"), {"id": [2], "price": [2.5], "ts": pa.array([None], pa.timestamp("us"))}))

    assert wh.columns("t") == {
        "id": "BIGINT",
        "name": "VARCHAR",
        "yes": "BOOLEAN",
        "price": "DOUBLE",
        "ts": "TIMESTAMP",
    }


def test_merge_widens_anything_to_varchar_and_matches_keys_by_value(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("t", "id"), {"id": [1, 2], "tags": [[1, 2], [3]]}))
    load(wh, "r2", (merge("t", "id"), {"id": ["2", "x"], "tags": ["none", "some"]}))
    # The key is VARCHAR now; staged BIGINT keys must still match it (not cast 'x' to a number).
    load(wh, "r3", (merge("t", "id"), {"id": [1], "tags": ["one"]}))

    assert wh.columns("t") == {"id": "VARCHAR", "tags": "VARCHAR"}
    assert rows(wh, "SELECT id, tags FROM t ORDER BY id") == [("1", "one"), ("2", "none"), ("x", "some")]


def test_an_all_null_column_takes_a_type_when_values_arrive(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("t", "id"), {"id": [1], "note": pa.array([None])}))
    assert wh.columns("t") == {"id": "BIGINT", "note": '"NULL"'}

    load(wh, "r2", (merge("t", "id"), {"id": [2], "note": [7]}))

    assert wh.columns("t") == {"id": "BIGINT", "note": "BIGINT"}
    assert rows(wh, "SELECT id, note FROM t ORDER BY id") == [(1, None), (2, 7)]


# -- the load record ----------------------------------------------------------------------


def test_the_load_record_lists_the_tables(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (replace("a"), {"x": [1]}), (merge("b", "x"), {"x": [1, 1]}), operation_id=7)

    [(operation_id, tables)] = rows(wh, "SELECT operation_id, tables::VARCHAR FROM _runyard.loads WHERE run_key = 'r1'")
    assert operation_id == 7
    assert '"name": "b"' in str(tables)
    assert '"staged": 2' in str(tables)


def test_a_request_naming_a_table_twice_in_two_cases_is_refused(wh: DuckDBWarehouse) -> None:
    wh.stage("r1", "a", batches({"id": [1]}))
    with pytest.raises(WarehouseError, match="loaded twice"):
        wh.load(LoadRequest("r1", 1, (replace("a"), merge("A", "id"))))
    assert wh.columns("a") is None


# -- names ----------------------------------------------------------------------------------


def test_table_names_are_case_insensitive_like_duckdb(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("Users", "id"), {"id": [1]}))
    load(wh, "r2", (merge("users", "ID"), {"ID": [1, 2]}))

    assert wh.columns("USERS") == {"id": "BIGINT"}
    assert wh.count("users") == 2


# -- staging ----------------------------------------------------------------------------------


def test_stage_refuses_the_names_its_staging_tables_need(wh: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match="reserved"):
        wh.stage("r1", "a", batches({"_runyard_row": [1]}))
    with pytest.raises(WarehouseError, match="must not contain"):
        wh.stage("r1__x", "a", batches({"id": [1]}))


def test_staging_tables_sit_beside_the_tables_named_after_the_run(wh: DuckDBWarehouse) -> None:
    for run_key in ("r1", "r10"):
        wh.stage(run_key, "a", batches({"id": [1]}))
        wh.stage(run_key, "b", batches({"id": [1]}))

    wh.drop_staging("r1")

    staged = rows(
        wh, "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '_runyard_staging__') ORDER BY ALL"
    )
    assert staged == [("_runyard_staging__r10__a",), ("_runyard_staging__r10__b",)]


# -- one file per account ---------------------------------------------------------------------


def test_one_file_per_account(tmp_path: Path) -> None:
    warehouses = DuckDBWarehouses(tmp_path / "warehouse")
    acme = warehouses.for_account("acme")
    warehouses.for_account("globex")
    try:
        assert acme.path == tmp_path / "warehouse" / "acme.duckdb"
        assert sorted(p.name for p in (tmp_path / "warehouse").glob("*.duckdb")) == ["acme.duckdb", "globex.duckdb"]
    finally:
        warehouses.close_all()
    with pytest.raises(WarehouseError, match="is closed"):
        acme.count("a")


@pytest.mark.parametrize("account", ["", "../evil", "a/b", ".hidden"])
def test_account_names_cannot_escape_the_directory(tmp_path: Path, account: str) -> None:
    with pytest.raises(WarehouseError, match="cannot name a warehouse file"):
        DuckDBWarehouses(tmp_path).for_account(account)


# -- R2: SIGKILL inside the load transaction --------------------------------------------------

_CRASHING_LOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pyarrow as pa
    from runyard.warehouse import LoadRequest, TableLoad
    from runyard.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(Path(sys.argv[1]))
    wh.stage("r2", "a", pa.table({"id": [2, 3], "v": ["new", "new"], "extra": [1.5, 2.5]}).to_reader())
    wh.stage("r2", "b", pa.table({"id": [9]}).to_reader())
    tables = (
        TableLoad("a", "merge", ("id",), "id", "3"),
        TableLoad("b", "replace"),
    )
    wh.load(LoadRequest("r2", 1, tables))
    print("load returned")
    """
)


RETRIED_A = [(1, "old", None), (2, "new", 1.5), (3, "new", 2.5)]


def _tables_a_and_b(wh: DuckDBWarehouse) -> dict[str, object]:
    return {"a": rows(wh, "SELECT * FROM a ORDER BY id"), "b": rows(wh, "SELECT * FROM b"), "a_cols": wh.columns("a")}


def test_r2_a_kill_before_commit_leaves_no_trace_and_the_retry_loads_once(tmp_path: Path) -> None:
    path = tmp_path / "acme.duckdb"
    wh = DuckDBWarehouse(path)
    load(wh, "r1", (merge("a", "id", hwm="2"), {"id": [1, 2], "v": ["old", "old"]}), (replace("b"), {"id": [1]}))
    before = _tables_a_and_b(wh)
    wh.close()

    env = {**os.environ, "RUNYARD_CRASH_AT": "load.before_commit"}
    child = subprocess.run(
        [sys.executable, "-c", _CRASHING_LOAD, str(path)], env=env, capture_output=True, text=True, timeout=120
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "load returned" not in child.stdout
    wh = DuckDBWarehouse(path)
    try:
        assert _tables_a_and_b(wh) == before
        assert not wh.has_load("r2")
        assert wh.high_watermark(1, "a") == "2"

        request = LoadRequest("r2", 1, (merge("a", "id", hwm="3"), replace("b")))
        assert wh.load(request).already_loaded is False
        assert wh.load(request).already_loaded is True
        assert rows(wh, "SELECT id, v, extra FROM a ORDER BY id") == RETRIED_A
        assert rows(wh, "SELECT * FROM b") == [(9,)]
        assert wh.high_watermark(1, "a") == "3"
        assert rows(wh, "SELECT run_key FROM _runyard.loads ORDER BY ALL") == [("r1",), ("r2",)]
    finally:
        wh.close()
