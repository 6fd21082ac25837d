"""The postgres-cdc operation type: tables of a PostgreSQL database replicated into the warehouse, change by change."""
