"""Web UI sessions signed out on the server: a copied session cookie stops working when its owner signs out.

A session cookie is signed, not stored, so it would stay valid until it expires. Signing out records the session's
nonce (its sha256: the nonce keys the CSRF token) in `revoked_sessions` until the moment the cookie would have
expired; every UI request checks it, by primary key, next to the user's role and active flag it already reads.
Records of sessions that have expired anyway are deleted as new ones come.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa

from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import revoked_sessions

# Built once: every UI request runs it.
_REVOKED = sa.select(revoked_sessions.c.nonce_key).where(revoked_sessions.c.nonce_key == sa.bindparam("nonce_key"))


def revoke_session(store: Store, nonce: str, expires_at: int) -> None:
    """Refuse the session with this nonce from now on (again is a no-op). `expires_at`: the cookie's, unix seconds."""
    with store.write() as conn:
        now = store.now(conn)
        conn.execute(revoked_sessions.delete().where(revoked_sessions.c.expires_at <= now))
        conn.execute(
            dialect.insert_ignoring_duplicates(revoked_sessions, conn).values(
                nonce_key=_key(nonce), expires_at=datetime.fromtimestamp(expires_at, UTC)
            )
        )


def is_revoked(store: Store, nonce: str) -> bool:
    """Whether the session with this nonce was signed out."""
    with store.read() as conn:
        return conn.execute(_REVOKED, {"nonce_key": _key(nonce)}).first() is not None


def _key(nonce: str) -> str:
    return hashlib.sha256(f"session:{nonce}".encode()).hexdigest()
