"""The stages of a run: extract, consolidate, ingest, load. One module a stage."""
