"""Per-account rate limits: SQL Explorer queries and export starts, counted in the store, in a sliding minute.

Every SQL Explorer query (the API, the web UI's run and CSV download, the CLI through the API) and every export
started (spec 004's page 1, the Exports page's Start) is one event of its account in the store's `rate_limit_events`
table, so every HTTP process of every server counts the same events (the store is the coordinator; PostgreSQL
advisory locks make the count-then-record one at a time per account and kind). Past RUNYARD_SQL_QUERIES_PER_MINUTE
or RUNYARD_EXPORTS_PER_MINUTE events in the last minute, `reserve` raises AccountThrottled (429 with Retry-After)
and records nothing: the query does not run, the export does not start. The event is recorded before the work, so
concurrent requests cannot all slip under the limit. Pages 2..N of a started export are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.rate_limits import SlidingWindow, whole_seconds
from runyard.errors import TooManyRequests
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import rate_limit_events

WINDOW = timedelta(minutes=1)
SQL_QUERIES = "sql_query"
EXPORTS = "export"


@dataclass(frozen=True)
class AccountLimit:
    """At most `per_minute` events of `kind` per account in any minute; `what` and `setting` name it in answers."""

    kind: str
    what: str
    setting: str
    per_minute: int

    @property
    def window(self) -> SlidingWindow:
        return SlidingWindow(self.per_minute, WINDOW)


def sql_query_limit(per_minute: int) -> AccountLimit:
    return AccountLimit(SQL_QUERIES, "SQL queries", "RUNYARD_SQL_QUERIES_PER_MINUTE", per_minute)


def export_limit(per_minute: int) -> AccountLimit:
    return AccountLimit(EXPORTS, "exports started", "RUNYARD_EXPORTS_PER_MINUTE", per_minute)


class AccountThrottled(TooManyRequests):
    """The account reached its limit of `limit.kind` events in the last minute: this one was not started."""

    def __init__(self, limit: AccountLimit, account: str, retry_after_seconds: int) -> None:
        self.limit = limit
        self.account = account
        seconds = max(1, retry_after_seconds)
        super().__init__(
            f"Too many {limit.what}: account {account} is limited to {limit.per_minute} per minute ({limit.setting}) "
            f"and reached it; this one was not started. Try again in {seconds} s",
            seconds,
        )


def reserve(store: Store, limit: AccountLimit, account_id: int, account: str) -> None:
    """Record one event of `limit.kind` for the account, unless it already has `limit.per_minute` in the last minute:
    then AccountThrottled, and nothing is recorded."""
    with store.write() as conn:
        reserve_in(conn, store.now(conn), limit, account_id, account)


def reserve_in(conn: Connection, now: datetime, limit: AccountLimit, account_id: int, account: str) -> None:
    """`reserve` inside the caller's write transaction (`now`: the store's clock), so that the work it allows is
    recorded in the same commit: AccountThrottled before anything is written."""
    window = limit.window
    dialect.lock_names(conn, [f"rate-limit:{limit.kind}:{account_id}"])
    wait = window.wait(_recent(conn, limit, account_id, window, now), now)
    if wait is not None:
        raise AccountThrottled(limit, account, whole_seconds(wait))
    mine = (rate_limit_events.c.kind == limit.kind) & (rate_limit_events.c.account_id == account_id)
    conn.execute(rate_limit_events.delete().where(mine, rate_limit_events.c.happened_at <= window.cutoff(now)))
    conn.execute(rate_limit_events.insert().values(kind=limit.kind, account_id=account_id, happened_at=now))


def _recent(
    conn: Connection, limit: AccountLimit, account_id: int, window: SlidingWindow, now: datetime
) -> list[datetime]:
    """The newest `window.limit` events of the account and kind inside the window: all `window.wait` needs."""
    query = (
        sa.select(rate_limit_events.c.happened_at)
        .where(
            rate_limit_events.c.kind == limit.kind,
            rate_limit_events.c.account_id == account_id,
            rate_limit_events.c.happened_at > window.cutoff(now),
        )
        .order_by(rate_limit_events.c.happened_at.desc())
        .limit(window.limit)
    )
    return list(conn.execute(query).scalars())
