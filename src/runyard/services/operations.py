"""Deploying operations from specs, and finding them again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.errors import ConfigError, InvalidInput, NotFound
from runyard.operations import registry
from runyard.operations.definition import DeployCheck
from runyard.operations.spec import OperationBase
from runyard.services.accounts import account_id
from runyard.store.database import Store
from runyard.store.tables import accounts, operations


@dataclass(frozen=True)
class OperationView:
    id: int
    account_id: int
    account: str
    environment: str
    configuration_type: str
    configuration_id: str
    description: str
    activated: bool
    archived: bool
    schedule: str | None
    spec: dict[str, Any]


@dataclass(frozen=True)
class Deployed:
    operation_id: int
    configuration_id: str
    created: bool


def deploy(
    store: Store,
    specs: Sequence[OperationBase],
    executors: Collection[str] | None = None,
    sources: Sequence[str] | None = None,
) -> list[Deployed]:
    """Create or update every operation, all in one transaction: a bad spec deploys nothing.

    Each type's deploy-time checks run again here (the loader ran them already for files, with lines),
    against `executors` (default: every executor the types declare). `sources` (the file of each spec)
    only makes the error messages say where to look.
    """
    names = list(sources) if sources is not None else [spec.configuration_id for spec in specs]
    _refuse_duplicates(specs, names)
    check = DeployCheck(executors=registry.executor_names() if executors is None else executors)
    for spec, source in zip(specs, names, strict=True):
        try:
            registry.operation_type(spec.configuration_type).check(spec, check)
        except ConfigError as error:
            raise ConfigError(error.reason, source=source, field=error.field) from None
    with store.write() as conn:
        now = store.now(conn)
        return [_upsert(conn, spec, now) for spec in specs]


def _refuse_duplicates(specs: Sequence[OperationBase], sources: Sequence[str]) -> None:
    seen: dict[tuple[str, str, str, str], str] = {}
    for spec, source in zip(specs, sources, strict=True):
        identity = (spec.account, spec.environment, spec.configuration_type, spec.configuration_id)
        if identity in seen:
            raise ConfigError(
                f"operation {spec.configuration_id} ({spec.environment}) is defined twice: "
                f"here and in {seen[identity]}",
                source=source,
                field="configuration_id",
            )
        seen[identity] = source


def _upsert(conn: Connection, spec: OperationBase, now: object) -> Deployed:
    owner = account_id(conn, spec.account)
    configuration_id = registry.operation_type(spec.configuration_type).deployed_id(
        spec.configuration_id, spec.environment
    )
    identity = (
        operations.c.account_id == owner,
        operations.c.environment == spec.environment,
        operations.c.configuration_type == spec.configuration_type,
        operations.c.configuration_id == configuration_id,
    )
    values = {
        "description": spec.description,
        "spec": spec.model_dump(mode="json"),
        "activated": spec.activated,
        "archived": spec.archived,
        "schedule": spec.schedule,
        "updated_at": now,
    }
    existing = conn.execute(sa.select(operations.c.id).where(*identity)).scalar()
    if existing is not None:
        conn.execute(operations.update().where(operations.c.id == existing).values(**values))
        return Deployed(int(existing), configuration_id, created=False)
    new_id = conn.execute(
        operations.insert()
        .values(
            account_id=owner,
            environment=spec.environment,
            configuration_type=spec.configuration_type,
            configuration_id=configuration_id,
            created_at=now,
            **values,
        )
        .returning(operations.c.id)
    ).scalar_one()
    return Deployed(int(new_id), configuration_id, created=True)


_COLUMNS = (*operations.c, accounts.c.name.label("account"))


def _view(row: sa.Row[Any]) -> OperationView:
    return OperationView(
        id=row.id,
        account_id=row.account_id,
        account=row.account,
        environment=row.environment,
        configuration_type=row.configuration_type,
        configuration_id=row.configuration_id,
        description=row.description,
        activated=row.activated,
        archived=row.archived,
        schedule=row.schedule,
        spec=dict(row.spec),
    )


def get_operation(conn: Connection, operation_id: int, *, account: int | None = None) -> OperationView:
    query = sa.select(*_COLUMNS).join(accounts).where(operations.c.id == operation_id)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("operation", operation_id)
    return _view(row)


def find_operation(
    conn: Connection, ref: str, *, account: int | None = None, environment: str | None = None
) -> OperationView:
    """An operation by numeric id or configuration_id; ambiguity is an error that lists the choices."""
    if ref.isdigit():
        return get_operation(conn, int(ref), account=account)
    query = sa.select(*_COLUMNS).join(accounts).where(operations.c.configuration_id == ref)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    if environment is not None:
        query = query.where(operations.c.environment == environment)
    rows = conn.execute(query).all()
    if not rows:
        raise NotFound("operation", ref)
    if len(rows) > 1:
        choices = ", ".join(f"{r.id} ({r.account}/{r.environment}/{r.configuration_type})" for r in rows)
        raise InvalidInput("operation", f"'{ref}' names several operations; use an id: {choices}")
    return _view(rows[0])


def list_operations(conn: Connection, *, account: int | None = None) -> list[OperationView]:
    query = sa.select(*_COLUMNS).join(accounts).order_by(operations.c.id)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    return [_view(row) for row in conn.execute(query)]
