"""The warehouse contract, accounts: a provider opens one warehouse per account, and no account sees another's."""

from __future__ import annotations

import threading
from contextlib import suppress

import pytest

from runyard.warehouse.base import ExportQuery, LoadRequest, QueryFailed, Warehouse, WarehouseError, WarehouseProvider
from tests.contract.conftest import ACCOUNT, OTHER_ACCOUNT, batches, merge, replace, stage_load


@pytest.fixture
def secret(warehouse: Warehouse) -> Warehouse:
    """acme's warehouse with a table `secret`, an operation watermark and a load record."""
    stage_load(warehouse, "r1", (merge("secret", "id", hwm="42"), {"id": [1, 2], "code": ["s1", "s2"]}))
    warehouse.query("CREATE VIEW secret_view AS SELECT code FROM secret")
    return warehouse


def test_an_accounts_tables_are_not_visible_to_another(secret: Warehouse, globex: Warehouse) -> None:
    assert globex.tables() == []
    assert globex.columns("secret") is None
    with pytest.raises(WarehouseError):
        globex.count("secret")
    for sql in ("SELECT * FROM secret", "SELECT * FROM secret_view"):
        with pytest.raises(QueryFailed, match="secret"):
            globex.read(sql, limit=10, timeout_seconds=30)
    with pytest.raises(QueryFailed):
        globex.count_rows(ExportQuery(source="secret"))
    with pytest.raises(QueryFailed), globex.export(ExportQuery(source="secret")) as reader:
        list(reader.pages(10))


def test_naming_the_other_accounts_schema_does_not_reach_it(secret: Warehouse, globex: Warehouse) -> None:
    """Whatever acme's tables live in (a file, a schema), globex's queries cannot name their way into it."""
    (schema,) = secret.read("SELECT current_schema() AS s", limit=1, timeout_seconds=30).rows[0]
    assert secret.read(f'SELECT count(*) FROM "{schema}".secret', limit=1, timeout_seconds=30).rows == [(2,)]

    for sql in (f'SELECT * FROM "{schema}".secret', f"SELECT * FROM {ACCOUNT}.secret"):
        with pytest.raises(QueryFailed):
            globex.read(sql, limit=10, timeout_seconds=30)
    # A SELECT that would move globex's session onto acme's tables (PostgreSQL's set_config; DuckDB has none).
    with suppress(QueryFailed):
        globex.read(f"SELECT set_config('search_path', '{schema}', false)", limit=1, timeout_seconds=30)
    with pytest.raises(QueryFailed):
        globex.read("SELECT * FROM secret", limit=10, timeout_seconds=30)
    assert globex.tables() == []


def test_each_account_keeps_its_own_loads_watermarks_and_staging(secret: Warehouse, globex: Warehouse) -> None:
    assert not globex.has_load("r1")
    assert globex.high_watermark(1, "secret") is None
    secret.stage("r2", "secret", batches({"id": [3], "code": ["s3"]}))
    assert globex.staged_runs() == set()
    globex.drop_staging("r2")
    assert secret.staged_runs() >= {"r2"}

    # The same run key and table name in globex: its own load, its own table.
    result = stage_load(globex, "r1", (replace("secret"), {"other": ["g"]}))

    assert result.already_loaded is False
    assert globex.query("SELECT other FROM secret") == [("g",)]
    assert secret.query("SELECT id, code FROM secret ORDER BY id") == [(1, "s1"), (2, "s2")]
    assert secret.high_watermark(1, "secret") == "42"
    assert secret.load(LoadRequest("r2", 1, (merge("secret", "id"),))).already_loaded is False
    assert globex.count("secret") == 1


def test_another_accounts_built_tables_are_not_inputs(secret: Warehouse, globex: Warehouse) -> None:
    with secret.transform("r9", []) as session:
        session.build("built", "SELECT id FROM secret", [])

    with pytest.raises(WarehouseError), globex.transform("r9", ["built"]):
        pass


def test_one_warehouse_per_account_until_close_all(provider: WarehouseProvider) -> None:
    got: list[Warehouse] = []
    barrier = threading.Barrier(4)

    def open_acme() -> None:
        barrier.wait(timeout=10)
        got.append(provider.for_account(ACCOUNT))

    threads = [threading.Thread(target=open_acme) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    other = provider.for_account(OTHER_ACCOUNT)

    assert len(got) == 4
    assert all(w is got[0] for w in got)
    assert other is not got[0]
    assert {id(w) for w in provider.opened()} == {id(got[0]), id(other)}
    stage_load(got[0], "r1", (replace("kept"), {"id": [1]}))

    provider.close_all()

    assert list(provider.opened()) == []
    with pytest.raises(WarehouseError):
        other.count("kept")
    reopened = provider.for_account(ACCOUNT)
    assert reopened.count("kept") == 1
    assert reopened.has_load("r1")


def test_a_closed_warehouse_refuses_calls(provider: WarehouseProvider) -> None:
    warehouse = provider.for_account(ACCOUNT)
    warehouse.close()
    warehouse.close()  # closing twice is harmless

    with pytest.raises(WarehouseError):
        warehouse.count("a")
    with pytest.raises(WarehouseError):
        warehouse.stage("r1", "a", batches({"id": [1]}))
