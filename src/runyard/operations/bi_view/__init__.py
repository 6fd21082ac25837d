"""The `bi-view` type: a view declared in configuration, one SELECT over the account's warehouse tables, exported by
name (spec 004's `GET /api/integration/v2/biviews/{view}`). It is never launched: runyard.services.bi_views finds it."""
