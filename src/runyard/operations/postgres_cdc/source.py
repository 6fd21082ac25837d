"""The source PostgreSQL database: its URL from the environment, connections, the catalog and the slot.

The URL holds a password, so it never reaches a message: errors name the environment variable and say what
failed, with the password cut out of the driver's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from runyard.errors import RunyardError
from runyard.operations.api_to_table.http import HostNotAllowed, HostPolicy

PLUGIN = "wal2json"
# Both the snapshot and the stream print values under these settings, so that their text is the same
# (wal2json prints values with the output functions of the session that peeks the slot).
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1"
CONNECT_TIMEOUT_SECONDS = 10
WAL2JSON_OPTIONS = (
    "format-version", "2",
    "include-transaction", "1",
    "include-timestamp", "1",
    "include-types", "1",
)  # fmt: skip


class SourceError(RunyardError):
    """The CDC source refused or failed something; the message names the variable, never the URL."""


@dataclass(frozen=True)
class Source:
    """Where the source is: the URL (secret) and the environment variable it came from (for messages)."""

    url: str
    url_env: str

    def scrub(self, text: str) -> str:
        """The driver's message without the URL's password (libpq may repeat parts of the URL)."""
        password = _password(self.url)
        first = " ".join(text.strip().split("\n")[0].split())
        return first.replace(password, "***") if password else first

    def failure(self, what: str, error: BaseException) -> SourceError:
        return SourceError(
            f"{what} on the CDC source ({self.url_env}): {self.scrub(str(error)) or type(error).__name__}"
        )


def _password(url: str) -> str | None:
    try:
        found = conninfo_to_dict(url).get("password")
        return str(found) if found else urlsplit(url).password
    except (psycopg.Error, ValueError):
        return urlsplit(url).password if "://" in url else None


def source_from(url_env: str, environ: Mapping[str, str], *, allowed_hosts: Iterable[str]) -> Source:
    """The source named by `url_env` (SourceError when the variable is unset, empty or no postgresql:// URL, or
    when its host is not allowed by RUNYARD_ALLOWED_HOSTS: checked here, before any connection)."""
    url = environ.get(url_env)
    if not url:
        state = "is not set" if url is None else "is empty"
        raise SourceError(
            f"the environment variable {url_env} (source.url_env) {state}: it must hold the CDC source's "
            "postgresql:// URL"
        )
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in ("postgresql", "postgres"):
        shown = f"a {scheme}:// URL" if scheme else "no URL"
        raise SourceError(
            f"the environment variable {url_env} (source.url_env) holds {shown}: it must hold a postgresql:// URL"
        )
    check_hosts(url, url_env, HostPolicy(allowed_hosts))
    return Source(url, url_env)


def check_hosts(url: str, url_env: str, policy: HostPolicy) -> None:
    """Refuse a source whose hosts (or hostaddrs) the policy does not allow, as api-to-table refuses its URLs (SSRF).

    libpq reads hosts from the URL and its query (`?host=`), comma-separated; a missing host or one starting
    with `/` or `@` is a Unix socket, never allowed. Names are resolved here and every address must be allowed.
    """
    try:
        params = conninfo_to_dict(url)
    except (psycopg.Error, ValueError):
        raise SourceError(f"the environment variable {url_env} (source.url_env) holds no valid URL") from None
    hosts = [h.strip() for h in str(params.get("host") or "").split(",")]
    addresses = [a.strip() for a in str(params.get("hostaddr") or "").split(",") if a.strip()]
    try:
        for host in hosts:
            if not host or host.startswith(("/", "@")):
                raise HostNotAllowed(host or "(none)", "a Unix socket is never allowed; name the host")
            if not addresses:
                policy.addresses(host)
        for address in addresses:
            policy.addresses(address)
    except HostNotAllowed as error:
        raise SourceError(f"the CDC source ({url_env}) is refused: {error}") from None
    except httpx.ConnectError as error:
        raise SourceError(f"cannot connect to the CDC source ({url_env}): {error}") from None


@contextmanager
def connect(source: Source, *, replication: bool = False, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    """A connection to the source (with replication=database for the slot's creation), closed at the end."""
    extra: dict[str, Any] = {"replication": "database"} if replication else {"options": SESSION_OPTIONS}
    extra.update(connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="runyard-cdc")
    try:
        conn = psycopg.connect(source.url, autocommit=autocommit, **extra)
    except psycopg.Error as error:
        raise SourceError(f"cannot connect to the CDC source ({source.url_env}): {source.scrub(str(error))}") from None
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class TableLayout:
    """A source table's columns (name -> type as format_type prints it), in order, and its primary key."""

    table: str
    columns: dict[str, str]
    primary_key: tuple[str, ...]


def describe(conn: psycopg.Connection, source: Source, table: str) -> TableLayout:
    """The table's layout; SourceError when it does not exist or has no primary key."""
    schema, name = table.split(".", 1)
    quoted = f'"{schema}"."{name}"'
    try:
        columns = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (quoted,),
        ).fetchall()
        key = conn.execute(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n",
            (quoted,),
        ).fetchall()
    except psycopg.Error as error:
        raise source.failure(f"reading the columns of {table} failed", error) from None
    if not columns:
        raise SourceError(
            f"the table {table} does not exist on the CDC source ({source.url_env}), or its user cannot see it"
        )
    if not key:
        raise SourceError(
            f"the table {table} has no primary key: postgres-cdc needs one to apply updates and deletes "
            f"(add one with ALTER TABLE {table} ADD PRIMARY KEY (...))"
        )
    return TableLayout(table, {str(n): str(t) for n, t in columns}, tuple(str(k) for (k,) in key))


