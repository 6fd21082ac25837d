"""Deploying operations from specs, their state (active, inactive, archived), and finding them again.

State rules (spec 003's set_configuration_status takes the same two flags):

    activated  archived   state      launch
    true       false      Active     accepted
    false      false      Inactive   refused (409): "operation X is deactivated; activate it to launch it"
    false      true       Archived   refused (409), and left out of the default lists; its runs stay readable
    true       true       -          refused as input: archiving deactivates

Unarchiving is setting archived false, with activated true (Active) or false (Inactive). A change of state records
when (`updated_at`) and who (the log line `operation ... changed by ...`); it does not touch a run already under
way. A redeploy keeps the stored state unless the file sets `activated` or `archived` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.errors import ConfigError, InvalidInput, NotFound
from runyard.operations import registry
from runyard.operations.definition import DeployCheck
from runyard.operations.spec import OperationBase
from runyard.operations.workflow.definition import WORKFLOW
from runyard.services.accounts import account_id
from runyard.services.bi_views import Deploying, check_activation, check_view_names
from runyard.services.deploy_changes import DeployAction, FieldChange, diff
from runyard.services.workflow_counts import sync_upstreams
from runyard.store.database import Store
from runyard.store.tables import accounts, operations

log = logging.getLogger("runyard.operations")


class OperationState(StrEnum):
    ACTIVE = "active"  # launches are accepted
    INACTIVE = "inactive"  # deactivated: launches and retries are refused
    ARCHIVED = "archived"  # inactive, and out of the default lists; its runs stay readable

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @classmethod
    def of(cls, activated: bool, archived: bool) -> OperationState:
        if archived:
            return cls.ARCHIVED
        return cls.ACTIVE if activated else cls.INACTIVE


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
    created_at: datetime
    updated_at: datetime

    @property
    def state(self) -> OperationState:
        return OperationState.of(self.activated, self.archived)


@dataclass(frozen=True)
class OperationFilter:
    """Which operations a list shows. By default every state but Archived; `state` picks one state."""

    configuration_type: str | None = None
    environment: str | None = None
    state: OperationState | None = None
    include_archived: bool = False  # with no `state`: archived operations too


# --- deploy -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    """One configuration, deployed: its operation and what the deploy changed in it."""

    operation_id: int
    configuration_id: str
    created: bool
    environment: str = ""
    changes: tuple[FieldChange, ...] = ()

    @property
    def action(self) -> DeployAction:
        if self.created:
            return DeployAction.CREATED
        return DeployAction.UPDATED if self.changes else DeployAction.UNCHANGED


@dataclass(frozen=True)
class DeployPreview:
    """What deploying one configuration would do (a dry run): operation_id is None for a new operation."""

    operation_id: int | None
    configuration_id: str
    environment: str
    action: DeployAction
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True)
class _Plan:
    spec: OperationBase
    owner: int
    configuration_id: str  # as stored: with its type's `_<ENV>` suffix
    existing: int | None
    values: dict[str, Any]
    changes: tuple[FieldChange, ...]


def deploy(
    store: Store,
    specs: Sequence[OperationBase],
    executors: Collection[str] | None = None,
    sources: Sequence[str] | None = None,
) -> list[Deployed]:
    """Create or update every operation, all in one transaction: a bad spec deploys nothing.

    Each type's deploy-time checks run again here (the loader ran them already for files, with lines),
    against `executors` (default: every executor the types declare). `sources` (the file of each spec)
    only makes the error messages say where to look. An operation the specs describe exactly as stored
    is left alone (its updated_at too); an updated one keeps its id and its runs.
    """
    _check(specs, executors, sources)
    with store.write() as conn:
        now = store.now(conn)
        plans: list[tuple[_Plan, str]] = []
        deployed: list[Deployed] = []
        for spec, source in zip(specs, _names(specs, sources), strict=True):
            plans.append((_plan(conn, spec, source), source))
            deployed.append(_apply(conn, plans[-1][0], now))
        # What needs the store, on what was just written: a refusal rolls the whole deploy back.
        check_view_names(conn, _deploying(plans, [item.operation_id for item in deployed]), lock=True)
        return deployed


def preview_deploy(
    store: Store,
    specs: Sequence[OperationBase],
    executors: Collection[str] | None = None,
    sources: Sequence[str] | None = None,
) -> list[DeployPreview]:
    """What deploy() would do with these specs, after the same checks, writing nothing."""
    _check(specs, executors, sources)
    with store.read() as conn:
        plans = [_plan(conn, spec, source) for spec, source in zip(specs, _names(specs, sources), strict=True)]
        named = list(zip(plans, _names(specs, sources), strict=True))
        check_view_names(conn, _deploying(named, [plan.existing for plan in plans]))
    return [
        DeployPreview(
            operation_id=plan.existing,
            configuration_id=plan.configuration_id,
            environment=plan.spec.environment,
            action=_action(plan),
            changes=plan.changes,
        )
        for plan in plans
    ]


def _deploying(plans: Sequence[tuple[_Plan, str]], operation_ids: Sequence[int | None]) -> list[Deploying]:
    """The configurations as check_view_names sees them (runyard.services.bi_views: a view name is unique)."""
    return [
        Deploying(plan.spec, plan.owner, operation_id, plan.values["activated"] and not plan.values["archived"], source)
        for (plan, source), operation_id in zip(plans, operation_ids, strict=True)
    ]


def _names(specs: Sequence[OperationBase], sources: Sequence[str] | None) -> list[str]:
    return list(sources) if sources is not None else [spec.configuration_id for spec in specs]


def _check(specs: Sequence[OperationBase], executors: Collection[str] | None, sources: Sequence[str] | None) -> None:
    names = _names(specs, sources)
    _refuse_duplicates(specs, names)
    check = DeployCheck(executors=registry.executor_names() if executors is None else executors)
    for spec, source in zip(specs, names, strict=True):
        try:
            registry.operation_type(spec.configuration_type).check(spec, check)
        except ConfigError as error:
            raise ConfigError(error.reason, source=source, field=error.field) from None
        if spec.activated and spec.archived and {"activated", "archived"} <= spec.model_fields_set:
            raise ConfigError(
                "an archived operation is always deactivated: set activated to false, or archived to false",
                source=source,
                field="activated",
            )


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


# The columns a deploy compares and writes, in the order changes are listed; then the configuration's content.
_STATE_FIELDS = ("description", "schedule", "activated", "archived")
# Identity and state: compared as columns, not as content. schedule_timezone has no column: it is content.
_SHARED_FIELDS = frozenset(OperationBase.model_fields) - {"schedule_timezone"}


def _plan(conn: Connection, spec: OperationBase, source: str) -> _Plan:
    try:
        owner = account_id(conn, spec.account)
    except NotFound:
        raise ConfigError(f"account {spec.account} not found", source=source, field="account") from None
    configuration_id = registry.operation_type(spec.configuration_type).deployed_id(
        spec.configuration_id, spec.environment
    )
    stored = conn.execute(
        sa.select(operations).where(
            operations.c.account_id == owner,
            operations.c.environment == spec.environment,
            operations.c.configuration_type == spec.configuration_type,
            operations.c.configuration_id == configuration_id,
        )
    ).first()
    activated, archived = _flags(spec, stored)
    content = spec.model_dump(mode="json")
    values: dict[str, Any] = {
        "description": spec.description,
        "spec": content,
        "activated": activated,
        "archived": archived,
        "schedule": spec.schedule,
    }
    if stored is None:
        return _Plan(spec, owner, configuration_id, None, values, ())
    changes = [FieldChange(name, getattr(stored, name), values[name]) for name in _STATE_FIELDS]
    changes = [change for change in changes if change.before != change.after]
    # A spec stored before schedule_timezone existed ran on UTC: not a change to show.
    changes += diff(_content({"schedule_timezone": "UTC", **stored.spec}), _content(content))
    return _Plan(spec, owner, configuration_id, int(stored.id), values, tuple(changes))


def _flags(spec: OperationBase, stored: sa.Row[Any] | None) -> tuple[bool, bool]:
    """(activated, archived): the file's where it sets them (or for a new operation), else the stored state."""
    given = spec.model_fields_set
    activated = spec.activated if stored is None or "activated" in given else bool(stored.activated)
    archived = spec.archived if stored is None or "archived" in given else bool(stored.archived)
    return (False, True) if archived else (activated, False)


