"""The HTTP app: health now; the JSON API, the spec adapters and the UI grow here."""
