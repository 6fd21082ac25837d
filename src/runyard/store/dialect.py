"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


def engine_options(url: sa.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Many worker threads share the engine; each connection is used by one thread at a time.
        return {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    """WAL lets readers work while one writer writes; the busy timeout queues writers instead of failing.

    Write transactions start with BEGIN IMMEDIATE so that two writers never both read, then
    both try to upgrade to a write lock (SQLite's deadlock, answered "database is locked").
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        # SQLite's own lower() folds ASCII only; searches and sorts must fold "É" like PostgreSQL does.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def database_now(conn: Connection) -> datetime:
    """The clock every lease decision uses: the database's, so workers on other hosts agree."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def lock_for_claim(query: sa.Select[Any], conn: Connection) -> sa.Select[Any]:
    """PostgreSQL: lock the rows of every table in the query (a task and its run), skipping rows another
    transaction holds, so a claim never waits. SQLite: BEGIN IMMEDIATE already serializes writers.

    FOR NO KEY UPDATE, not FOR UPDATE: rows that merely reference a task or a run (events, messages,
    attempts) take FOR KEY SHARE on it, and must neither block nor be blocked by these locks.
    """
    if is_postgresql(conn):
        return query.with_for_update(skip_locked=True, key_share=True)
    return query


def lock_for_write(query: sa.Select[Any], conn: Connection) -> sa.Select[Any]:
    """PostgreSQL: lock the selected rows until the transaction ends (FOR NO KEY UPDATE, waiting for them).
    SQLite: nothing to do, a write transaction (BEGIN IMMEDIATE) already excludes every other writer."""
    if is_postgresql(conn):
        return query.with_for_update(key_share=True)
    return query


def skips_locked_rows(conn: Connection) -> bool:
    """True where lock_for_claim may pass over rows that other transactions hold."""
    return is_postgresql(conn)


def insert_ignoring_duplicates(table: sa.Table, conn: Connection) -> Any:
    """INSERT … ON CONFLICT DO NOTHING (both dialects spell it alike): a row that would break a unique
    constraint is skipped instead of failing, and so never aborts the surrounding transaction."""
    if is_postgresql(conn):
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def is_unique_violation(error: sa.exc.IntegrityError, constraint: str) -> bool:
    text = str(error.orig)
    return constraint in text or ("UNIQUE constraint failed" in text and "runs.operation_id" in text)


def lock_names(conn: Connection, names: list[str]) -> None:
    """Hold a lock on each name until the transaction ends, so that count-then-insert by several processes is one at
    a time per name. PostgreSQL: transaction-level advisory locks on a 64-bit hash of each name, taken in order (no
    deadlock between two callers). SQLite: nothing to do, a write transaction already excludes every other writer."""
    if not is_postgresql(conn):
        return
    for key in sorted({_lock_key(name) for name in names}):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"runyard-lock:{name}".encode()).digest()[:8], "big", signed=True)
