"""Which process leads the scheduler: exactly one among every `runyard serve` and `runyard worker` on one store.

The leader holds a lock that the database server or the operating system lets go of when the process dies,
SIGKILL included, so another process takes over at its next try (each scheduler loop, about a second):

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its own, kept open as long
  as the process runs. A broken connection loses the lock with the session, so leadership ends with it.
- SQLite (embedded): an exclusive `flock` on `<database file>.scheduler.lock`, next to the database.

Leading only says which process fires schedule ticks; it never makes firing safe on its own. A tick is checked and
recorded under the operation's row lock (runyard.services.schedules), so two processes that both believe they
lead for a moment still fire it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from runyard.store.database import Store
from runyard.store.failures import describe_failure

log = logging.getLogger("runyard.scheduler")

#: The advisory lock key of runyard's scheduler ("runyard" in ASCII). Advisory locks are per database, so stores
#: in other databases of the same server do not compete for it.
SCHEDULER_LOCK_KEY = 0x72756E79617264
CONNECT_TIMEOUT_SECONDS = 5
# How soon the server notices a leader whose host vanished (no FIN, unlike a killed process): keepalive probes
# after 10 s idle, every 5 s, 3 unanswered. Without them the lock could be held for the OS default of hours.
_SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3")


class Leadership(Protocol):
    """The scheduler's lock: `try_lead()` each loop (True while this process leads), `release()` when stopping."""

    @property
    def description(self) -> str: ...

    def try_lead(self) -> bool: ...

    def release(self) -> None: ...


def leadership_for(store: Store) -> Leadership:
    """The lock that fits the store: an advisory lock on PostgreSQL, a lock file next to a SQLite database."""
    if not store.is_sqlite:
        return AdvisoryLock(store.url)
    database = store.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return SoleProcess()  # no other process can open this database
    return FileLock(Path(f"{database}.scheduler.lock"))


class SoleProcess:
    """An in-memory database: only this process sees it, so it leads."""

    description = "the only process on an in-memory database"

    def try_lead(self) -> bool:
        return True

    def release(self) -> None:
        pass


class FileLock:
    """An exclusive, non-blocking flock on `path`, held on an open file for as long as this process leads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def description(self) -> str:
        return f"lock file {self.path}"

    def try_lead(self) -> bool:
        if self._fd is not None:
            if self._still_ours(self._fd):
                return True
            log.warning("scheduler: %s was removed or replaced; giving up leadership", self.path)
            self.release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for an admin wondering who leads
        self._fd = fd
        return True

    def _still_ours(self, fd: int) -> bool:
        """Whether `path` is still the file we hold locked: a deleted lock file would let a second process lead."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file lets go of the lock
            self._fd = None


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection of its own.

    Its own engine, without a pool: a session lock on a pooled connection would go back to the pool with it, and
    whichever thread took that connection next would hold leadership without knowing. Autocommit, so the
    connection never sits idle inside a transaction.
    """

    def __init__(self, url: sa.URL, key: int = SCHEDULER_LOCK_KEY) -> None:
        self.key = key
        self._engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
        self._conn: Connection | None = None
        self._leading = False

    @property
    def description(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"

    def try_lead(self) -> bool:
        try:
            conn = self._connection()
            if self._leading:
                conn.exec_driver_sql("SELECT 1")  # the session is alive, so it holds the lock still
            else:
                acquired = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one()
                self._leading = bool(acquired)
        except sa.exc.DBAPIError as error:
            if self._leading:
                log.warning("scheduler: lost the connection that held leadership (%s)", describe_failure(error))
            self._drop()
        return self._leading

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            for statement in _SERVER_KEEPALIVES:
                conn.exec_driver_sql(statement)
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        self._leading = False
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):  # broken already: the server ends the session and its lock
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        self._drop()  # ending the session lets go of its advisory locks
        self._engine.dispose()
