"""The views an account declares with bi-view operations (runyard.operations.bi_view): the lookup spec 004's export
makes, and the rule that keeps a view name to one active bi-view per account and environment.

A view is found by the account's name (what `Principal.account` holds) and its view_name, case-insensitively, among
the account's active bi-views (activated, not archived). A view name may be declared once in each environment; when
the caller names none, PROD's is preferred, then the most recently updated.

The uniqueness rule needs the store, which a type's deploy check (OperationType.check) cannot reach: `deploy` and
`preview_deploy` (runyard.services.operations) call `check_view_names` with what they write, and `set_status` calls
`check_activation` before it activates an operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.errors import ConfigError, Conflict
from runyard.operations.bi_view.definition import BI_VIEW
from runyard.operations.bi_view.spec import VIEW_NAME, BiViewOperation
from runyard.operations.spec import OperationBase
from runyard.operations.table_to_table.sql import without_trailing_semicolon
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import accounts, operations

PREFERRED_ENVIRONMENT = "PROD"


@dataclass(frozen=True)
class DeclaredView:
    name: str  # view_name, as declared
    sql: str  # the query, without surrounding blanks or a final `;`
    time_column: str | None
    operation_id: int


def find_view(store: Store, account: str, name: str, environment: str | None = None) -> DeclaredView | None:
    """The active, non-archived bi-view of `account` (its name) whose view_name is `name` (case-insensitive), in
    `environment` when given; with several environments and none given, PROD's, then the most recently updated.
    None when there is none."""
    if not VIEW_NAME.fullmatch(name):  # no stored view_name is anything else; spares the query
        return None
    with store.read() as conn:
        found = [
            row
            for row in _active_views(conn, account)
            if _fold(row.spec["view_name"]) == _fold(name) and (environment is None or row.environment == environment)
        ]
    return _declared(_preferred(found)) if found else None


def list_views(store: Store, account: str) -> list[DeclaredView]:
    """Every view name `account` can export, by name (case-insensitive order): for each, the view `find_view` answers
    without an environment."""
    by_name: dict[str, list[sa.Row[Any]]] = {}
    with store.read() as conn:
        for row in _active_views(conn, account):
            by_name.setdefault(_fold(row.spec["view_name"]), []).append(row)
    return [_declared(_preferred(rows)) for _, rows in sorted(by_name.items())]


def _active_views(conn: Connection, account: str) -> list[sa.Row[Any]]:
    query = (
        sa.select(operations.c.id, operations.c.environment, operations.c.spec, operations.c.updated_at)
        .join(accounts, accounts.c.id == operations.c.account_id)
        .where(
            accounts.c.name == account,
            operations.c.configuration_type == BI_VIEW,
            operations.c.activated.is_(True),
            operations.c.archived.is_(False),
        )
    )
    return list(conn.execute(query))


def _preferred(rows: Iterable[sa.Row[Any]]) -> sa.Row[Any]:
    return max(rows, key=lambda row: (row.environment == PREFERRED_ENVIRONMENT, row.updated_at, row.id))


def _declared(row: sa.Row[Any]) -> DeclaredView:
    spec = row.spec
    return DeclaredView(
        name=spec["view_name"],
        sql=without_trailing_semicolon(spec["sql"]).strip(),
        time_column=spec.get("time_column"),
        operation_id=int(row.id),
    )


def _fold(name: str) -> str:
    return name.lower()  # view names are ASCII (VIEW_NAME): lower() folds them as a warehouse folds names


# --- the uniqueness rule ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deploying:
    """One configuration of a deploy, as the deploy stores it (or, for a dry run, would)."""

    spec: OperationBase
    account_id: int
    operation_id: int | None  # None: a new operation, which a dry run does not store
    active: bool  # activated and not archived, once deployed
    source: str  # where the configuration comes from, for the message


@dataclass(frozen=True)
class _Declared:
    account_id: int
    environment: str
    configuration_id: str
    view_name: str
    active: bool
    operation_id: int | None
    source: str | None  # None: stored, not part of this deploy


def check_view_names(conn: Connection, deploying: Sequence[Deploying], *, lock: bool = False) -> None:
    """ConfigError (field view_name) when, once `deploying` is deployed, two active bi-views of one account and
    environment would have the same view_name (case-insensitive): among themselves, or with a stored one.

    `deploy` calls it after writing, in its transaction (`lock`: it first locks the accounts' rows, so that two
    deploys of one account take turns); `preview_deploy` before, with the ids the configurations would update.
    """
    views = [(each, each.spec) for each in deploying if isinstance(each.spec, BiViewOperation)]
    if not views:
        return
    owners = sorted({each.account_id for each, _ in views})
    if lock:
        for owner in owners:  # in id order: two deploys lock their accounts in one order
            conn.execute(dialect.lock_for_write(sa.select(accounts.c.id).where(accounts.c.id == owner), conn))
    batch = [
        _Declared(
            account_id=each.account_id,
            environment=spec.environment,
            configuration_id=spec.configuration_id,
            view_name=spec.view_name,
            active=each.active,
            operation_id=each.operation_id,
            source=each.source,
        )
        for each, spec in views
    ]
    redeployed = {entry.operation_id for entry in batch}
    stored = [_stored(row) for row in _stored_views(conn, owners) if row.id not in redeployed]
    for index, entry in enumerate(batch):
        other = _other(entry, [*stored, *batch[:index]])  # within the deploy, the later one is the one refused
        if other is None:
            continue
        if other.source is not None:
            where = f"by bi-view {other.configuration_id} in {other.source}"
        else:
            where = f"by bi-view {other.configuration_id} (operation {other.operation_id})"
        raise ConfigError(
            f"view {entry.view_name} is also declared {where}, active in {entry.environment}: a view name belongs to "
            "one active bi-view per account and environment; rename one, or deactivate or archive the other first",
            source=entry.source,
            field="view_name",
        )


def check_activation(conn: Connection, operation_id: int) -> None:
    """Conflict when activating operation `operation_id`, a bi-view, would give its view name a second active bi-view
    in its account and environment. Nothing for other types. Call it in the write transaction that activates, after
    updating the operation's row: the operation, then the account's row, is deploy's lock order too."""
    row = conn.execute(sa.select(*_STORED).where(operations.c.id == operation_id)).first()
    if row is None or row.configuration_type != BI_VIEW:
        return
    conn.execute(dialect.lock_for_write(sa.select(accounts.c.id).where(accounts.c.id == row.account_id), conn))
    entry = _stored(row)
    other = _other(replace(entry, active=True), [_stored(each) for each in _stored_views(conn, [row.account_id])])
    if other is not None:
        raise Conflict(
            f"view {entry.view_name} is also declared by bi-view {other.configuration_id} (operation "
            f"{other.operation_id}), active in {entry.environment}: deactivate or archive it first, or rename one"
        )


