"""The Store: one handle on the runs database, with separate read and write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runyard.store import dialect


class Store:
    """Opens the database at `url` (SQLite or PostgreSQL). Use `write()` for anything that changes rows."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        options = dialect.engine_options(self.url)
        self._writer: Engine = sa.create_engine(self.url, **options)
        self._reader: Engine
        if self.is_sqlite:
            dialect.configure_sqlite(self._writer, immediate=True)
            self._reader = sa.create_engine(self.url, **options)
            dialect.configure_sqlite(self._reader, immediate=False)
        else:
            # PostgreSQL reads at READ COMMITTED, where every statement takes its own snapshot whether or not a
            # transaction surrounds it: BEGIN and COMMIT would only cost two round trips per read.
            self._reader = self._writer.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading. SQLite: one read transaction, so one snapshot for every statement.
        PostgreSQL: no transaction, each statement sees what was committed when it started (READ COMMITTED)."""
        with self._reader.begin() as conn:
            yield conn

    def now(self, conn: Connection) -> datetime:
        return dialect.database_now(conn)

    def dispose(self) -> None:
        self._writer.dispose()
        if self.is_sqlite:
            self._reader.dispose()
