"""The DuckDB warehouse on real files with real Arrow data: loads, exactly once, isolation, R2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from runyard.warehouse import LoadRequest, LoadResult, TableLoad, TableResult, WarehouseError
from runyard.warehouse.duckdb import CONFIG, DuckDBWarehouse, DuckDBWarehouses

EVIL = 'a"; DROP TABLE x; --'


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


# -- isolation ----------------------------------------------------------------------------


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


# -- replace and merge --------------------------------------------------------------------


def test_replace_replaces_rows_and_columns(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (replace("users"), {"id": [1, 2, 3], "name": ["a", "b", "c"]}))
    result = load(wh, "r2", (replace("users"), {"id": [9], "email": ["z@x"]}))

    assert result == LoadResult(already_loaded=False, tables=(TableResult(name="users", rows=1, staged=1),))
    assert rows(wh, "SELECT * FROM users") == [(9, "z@x")]
    assert wh.columns("users") == {"id": "BIGINT", "email": "VARCHAR"}


def test_merge_creates_then_upserts_on_the_key(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("users", "id"), {"id": [1, 2, 3], "name": ["a", "b", "c"]}))
    result = load(wh, "r2", (merge("users", "id"), {"id": [2, 4, 2], "name": ["b-old", "d", "b-new"]}))

    assert result.tables == (TableResult(name="users", rows=4, staged=3),)
    assert rows(wh, "SELECT id, name FROM users ORDER BY id") == [(1, "a"), (2, "b-new"), (3, "c"), (4, "d")]
    assert rows(wh, "SELECT count(*) FROM (SELECT id FROM users GROUP BY id HAVING count(*) > 1)") == [(0,)]


def test_merge_keeps_the_last_staged_row_of_a_key_across_batches(wh: DuckDBWarehouse) -> None:
    n = 10_000
    ids = [i % 100 for i in range(n)]
    wh.stage("r1", "events", batches({"id": ids, "seq": list(range(n))}, chunk=37))
    wh.load(LoadRequest("r1", 1, (merge("events", "id"),)))

    assert wh.count("events") == 100
    assert rows(wh, "SELECT min(seq), max(seq) FROM events") == [(n - 100, n - 1)]


def test_merge_on_a_composite_key_with_nulls(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("t", "a", "b"), {"a": [1, 1, None], "b": ["x", "y", "z"], "v": [1, 2, 3]}))
    load(wh, "r2", (merge("t", "a", "b"), {"a": [1, None], "b": ["y", "z"], "v": [20, 30]}))

    assert rows(wh, "SELECT a, b, v FROM t ORDER BY b") == [(1, "x", 1), (1, "y", 20), (None, "z", 30)]


def test_merge_adds_new_columns_old_rows_get_null(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("users", "id"), {"id": [1, 2], "name": ["a", "b"]}))
    load(wh, "r2", (merge("users", "id"), {"id": [3], "name": ["c"], "email": ["c@x"]}))

    assert wh.columns("users") == {"id": "BIGINT", "name": "VARCHAR", "email": "VARCHAR"}
    assert rows(wh, "SELECT id, email FROM users ORDER BY id") == [(1, None), (2, None), (3, "c@x")]


def test_merge_keeps_columns_the_new_run_lacks(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("users", "id"), {"id": [1], "name": ["a"]}))
    load(wh, "r2", (merge("users", "id"), {"id": [2]}))

    assert rows(wh, "SELECT id, name FROM users ORDER BY id") == [(1, "a"), (2, None)]


def test_merge_widens_integer_to_double(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("prices", "id"), {"id": [1, 2], "price": [10, 20]}))
    load(wh, "r2", (merge("prices", "id"), {"id": [2, 3], "price": [20.5, 30.25]}))

    assert wh.columns("prices") == {"id": "BIGINT", "price": "DOUBLE"}
    assert rows(wh, "SELECT id, price FROM prices ORDER BY id") == [(1, 10.0), (2, 20.5), (3, 30.25)]


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


def test_merge_without_a_key_appends(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("log"), {"line": ["a", "b"]}))
    result = load(wh, "r2", (merge("log"), {"line": ["a"]}))

    assert result.tables == (TableResult(name="log", rows=3, staged=1),)
    assert rows(wh, "SELECT line FROM log ORDER BY line") == [("a",), ("a",), ("b",)]


# -- exactly once and atomicity -----------------------------------------------------------


def test_a_repeated_load_of_a_run_is_a_no_op(wh: DuckDBWarehouse) -> None:
    first = load(wh, "r1", (merge("log", hwm="5"), {"line": ["a", "b"]}))
    assert wh.has_load("r1")
    wh.stage("r1", "log", batches({"line": ["c"]}))

    again = wh.load(LoadRequest("r1", 1, (merge("log", hwm="9"),)))

    assert again == LoadResult(already_loaded=True, tables=first.tables)
    assert wh.count("log") == 2
    assert wh.high_watermark(1, "log") == "5"
    assert rows(wh, "SELECT count(*) FROM _runyard.loads") == [(1,)]


def test_the_load_record_lists_the_tables(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (replace("a"), {"x": [1]}), (merge("b", "x"), {"x": [1, 1]}), operation_id=7)

    [(operation_id, tables)] = rows(wh, "SELECT operation_id, tables::VARCHAR FROM _runyard.loads WHERE run_key = 'r1'")
    assert operation_id == 7
    assert '"name": "b"' in str(tables)
    assert '"staged": 2' in str(tables)


def _snapshot(wh: DuckDBWarehouse) -> dict[str, object]:
    return {
        "a": rows(wh, "SELECT * FROM a ORDER BY id"),
        "a_columns": wh.columns("a"),
        "b": rows(wh, "SELECT * FROM b ORDER BY id"),
        "c": wh.columns("c"),
        "state": rows(wh, "SELECT operation_id, table_name, high_watermark FROM _runyard.state ORDER BY ALL"),
        "loads": rows(wh, "SELECT run_key FROM _runyard.loads ORDER BY ALL"),
    }


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (merge("c", "id"), "table 'c' was not staged"),
        (merge("a", "no_such_column"), "primary key column(s) 'no_such_column' are not among the staged columns"),
    ],
)
def test_a_failure_anywhere_leaves_every_table_unchanged(wh: DuckDBWarehouse, broken: TableLoad, message: str) -> None:
    load(wh, "r1", (merge("a", "id", hwm="1"), {"id": [1, 2], "v": [1, 2]}), (replace("b"), {"id": [1]}))
    before = _snapshot(wh)
    wh.stage("r2", "a", batches({"id": [2, 3], "v": [2.5, 3.5], "new": ["n", "n"]}))
    wh.stage("r2", "b", batches({"id": [7, 8, 9]}))
    tables = (merge("a", "id", hwm="2"), replace("b"), broken) if broken.name == "c" else (replace("b"), broken)

    with pytest.raises(WarehouseError, match="^run r2: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        wh.load(LoadRequest("r2", 1, tables))

    assert _snapshot(wh) == before
    assert not wh.has_load("r2")


def test_an_invalid_request_is_refused_before_anything_runs(wh: DuckDBWarehouse) -> None:
    wh.stage("r1", "a", batches({"id": [1]}))
    with pytest.raises(WarehouseError, match="loaded twice"):
        wh.load(LoadRequest("r1", 1, (replace("a"), merge("A", "id"))))
    with pytest.raises(WarehouseError, match="load mode 'upsert'"):
        wh.load(LoadRequest("r1", 1, (TableLoad(name="a", mode="upsert"),)))  # type: ignore[arg-type]
    assert wh.columns("a") is None


def test_the_high_watermark_round_trips(wh: DuckDBWarehouse) -> None:
    assert wh.high_watermark(1, "events") is None
    load(wh, "r1", (merge("events", "id", hwm="2024-01-01T00:00:00Z"), {"id": [1]}))
    load(wh, "r2", (merge("events", "id", hwm="2024-02-01T00:00:00Z"), {"id": [2]}), operation_id=2)
    assert wh.high_watermark(1, "events") == "2024-01-01T00:00:00Z"

    load(wh, "r3", (merge("events", "id", hwm="2024-03-01T00:00:00Z"), {"id": [3]}))
    load(wh, "r4", (merge("events", "id"), {"id": [4]}))  # no watermark: the stored one stays

    assert wh.high_watermark(1, "events") == "2024-03-01T00:00:00Z"
    assert wh.high_watermark(2, "events") == "2024-02-01T00:00:00Z"


# -- names ----------------------------------------------------------------------------------


def test_odd_names_are_only_names(wh: DuckDBWarehouse) -> None:
    wh.query("CREATE TABLE x (keep INTEGER)")
    wh.query("INSERT INTO x VALUES (1)")
    table = f"tablé {EVIL}"
    columns: dict[str, Sequence[object]] = {EVIL: [1, 2], "名前": ["a", "b"], "with space": [True, False]}
    load(wh, "r1", (merge(table, EVIL), columns))
    load(wh, "r2", (merge(table, EVIL), {EVIL: [2, 3], "名前": ["b2", "c"], 'new"col': [1.5, 2.5]}))

    assert wh.columns(table) == {EVIL: "BIGINT", "名前": "VARCHAR", "with space": "BOOLEAN", 'new"col': "DOUBLE"}
    assert wh.count(table) == 3
    assert rows(wh, "SELECT * FROM x") == [(1,)]
    assert rows(wh, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'x'") == [(1,)]
    assert wh.high_watermark(1, table) is None
    wh.drop_staging("r1")
    assert wh.count(table) == 3


def test_table_names_are_case_insensitive_like_duckdb(wh: DuckDBWarehouse) -> None:
    load(wh, "r1", (merge("Users", "id"), {"id": [1]}))
    load(wh, "r2", (merge("users", "ID"), {"ID": [1, 2]}))

    assert wh.columns("USERS") == {"id": "BIGINT"}
    assert wh.count("users") == 2


# -- staging ----------------------------------------------------------------------------------


def test_stage_counts_and_restaging_replaces(wh: DuckDBWarehouse) -> None:
    assert wh.stage("r1", "a", batches({"id": [1, 2, 3]}, chunk=2)) == 3
    assert wh.stage("r1", "a", batches({"id": [1]})) == 1
    assert wh.load(LoadRequest("r1", 1, (replace("a"),))).tables == (TableResult(name="a", rows=1, staged=1),)


def test_stage_refuses_what_it_cannot_stage(wh: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match="no columns"):
        wh.stage("r1", "a", pa.table({}).to_reader())
    with pytest.raises(WarehouseError, match="reserved"):
        wh.stage("r1", "a", batches({"_runyard_row": [1]}))
    with pytest.raises(WarehouseError, match="must not contain"):
        wh.stage("r1__x", "a", batches({"id": [1]}))


def test_drop_staging_drops_only_that_runs_tables(wh: DuckDBWarehouse) -> None:
    for run_key in ("r1", "r10"):
        wh.stage(run_key, "a", batches({"id": [1]}))
        wh.stage(run_key, "b", batches({"id": [1]}))

    wh.drop_staging("r1")
    wh.drop_staging("r1")  # idempotent

    staged = rows(
        wh, "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '_runyard_staging__') ORDER BY ALL"
    )
    assert staged == [("_runyard_staging__r10__a",), ("_runyard_staging__r10__b",)]
    with pytest.raises(WarehouseError, match="not staged"):
        wh.load(LoadRequest("r1", 1, (replace("a"),)))


def test_two_threads_stage_at_once(wh: DuckDBWarehouse) -> None:
    barrier = threading.Barrier(2)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def stage(table: str) -> None:
        try:
            barrier.wait(timeout=10)
            counts[table] = wh.stage("r1", table, batches({"id": list(range(200_000))}, chunk=1000))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=stage, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert counts == {"a": 200_000, "b": 200_000}
    result = wh.load(LoadRequest("r1", 1, (replace("a"), replace("b"))))
    assert [t.rows for t in result.tables] == [200_000, 200_000]


def test_columns_and_count_of_a_missing_table(wh: DuckDBWarehouse) -> None:
    assert wh.columns("nope") is None
    with pytest.raises(WarehouseError, match="cannot count table 'nope'"):
        wh.count("nope")


def test_a_closed_warehouse_refuses_calls(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.close()
    warehouse.close()
    with pytest.raises(WarehouseError, match="is closed"):
        warehouse.count("a")


# -- one file per account ---------------------------------------------------------------------


def test_one_instance_per_account(tmp_path: Path) -> None:
    warehouses = DuckDBWarehouses(tmp_path / "warehouse")
    got: list[DuckDBWarehouse] = []
    barrier = threading.Barrier(4)

    def open_acme() -> None:
        barrier.wait(timeout=10)
        got.append(warehouses.for_account("acme"))

    threads = [threading.Thread(target=open_acme) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    other = warehouses.for_account("globex")
    try:
        assert len(got) == 4
        assert all(w is got[0] for w in got)
        assert other is not got[0]
        assert got[0].path == tmp_path / "warehouse" / "acme.duckdb"
        assert sorted(p.name for p in (tmp_path / "warehouse").glob("*.duckdb")) == ["acme.duckdb", "globex.duckdb"]
    finally:
        warehouses.close_all()
    with pytest.raises(WarehouseError, match="is closed"):
        other.count("a")


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
