"""A source PostgreSQL database of its own for each CDC test, and row-by-row comparisons with the warehouse.

`cdc_source()` creates a database with a unique name on the test server (RUNYARD_TEST_POSTGRES_URL; under
CI=true a missing server fails, as tests.conftest has it) and, whatever happens, drops its replication slots
(ending the sessions that hold them) and the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa

from runyard.warehouse.base import LOADED_AT_COLUMN, Warehouse
from tests.conftest import postgres_admin_url

# Types the warehouse holds as text are compared as PostgreSQL prints them.
_AS_TEXT = ("numeric", "jsonb", "json", "ARRAY", "uuid", "interval", "time without time zone", "USER-DEFINED")


def admin_dsn() -> str:
    return sa.make_url(postgres_admin_url()).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class SourceDb:
    name: str
    url: str  # postgresql://..., what a configuration's url_env holds

    def execute(self, *statements: str, params: Sequence[Any] = ()) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement, params or None)  # type: ignore[arg-type]

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, options="-c TimeZone=UTC") as conn:
            return list(conn.execute(statement, params or None).fetchall())  # type: ignore[arg-type]

    def columns(self, table: str) -> list[tuple[str, str, int | None]]:
        """(name, data_type, numeric_precision) of a public table, in order."""
        return [
            (str(name), str(kind), precision)
            for name, kind, precision in self.query(
                "SELECT column_name, data_type, numeric_precision FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                (table,),
            )
        ]

    def rows(self, table: str, key: str = "id") -> list[tuple[Any, ...]]:
        selected = []
        for name, kind, precision in self.columns(table):
            text = kind in _AS_TEXT and not (kind == "numeric" and precision is not None)
            selected.append(f'"{name}"::text' if text else f'"{name}"')
        return self.query(f"SELECT {', '.join(selected)} FROM public.{table} ORDER BY {key}")

    def slot_confirmed(self, slot: str) -> str | None:
        rows = self.query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        return str(rows[0][0]) if rows else None

    def flush(self) -> None:
        """Write the WAL to disk: the test server commits with synchronous_commit off, and logical decoding
        reads only flushed WAL."""
        with psycopg.connect(self.url, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")
            conn.execute("SELECT txid_current()")

    def pending_changes(self, slot: str, tables: Sequence[str]) -> int | None:
        """How many changes of `tables` the slot still holds (None when the stream peeks at it right now)."""
        try:
            rows = self.query(
                "SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, NULL, 'format-version', '2', "
                "'include-transaction', '0', 'add-tables', %s)",
                (slot, ",".join(tables)),
            )
        except psycopg.errors.ObjectInUse:
            return None
        return int(rows[0][0])


def warehouse_rows(warehouse: Warehouse, table: str, columns: Sequence[str], key: str = "id") -> list[tuple[Any, ...]]:
    """The warehouse table's rows in `columns` (every source column; the load time left out), by key."""
    if warehouse.columns(table) is None:
        return []
    have = {name.lower() for name in warehouse.columns(table) or {}}
    selected = ", ".join(f'"{c}"' if c.lower() in have else "NULL" for c in columns if c != LOADED_AT_COLUMN)
    result = warehouse.read(
        f'SELECT {selected} FROM main."{table}" ORDER BY "{key}"',
        limit=1_000_000,
        timeout_seconds=30,
    )
    return result.rows


@contextmanager
def cdc_source() -> Iterator[SourceDb]:
    dsn = admin_dsn()
    name = f"cdc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield SourceDb(name, sa.make_url(dsn).set(database=name).render_as_string(hide_password=False))
    finally:
        drop_source(dsn, name)


def drop_source(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
            (name,),
        )
        for (slot,) in admin.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            try:
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.errors.ObjectInUse:  # its session is still ending
                admin.execute("SELECT pg_sleep(0.5)")
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
