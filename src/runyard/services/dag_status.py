"""Spec 003's operations by identity: find one, launch it, read its runs in spec 003's words.

A configuration is named as spec 003 names it: (account name, environment, configuration_type, configuration_id),
the configuration_id as deployed (a table-to-table one ends in `_<ENV>`). The caller's account is the only one it
may name: another account's configuration is NotFound, whether it exists or not.

A run, as `/v1/dag/status` answers it (every value a string):

    run_id                 the run's key, YYYYMMDD-HHMMSS-<uuid4>
    status                 SPEC003_STATUS of its status (runyard.domain.statuses)
    start_execution_date   started_at, or created_at for a run that never started (ISO 8601, +00:00, microseconds)
    last_update_date       the run's updated_at, same format
    duration               completed_at - started_at; while it runs, now - started_at; a run that never started
                           (waiting, rejected, canceled before it started) 0:00:00.000000. H:MM:SS.ffffff, hours
                           counting on past 24 ("25:00:00.000000", never "1 day, ...")

No FastAPI here: runyard.api.compat.dag turns requests into these calls and errors into spec 003's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.statuses import SPEC003_STATUS, RunStatus, RunType, Trigger
from runyard.errors import Conflict, InvalidInput, LaunchThrottled, NotFound, RunRejected
from runyard.operations import registry
from runyard.operations.job_ids import job_id, parse_job_id
from runyard.services.operations import OperationView, get_operation
from runyard.services.runs import LaunchRequest, RunService
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.tables import operations, runs

SPEC003_STATUSES: tuple[str, ...] = tuple(dict.fromkeys(SPEC003_STATUS.values()))
MAX_LIMIT = 100
DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Identity:
    """A configuration as spec 003 names it."""

    account: str
    environment: str
    configuration_type: str
    configuration_id: str

    def describe(self) -> str:
        return f"{self.configuration_type} {self.configuration_id!r} ({self.environment}) of account {self.account!r}"


@dataclass(frozen=True)
class Caller:
    """Whose token it is: the account every configuration must be in, and the user (for launches and logs)."""

    account_id: int
    account: str
    user_id: int
    login: str

    @property
    def changed_by(self) -> str:
        return f"{self.login} (user {self.user_id}, spec 003 API)"


class ConfigurationNotFound(NotFound):
    def __init__(self, identity: Identity, hint: str = "") -> None:
        super().__init__("configuration", identity.describe())
        if hint:
            self.args = (f"{self.args[0]}: {hint}",)


class AccountMismatch(NotFound):
    """The body names another account than the token's: answered as not found, whatever exists there."""

    def __init__(self, asked: str, own: str) -> None:
        super().__init__("account", asked)
        self.args = (f"account {asked!r} does not match the account of your token ({own!r}): no configuration found",)


class LaunchRejected(Conflict):
    """RunRejected, said with run keys (spec 003's run_ids) instead of run ids."""

    def __init__(self, configuration_id: str, rejected_key: str, active_key: str | None) -> None:
        self.rejected_key = rejected_key
        self.active_key = active_key
        active = f"run_id {active_key} is still active" if active_key else "another run is still active"
        super().__init__(
            f"Rejected - previous load still running: {configuration_id} cannot start while {active}; "
            f"this launch was recorded as the rejected run_id {rejected_key}"
        )


@dataclass(frozen=True)
class RunStatusItem:
    """One run as spec 003 answers it (the field names and order of its examples)."""

    account: str
    configuration_id: str
    configuration_type: str
    duration: str
    environment: str
    job_id: str
    last_update_date: str
    run_id: str
    start_execution_date: str
    status: str


@dataclass(frozen=True)
class StatusQuery:
    """Which runs get_last_status (or check_run_status, with run_key) answers, newest first."""

    run_key: str | None = None
    execution_date: date | None = None
    status: str | None = None  # a spec 003 status
    limit: int = DEFAULT_LIMIT


# --- formats --------------------------------------------------------------------------------------------------------


