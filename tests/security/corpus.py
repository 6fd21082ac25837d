"""What the attack tests share: the SQL-injection payloads, and a snapshot of the runs database to compare."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from runyard.store.database import Store

#: Classic SQL-injection strings: tautologies, stacked statements, UNION probes, comment tricks, unicode quotes,
#: NUL, a time probe, and very long strings.
SQL_PAYLOADS: list[str] = [
    "' OR 1=1 --",
    "' OR '1'='1",
    '" OR ""="',
    "1; DROP TABLE runs; --",
    "1); DELETE FROM runs; --",
    "%' UNION SELECT name, sql FROM sqlite_master --",
    "%' UNION SELECT table_name, NULL FROM information_schema.tables --",
    "') OR pg_sleep(5) IS NULL --",
    "*/ OR 1=1 /*",
    "\\' OR 1=1 --",
    "\u2019 OR \u20181\u2019=\u20181",  # curly quotes
    "\u02bc; DROP TABLE runs; --",  # modifier letter apostrophe
    "\uff07 OR 1=1 --",  # fullwidth apostrophe
    "a\x00' OR 1=1 --",
    "\x00",
    "%",
    "_",
    "'" * 1500,
    "A" * 4000,
]

#: The payloads a request header can carry (printable ASCII: h11 refuses the rest before sending).
HEADER_PAYLOADS = [p for p in SQL_PAYLOADS if p.isascii() and p.isprintable() and len(p) <= 200]


def store_snapshot(store: Store) -> dict[str, int]:
    """Every table of the runs database with its row count."""
    with store.read() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        return {name: int(conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()) for name in names}


def assert_answered_safely(response: httpx.Response, what: str) -> None:
    """2xx or 4xx, never 5xx; a 4xx carries a JSON detail (spec 003: its `message`) and no database words."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body: Any = response.json()
        assert isinstance(body, dict), f"{what}: {body!r}"
        assert body.get("detail") is not None or body.get("message") is not None, f"{what}: {body!r}"
        text = response.text.lower()
        for leak in ("traceback", "sqlalchemy", "psycopg", "sqlite3.", "syntax error at or near", "/site-packages/"):
            assert leak not in text, f"{what}: the answer names {leak!r}: {response.text[:500]}"