_STORED: tuple[sa.Column[Any], ...] = (
    operations.c.id,
    operations.c.account_id,
    operations.c.environment,
    operations.c.configuration_type,
    operations.c.configuration_id,
    operations.c.spec,
    operations.c.activated,
    operations.c.archived,
)


def _stored_views(conn: Connection, owners: Sequence[int]) -> list[sa.Row[Any]]:
    query = sa.select(*_STORED).where(
        operations.c.account_id.in_(list(owners)), operations.c.configuration_type == BI_VIEW
    )
    return list(conn.execute(query.order_by(operations.c.id)))


def _stored(row: sa.Row[Any]) -> _Declared:
    return _Declared(
        account_id=int(row.account_id),
        environment=row.environment,
        configuration_id=row.configuration_id,
        view_name=str(row.spec.get("view_name", "")),
        active=bool(row.activated) and not bool(row.archived),
        operation_id=int(row.id),
        source=None,
    )


def _other(entry: _Declared, declared: Iterable[_Declared]) -> _Declared | None:
    """Another active bi-view of `declared` with `entry`'s account, environment and view name (a stored one first),
    if `entry` is active."""
    if not entry.active:
        return None
    clashing = [
        other
        for other in declared
        if other is not entry
        and (other.operation_id is None or other.operation_id != entry.operation_id)
        and other.active
        and (other.account_id, other.environment) == (entry.account_id, entry.environment)
        and _fold(other.view_name) == _fold(entry.view_name)
    ]
    clashing.sort(key=lambda other: other.source is not None)
    return clashing[0] if clashing else None
