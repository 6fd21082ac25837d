"""How a failure of the runs database is told in logs: in words, without anything secret."""

from __future__ import annotations

import sqlalchemy as sa


def describe_failure(error: BaseException) -> str:
    """For the log, e.g. "the runs database failed (AdminShutdown: terminating connection due to administrator
    command)": the database driver's own first line only, never the SQL, its parameters (lease tokens) or the
    connection string."""
    if isinstance(error, sa.exc.DBAPIError):
        cause = error.orig if error.orig is not None else error
        text = str(cause).strip()
        first = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__
        return f"the runs database failed ({first})"
    return f"unexpected error {type(error).__name__}"