def _content(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key not in _SHARED_FIELDS}


def _action(plan: _Plan) -> DeployAction:
    if plan.existing is None:
        return DeployAction.CREATED
    return DeployAction.UPDATED if plan.changes else DeployAction.UNCHANGED


def _apply(conn: Connection, plan: _Plan, now: datetime) -> Deployed:
    spec = plan.spec
    if plan.existing is not None:
        if plan.changes:
            conn.execute(
                operations.update().where(operations.c.id == plan.existing).values(**plan.values, updated_at=now)
            )
            _sync_workflow(conn, plan.existing, plan)
        return Deployed(plan.existing, plan.configuration_id, False, spec.environment, plan.changes)
    new_id = conn.execute(
        operations.insert()
        .values(
            account_id=plan.owner,
            environment=spec.environment,
            configuration_type=spec.configuration_type,
            configuration_id=plan.configuration_id,
            created_at=now,
            updated_at=now,
            **plan.values,
        )
        .returning(operations.c.id)
    ).scalar_one()
    _sync_workflow(conn, int(new_id), plan)
    return Deployed(int(new_id), plan.configuration_id, True, spec.environment)


def _sync_workflow(conn: Connection, operation_id: int, plan: _Plan) -> None:
    """A workflow's upstream counters follow its configuration (runyard.services.workflow_counts)."""
    if plan.spec.configuration_type == WORKFLOW:
        sync_upstreams(conn, operation_id, plan.values["spec"])


