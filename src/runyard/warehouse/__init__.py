"""Warehouses: where Data Loads land. The interface is in `base`; DuckDB (embedded) in `duckdb`."""

from runyard.warehouse.base import (
    LoadRequest,
    LoadResult,
    TableLoad,
    TableResult,
    Warehouse,
    WarehouseError,
)

__all__ = ["LoadRequest", "LoadResult", "TableLoad", "TableResult", "Warehouse", "WarehouseError"]
