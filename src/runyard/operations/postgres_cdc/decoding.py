"""wal2json (format-version 2) rows decoded into transactions, and transactions into per-table batches.

With `include-transaction`, each transaction comes as a `B` row, one row per change (`I`, `U`, `D`; `T`
and `M` are ignored) and a `C` row whose LSN is the end of its commit record: the position to confirm once
the transaction is in the warehouse, and the one stored as the tables' high watermark. Values stay as
wal2json wrote them (JSON numbers as Decimal, so that numerics keep their digits); types.py converts them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from runyard.operations.postgres_cdc.lsn import parse_lsn

INSERT, UPDATE, DELETE = "I", "U", "D"


class DecodingError(ValueError):
    """wal2json wrote something this decoder does not understand; the message says what."""


@dataclass(frozen=True)
class Change:
    kind: str  # I, U or D
    table: str  # schema.table
    columns: tuple[tuple[str, str, Any], ...]  # (name, type, value): every column (I, U); the key only (D)


@dataclass
class Transaction:
    xid: int
    commit_lsn: int = 0  # the end of its commit record (0 until its C row is read)
    committed_at: datetime | None = None
    changes: list[Change] = field(default_factory=list)


def _timestamp(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _load(data: str) -> dict[str, Any]:
    try:
        found = json.loads(data, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise DecodingError(f"wal2json wrote a row that is not JSON ({error.msg})") from None
    if not isinstance(found, dict) or "action" not in found:
        raise DecodingError("wal2json wrote a row without an action: is the slot's format-version 2?")
    return found


def transactions(rows: Iterable[tuple[str, int | str, str]]) -> list[Transaction]:
    """The committed transactions of pg_logical_slot_peek_changes rows (lsn, xid, data), in commit order.
    A transaction whose C row is missing (not possible with a whole-transaction peek) is left out."""
    done: list[Transaction] = []
    current: Transaction | None = None
    for lsn, xid, data in rows:
        row = _load(data)
        action = row["action"]
        if action == "B":
            current = Transaction(int(xid), committed_at=_timestamp(row.get("timestamp")))
        elif action == "C":
            if current is not None:
                current.commit_lsn = parse_lsn(lsn)
                current.committed_at = _timestamp(row.get("timestamp")) or current.committed_at
                done.append(current)
            current = None
        elif action in (INSERT, UPDATE, DELETE):
            if current is None:
                raise DecodingError("wal2json wrote a change outside a transaction: is include-transaction on?")
            current.changes.extend(_changes(action, row))
    return done


def _changes(action: str, row: Mapping[str, Any]) -> list[Change]:
    """The row's change; an update that moved its key is first a delete of the old key."""
    table = f"{row['schema']}.{row['table']}"
    listed = row.get("identity") if action == DELETE else row.get("columns")
    if not listed:
        what = "its key (REPLICA IDENTITY)" if action == DELETE else "its columns"
        raise DecodingError(f"a change of {table} came without {what}")
    change = Change(action, table, tuple((c["name"], c["type"], c.get("value")) for c in listed))
    old = row.get("identity") if action == UPDATE else None
    if old:
        new = {name: value for name, _, value in change.columns}
        if any(c["name"] in new and new[c["name"]] != c.get("value") for c in old):
            moved = Change(DELETE, table, tuple((c["name"], c["type"], c.get("value")) for c in old))
            return [moved, change]
    return [change]


@dataclass
class TableChanges:
    """One table's changes in a batch: the last change of each key, and every column seen, in source order."""

    source: str
    primary_key: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)  # name -> PostgreSQL type
    rows: dict[tuple[Any, ...], tuple[bool, dict[str, Any]]] = field(default_factory=dict)  # key -> (deleted, values)

    def apply(self, change: Change) -> None:
        values = {name: value for name, _, value in change.columns}
        for name, kind, _ in change.columns:
            self.columns.setdefault(name, kind)
        missing = [name for name in self.primary_key if name not in values]
        if missing:
            raise DecodingError(
                f"a change of {self.source} lacks its primary key column(s) {', '.join(missing)}: was the key changed?"
            )
        key = tuple(values[name] for name in self.primary_key)
        self.rows.pop(key, None)  # a key changed again moves to the end: the last change wins, in order
        self.rows[key] = (change.kind == DELETE, values)

    @property
    def count(self) -> int:
        return len(self.rows)


def batch(committed: Sequence[Transaction], primary_keys: Mapping[str, Sequence[str]]) -> dict[str, TableChanges]:
    """The changes of the configured tables (schema.table -> its primary key), the last per key winning."""
    tables: dict[str, TableChanges] = {}
    for transaction in committed:
        for change in transaction.changes:
            key = primary_keys.get(change.table)
            if key is None:
                continue
            changes = tables.setdefault(change.table, TableChanges(change.table, tuple(key)))
            changes.apply(change)
    return tables


def changes_of(committed: Sequence[Transaction], tables: Iterable[str]) -> int:
    wanted = set(tables)
    return sum(1 for t in committed for c in t.changes if c.table in wanted)
