"""Idempotency keys for launches and retries: the same request, sent again because its answer was lost, answers the
run the first one made instead of making another (the `Idempotency-Key` header, as Stripe's API and the IETF draft
draft-ietf-httpapi-idempotency-key-header have it).

A key belongs to an account and names one request: what it launched (operation, run type) or retried (run). Sent
again with that request within KEY_TTL, it answers the run that request made, whatever has happened to it since;
sent with another request, IdempotencyKeyReused (nothing done). Requests with the same key wait for each other
(`lock`), so two sent at once make one run. A key is stored in the launch's own transaction: a launch that was
rolled back, refused or throttled leaves no key, and sending it again launches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.errors import IdempotencyKeyReused
from runyard.store import dialect
from runyard.store.tables import launch_keys

KEY_TTL = timedelta(hours=24)
#: What a key may hold: 1 to 255 printable ASCII characters (the header's value, as clients generate them: UUIDs).
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"


def describe(operation_id: int, run_type: str, retry_of: int | None) -> str:
    """The request a key names, in words: what is stored with the key and compared when it is sent again."""
    if retry_of is not None:
        return f"retry of run {retry_of}"
    return f"{run_type} launch of operation {operation_id}"


def lock(conn: Connection, account_id: int, key: str) -> None:
    """Until the transaction ends, other requests with this key wait (PostgreSQL; SQLite's writer is alone already)."""
    dialect.lock_names(conn, [f"launch-key:{account_id}:{key}"])


def recall(conn: Connection, account_id: int, key: str, request: str, now: datetime) -> int | None:
    """The run the key's request made, when the key was sent within KEY_TTL; None when it is new (or expired).
    IdempotencyKeyReused when it was sent with another request."""
    row = conn.execute(
        sa.select(launch_keys.c.request, launch_keys.c.run_id, launch_keys.c.created_at).where(
            launch_keys.c.account_id == account_id, launch_keys.c.key == key
        )
    ).first()
    if row is None or row.created_at <= now - KEY_TTL:
        return None
    if row.request != request:
        raise IdempotencyKeyReused(row.request)
    return int(row.run_id)


def remember(conn: Connection, account_id: int, key: str, request: str, run_id: int, now: datetime) -> None:
    """Store the key with the run its request made; the account's expired keys go."""
    conn.execute(
        launch_keys.delete().where(launch_keys.c.account_id == account_id, launch_keys.c.created_at <= now - KEY_TTL)
    )
    conn.execute(
        launch_keys.insert().values(account_id=account_id, key=key, request=request, run_id=run_id, created_at=now)
    )
