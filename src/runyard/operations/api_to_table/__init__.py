"""The `api-to-table` type: an HTTP API extracted into warehouse tables, one table per endpoint (spec 000)."""
