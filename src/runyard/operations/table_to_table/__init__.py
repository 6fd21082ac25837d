"""The table-to-table operation type: SQL steps that build warehouse tables, published together."""
