"""Warehouses: where Data Loads land. The interface is in `base`; DuckDB (embedded) in `duckdb`, PostgreSQL (shared)
in `postgres`."""

from runyard.warehouse.base import (
    LoadRequest,
    LoadResult,
    TableLoad,
    TableResult,
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
)

__all__ = [
    "LoadRequest",
    "LoadResult",
    "TableLoad",
    "TableResult",
    "Warehouse",
    "WarehouseError",
    "WarehouseUnavailable",
]
