"""The warehouse contract: every backend-neutral behaviour of `runyard.warehouse.base.Warehouse`, written once and
run on each backend `open_warehouses` opens (DuckDB files, PostgreSQL databases).

The tests speak to the protocol alone. SQL they run themselves (`Warehouse.query`, `read`) is portable: tables are
named unqualified (both backends put the account's tables first on the search path), no dialect's extensions. Where
the backends legitimately differ (type names, the database's error wording), the tests compare what the words mean
(`kind_of`), not the words.

`warehouse` is account "acme" of a fresh provider: a new folder for DuckDB, a new empty database on the test
PostgreSQL server (RUNYARD_TEST_POSTGRES_URL; skipped without it, failed under CI=true). `globex` is a second
account of that same provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from runyard.warehouse.base import LoadRequest, LoadResult, TableLoad, Warehouse, WarehouseProvider
from runyard.warehouse.provider import open_warehouses
from tests.conftest import drop_postgres_warehouse, new_postgres_warehouse_url

ACCOUNT = "acme"
OTHER_ACCOUNT = "globex"
PROVIDERS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseProvider]:
    """A fresh provider of each backend; every warehouse it opened is closed at teardown."""
    if request.param == "duckdb":
        warehouses = open_warehouses(str(tmp_path / "warehouse"))
        try:
            yield warehouses
        finally:
            warehouses.close_all()
        return
    url = new_postgres_warehouse_url()
    try:
        warehouses = open_warehouses(url)
        try:
            yield warehouses
        finally:
            warehouses.close_all()
    finally:
        drop_postgres_warehouse(url)


@pytest.fixture
def warehouse(provider: WarehouseProvider) -> Warehouse:
    """Account "acme"'s warehouse, empty."""
    return provider.for_account(ACCOUNT)


@pytest.fixture
def globex(provider: WarehouseProvider) -> Warehouse:
    """Account "globex"'s warehouse, of the same provider as `warehouse`: for isolation tests."""
    return provider.for_account(OTHER_ACCOUNT)


# -- loading --------------------------------------------------------------------------------------------------------


def batches(columns: Mapping[str, Sequence[object] | pa.Array], chunk: int | None = None) -> pa.RecordBatchReader:
    return pa.table(dict(columns)).to_reader(max_chunksize=chunk)


def stage_load(
    wh: Warehouse,
    run_key: str,
    *tables: tuple[TableLoad, Mapping[str, Sequence[object] | pa.Array]],
    operation_id: int = 1,
) -> LoadResult:
    """Stage every table of a run, then load them together."""
    for table, columns in tables:
        wh.stage(run_key, table.name, batches(columns))
    return wh.load(LoadRequest(run_key=run_key, operation_id=operation_id, tables=tuple(t for t, _ in tables)))


def merge(name: str, *key: str, hwm: str | None = None) -> TableLoad:
    return TableLoad(
        name=name, mode="merge", primary_key=key, cursor_field="updated" if hwm else None, high_watermark=hwm
    )


def replace(name: str) -> TableLoad:
    return TableLoad(name=name, mode="replace")


# -- comparing what the backends say in their own words -------------------------------------------------------------

_KINDS = {
    "integer": ("BIGINT", "INTEGER", "INT", "INT2", "INT4", "INT8", "SMALLINT", "TINYINT", "HUGEINT"),
    "float": ("DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT4", "FLOAT8", "REAL"),
    "text": ("VARCHAR", "TEXT", "CHARACTER VARYING", "STRING"),
    "boolean": ("BOOLEAN", "BOOL"),
}


def kind_of(type_name: str) -> str:
    """What a column type means, in either backend's spelling: integer, float, text, boolean, timestamp (with or
    without a time zone); any other type as its name, upper case."""
    name = type_name.strip().upper()
    for kind, names in _KINDS.items():
        if name in names:
            return kind
    if name.startswith("TIMESTAMP"):
        return "timestamp"
    return name


def kinds(columns: Mapping[str, str] | None) -> dict[str, str] | None:
    """`Warehouse.columns()` with every type as its kind."""
    return None if columns is None else {name: kind_of(type_name) for name, type_name in columns.items()}


def utc(moment: object) -> datetime:
    """A timestamp as naive UTC, whether the backend returns it naive (UTC) or aware."""
    assert isinstance(moment, datetime), moment
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
