"""Which warehouse a URL names: the provider every process opens its accounts' warehouses through.

A folder (or `duckdb://<folder>`) is the embedded default: one DuckDB file per account. A PostgreSQL URL
(`postgresql+psycopg://`, `postgresql://`) is one database shared by every process, one schema per account
(runyard.warehouse.postgres).
"""

from __future__ import annotations

from pathlib import Path

from runyard.errors import ConfigError
from runyard.settings import is_postgres_url
from runyard.warehouse.base import WarehouseProvider

DUCKDB_SCHEME = "duckdb://"


def open_warehouses(url: str) -> WarehouseProvider:
    """The provider for `url`; ConfigError naming RUNYARD_WAREHOUSE_URL when runyard cannot open it."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "duckdb", "file"):
        from runyard.warehouse.duckdb import DuckDBWarehouses  # only processes that load data pay for duckdb

        return DuckDBWarehouses(directory_of(url))
    if is_postgres_url(url):
        from runyard.warehouse.postgres import PostgresWarehouses  # psycopg, only where a warehouse is used

        return PostgresWarehouses(url)
    raise ConfigError(
        f"runyard cannot open a {scheme}:// warehouse yet; use a folder for DuckDB", field="RUNYARD_WAREHOUSE_URL"
    )


def prepare_warehouse(url: str) -> str | None:
    """Create what the warehouse at `url` needs before any process uses it (`runyard db upgrade`): runyard's
    bookkeeping schema on PostgreSQL; None for DuckDB, whose files prepare themselves when opened."""
    if not is_postgres_url(url):
        return None
    from runyard.warehouse.postgres import PostgresWarehouses

    return PostgresWarehouses(url).prepare()


def directory_of(url: str) -> Path:
    """The folder of a DuckDB warehouse URL (`duckdb://<folder>`, `file://<folder>` or a plain path)."""
    path = url.split("://", 1)[1] if "://" in url else url
    return Path(path).resolve()