def slot_exists(conn: psycopg.Connection, source: Source, slot: str) -> bool:
    """Whether the slot exists (SourceError if it belongs to another database or decodes with another plugin)."""
    try:
        row = conn.execute(
            "SELECT database = current_database(), plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    except psycopg.Error as error:
        raise source.failure("reading the replication slots failed", error) from None
    if row is None:
        return False
    same_database, plugin = row
    if not same_database or plugin != PLUGIN:
        raise SourceError(
            f"the replication slot {slot} exists on the CDC source ({source.url_env}) for another database or "
            f"plugin ({plugin}); choose another slot name"
        )
    return True


def drop_slot(conn: psycopg.Connection, source: Source, slot: str) -> None:
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.Error as error:
        raise source.failure(f"dropping the replication slot {slot} failed", error) from None


def create_slot(replication: psycopg.Connection, source: Source, slot: str) -> tuple[str, str]:
    """Create the slot on a replication connection; (its consistent point as text, the exported snapshot's name).

    The snapshot stays importable while `replication` runs nothing else and stays open."""
    command = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} EXPORT_SNAPSHOT").format(
        sql.Identifier(slot), sql.Identifier(PLUGIN)
    )
    try:
        row = replication.execute(command).fetchone()  # no parameters: the simple protocol walsenders speak
    except psycopg.Error as error:
        raise source.failure(f"creating the replication slot {slot} failed", error) from None
    assert row is not None
    return row[1], row[2]


def peek(conn: psycopg.Connection, slot: str, limit: int, tables: Sequence[str]) -> list[tuple[str, str, str]]:
    """At most about `limit` changes (whole transactions) after the slot's confirmed position: (lsn, xid, data)."""
    options = [*WAL2JSON_OPTIONS, "add-tables", ",".join(tables)]
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(options))
    query = sql.SQL("SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, {})").format(
        placeholders
    )
    return [(str(a), str(b), str(c)) for a, b, c in conn.execute(query, (slot, limit, *options)).fetchall()]


def advance(conn: psycopg.Connection, slot: str, lsn: str) -> None:
    """Confirm everything up to `lsn`: the slot gives it no more and the source may recycle its WAL."""
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, lsn))