def spec003_duration(delta: timedelta) -> str:
    """`H:MM:SS.ffffff` like str(timedelta), but always with microseconds and with hours past 24 (never days)."""
    micros = max(0, delta // timedelta(microseconds=1))
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{micros:06d}"


def spec003_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: 2020-12-30T11:30:07.960767+00:00."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def spec003_status(status: RunStatus) -> str:
    return SPEC003_STATUS[status]


def runyard_statuses(spec_status: str) -> list[str]:
    """The runyard statuses shown as `spec_status`; InvalidInput listing spec 003's statuses for anything else."""
    found = [status.value for status, shown in SPEC003_STATUS.items() if shown == spec_status]
    if not found:
        raise InvalidInput("status", f"{spec_status[:60]!r} is not a status; use one of: {', '.join(SPEC003_STATUSES)}")
    return found


# --- configurations ------------------------------------------------------------------------------------------------


def find_configuration(conn: Connection, identity: Identity, caller: Caller) -> OperationView:
    """The caller's configuration with this identity; AccountMismatch or ConfigurationNotFound otherwise."""
    if identity.account != caller.account:
        raise AccountMismatch(identity.account, caller.account)
    found = conn.execute(
        sa.select(operations.c.id).where(
            operations.c.account_id == caller.account_id,
            operations.c.environment == identity.environment,
            operations.c.configuration_type == identity.configuration_type,
            operations.c.configuration_id == identity.configuration_id,
        )
    ).scalar()
    if found is None:
        raise ConfigurationNotFound(identity, _hint(identity))
    return get_operation(conn, int(found), account=caller.account_id)


def _hint(identity: Identity) -> str:
    types = registry.operation_types()
    kind = types.get(identity.configuration_type)
    if kind is None:
        aliases = [name for name, each in types.items() if identity.configuration_type in each.job_id_aliases]
        known = ", ".join(types)
        if aliases:
            return f"{identity.configuration_type!r} is a job_id prefix; send configuration_type {aliases[0]!r}"
        return f"{identity.configuration_type[:60]!r} is not a configuration type (they are: {known})"
    deployed = kind.deployed_id(identity.configuration_id, identity.environment)
    if deployed != identity.configuration_id:
        return f"a {kind.name} configuration_id ends with its environment: send {deployed!r}"
    return ""


def configuration_job_id(operation: OperationView) -> str:
    """Spec 003's job_id of the configuration (runyard.operations.job_ids)."""
    return job_id(
        account=operation.account,
        environment=operation.environment,
        configuration_type=operation.configuration_type,
        configuration_id=operation.configuration_id,
        spec=operation.spec,
    )


def check_job_id(operation: OperationView, given: str) -> None:
    """`given` names this configuration's job: its job_id as answers show it, or any form runyard reads
    (`<type>|<account>|<configuration_id>|<ENV>`). InvalidInput for an unreadable one, NotFound for another job."""
    expected = configuration_job_id(operation)
    if given == expected:
        return
    try:
        ref = parse_job_id(given)
    except ValueError as error:
        raise InvalidInput("job_id", str(error)) from None
    same = (
        ref.configuration_type == operation.configuration_type
        and ref.configuration_id == operation.configuration_id
        and ref.account in (None, operation.account)
        and ref.environment in (None, operation.environment)
    )
    if not same:
        raise NotFound("job_id", f"{given[:200]!r} of {operation.configuration_id} (its job_id is {expected!r})")


# --- launch ---------------------------------------------------------------------------------------------------------


def launch_job(
    store: Store,
    run_service: RunService,
    caller: Caller,
    identity: Identity,
    *,
    execution_date: date | None = None,
    job: str | None = None,
) -> str:
    """Launch the configuration (trigger `api`); the new run's key. LaunchRejected when another run is active,
    Conflict when the configuration is deactivated, archived or a workflow."""
    with store.read() as conn:
        operation = find_configuration(conn, identity, caller)
        if job is not None:
            check_job_id(operation, job)
    request = LaunchRequest(
        operation_id=operation.id,
        run_type=RunType.INCREMENTAL,
        trigger=Trigger.API,
        account_id=caller.account_id,
        created_by=caller.user_id,
        execution_date=execution_date,
    )
    try:
        return run_service.launch(request).run_key
    except RunRejected as rejected:
        with store.read() as conn:
            rejected_key = _run_key(conn, rejected.rejected_run_id)
            active_key = None if rejected.active_run_id is None else _run_key(conn, rejected.active_run_id)
        raise LaunchRejected(operation.configuration_id, rejected_key, active_key) from None
    except LaunchThrottled as throttled:  # said with the active run's key, spec 003's run_id
        with store.read() as conn:
            active_key = None if throttled.active_run_id is None else _run_key(conn, throttled.active_run_id)
        raise LaunchThrottled(
            operation.configuration_id,
            throttled.active_run_id,
            throttled.limit,
            throttled.retry_after_seconds,
            active_run_key=active_key,
        ) from None


def _run_key(conn: Connection, run_id: int) -> str:
    return str(conn.execute(sa.select(runs.c.run_key).where(runs.c.id == run_id)).scalar_one())


# --- statuses -------------------------------------------------------------------------------------------------------


def run_statuses(
    store: Store, caller: Caller, identity: Identity, query: StatusQuery, *, job: str | None = None
) -> list[RunStatusItem]:
    """The configuration's runs that `query` selects, newest first, at most query.limit. With query.run_key, the one
    run (NotFound when it is not a run of this configuration)."""
    with store.read() as conn:
        operation = find_configuration(conn, identity, caller)
        if job is not None:
            check_job_id(operation, job)
        rows = conn.execute(_select(operation.id, query)).all()
        now = dialect.database_now(conn)
    if query.run_key is not None and not rows:
        raise NotFound("run_id", f"{query.run_key[:100]!r} of {operation.configuration_id}")
    job_id_ = configuration_job_id(operation)
    return [_item(operation, job_id_, row, now) for row in rows]


def _select(operation_id: int, query: StatusQuery) -> sa.Select[Any]:
    select = sa.select(
        runs.c.run_key,
        runs.c.status,
        runs.c.created_at,
        runs.c.started_at,
        runs.c.completed_at,
        runs.c.updated_at,
    ).where(runs.c.operation_id == operation_id)
    if query.run_key is not None:
        select = select.where(runs.c.run_key == query.run_key)
    if query.execution_date is not None:
        select = select.where(runs.c.execution_date == query.execution_date)
    if query.status is not None:
        select = select.where(runs.c.status.in_(runyard_statuses(query.status)))
    return select.order_by(runs.c.id.desc()).limit(max(1, min(query.limit, MAX_LIMIT)))


def _item(operation: OperationView, job_id_: str, row: Any, now: datetime) -> RunStatusItem:
    return RunStatusItem(
        account=operation.account,
        configuration_id=operation.configuration_id,
        configuration_type=operation.configuration_type,
        duration=spec003_duration(run_duration(row.started_at, row.completed_at, now)),
        environment=operation.environment,
        job_id=job_id_,
        last_update_date=spec003_time(row.updated_at),
        run_id=row.run_key,
        start_execution_date=spec003_time(row.started_at or row.created_at),
        status=spec003_status(RunStatus(row.status)),
    )


def run_duration(started_at: datetime | None, completed_at: datetime | None, now: datetime) -> timedelta:
    """How long the run ran: to its end, or to `now` while it runs; zero if it never started."""
    if started_at is None:
        return timedelta(0)
    return max(timedelta(0), (completed_at or now) - started_at)