# --- state --------------------------------------------------------------------------------------------------------


def set_status(
    store: Store,
    operation_id: int,
    *,
    activated: bool,
    archived: bool,
    account: int | None = None,
    changed_by: str | None = None,
) -> OperationView:
    """Activate, deactivate, archive or unarchive an operation (the rules are in this module's docstring).

    `account`, when given, is the caller's: another account's operation is NotFound. Setting the state it
    already has changes nothing, updated_at included.
    """
    if activated and archived:
        raise InvalidInput(
            "activated", "an archived operation is always deactivated: send activated false with archived true"
        )
    with store.write() as conn:
        before = get_operation(conn, operation_id, account=account)
        if (before.activated, before.archived) == (activated, archived):
            return before
        now = store.now(conn)
        conn.execute(
            operations.update()
            .where(operations.c.id == before.id)
            .values(activated=activated, archived=archived, updated_at=now)
        )
        if activated:  # a bi-view's view name stays unique (runyard.services.bi_views); after the row, as deploy
            check_activation(conn, before.id)
        after = get_operation(conn, operation_id, account=account)
    log.info(
        "operation %s (%s, %s) changed by %s: %s -> %s",
        after.id,
        after.configuration_id,
        after.environment,
        changed_by or "an unnamed caller",
        before.state.label,
        after.state.label,
    )
    return after


# --- reading ------------------------------------------------------------------------------------------------------

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
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def get_operation(conn: Connection, operation_id: int, *, account: int | None = None) -> OperationView:
    query = sa.select(*_COLUMNS).join(accounts).where(operations.c.id == operation_id)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("operation", operation_id)
    return _view(row)


AMBIGUOUS_HINT = "name its environment or use an id"


def find_operation(
    conn: Connection, ref: str, *, account: int | None = None, environment: str | None = None
) -> OperationView:
    """An operation by numeric id or configuration_id (archived ones too); ambiguity is an error that lists the
    choices."""
    if ref.isdigit():
        found = get_operation(conn, int(ref), account=account)
        if environment is not None and found.environment != environment:
            raise NotFound("operation", f"{ref} in environment {environment}")
        return found
    query = sa.select(*_COLUMNS).join(accounts).where(operations.c.configuration_id == ref)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    if environment is not None:
        query = query.where(operations.c.environment == environment)
    rows = conn.execute(query.order_by(operations.c.id)).all()
    if not rows:
        raise NotFound("operation", ref if environment is None else f"{ref} in environment {environment}")
    if len(rows) > 1:
        choices = ", ".join(f"{r.id} ({r.account}/{r.environment}/{r.configuration_type})" for r in rows)
        raise InvalidInput("operation", f"'{ref}' names several operations; {AMBIGUOUS_HINT}: {choices}")
    return _view(rows[0])


def list_operations(
    conn: Connection, *, account: int | None = None, where: OperationFilter | None = None
) -> list[OperationView]:
    """Operations by id: every one without `where` (the runs' source lists), else those it selects."""
    query = sa.select(*_COLUMNS).join(accounts).order_by(operations.c.id)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    if where is not None:
        query = query.where(*_conditions(where))
    return [_view(row) for row in conn.execute(query)]


def _conditions(where: OperationFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if where.configuration_type is not None:
        conditions.append(operations.c.configuration_type == where.configuration_type)
    if where.environment is not None:
        conditions.append(operations.c.environment == where.environment)
    if where.state is OperationState.ARCHIVED:
        conditions.append(operations.c.archived.is_(True))
    elif where.state is not None:
        active = where.state is OperationState.ACTIVE
        conditions += [operations.c.archived.is_(False), operations.c.activated.is_(active)]
    elif not where.include_archived:
        conditions.append(operations.c.archived.is_(False))
    return conditions


def known_type(name: str) -> str:
    """`name` if it is a configuration type runyard runs; InvalidInput listing them otherwise (a list filter)."""
    allowed = registry.configuration_types()
    if name not in allowed:
        raise InvalidInput("type", f"{name[:60]!r} is not a configuration type; allowed: {', '.join(allowed)}")
    return name


def environments(conn: Connection, *, account: int | None = None) -> list[str]:
    """The environments the account's operations are deployed in, sorted."""
    query = sa.select(operations.c.environment).distinct().order_by(operations.c.environment)
    if account is not None:
        query = query.where(operations.c.account_id == account)
    return [str(name) for name in conn.execute(query).scalars()]
