"""Operation schedules: fire the cron ticks operations owe, each tick at most once whichever process leads, and
the previous and next tick to show.

The rules (the arithmetic is runyard.domain.schedules):

- Only an active operation (activated, not archived) with a `schedule` fires. Deactivating or archiving stops
  its schedule; nothing is owed for the time it was not active.
- A schedule counts from the later of two moments: the last tick handled (`operation_schedules.last_tick_at`)
  and the operation's last change (`operations.updated_at`: a deploy that changed it, or a change of state). So a
  new or changed schedule does not fire for a tick before its deploy, and an operation activated again resumes at
  its next tick: the ticks missed while it was deactivated are not fired, not even as one catch-up run.
- Ticks missed while no scheduler ran (every process down) collapse into one catch-up run, for the latest of
  them, unless the operation changed after that tick. Firing each would only queue runs behind each other (one
  active run per operation) for data that one run loads anyway.
- A tick launches an incremental run with trigger `schedule` and the tick's date, on the schedule's clock, as
  its execution date. A tick that meets an active run makes a Rejected run; a tick whose launch is refused
  (its type is not launched, its plan fails) makes none and is logged. Either way the tick is handled:
  recorded, and never tried again.
- The check and the record are one write transaction under the operation's row lock: a tick cannot fire twice,
  even if two processes both believed they led.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.schedules import due_tick, local_time, next_tick
from runyard.domain.statuses import RunType, Trigger
from runyard.errors import ConfigError, RunyardError
from runyard.operations import registry
from runyard.services.operations import OperationView
from runyard.services.runs import LaunchRequest, RunService, is_launch_race
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.failures import describe_failure
from runyard.store.tables import operation_schedules, operations

log = logging.getLogger("runyard.schedules")

DEFAULT_TIMEZONE = "UTC"
_FIRE_ATTEMPTS = 5


@dataclass(frozen=True)
class TickOutcome:
    """One tick handled: its run (accepted, or Rejected behind `blocked_by`), or no run and why (`refused`)."""

    operation_id: int
    configuration_id: str
    tick: datetime
    execution_date: date
    run_id: int | None
    accepted: bool
    blocked_by: int | None = None
    refused: str | None = None


@dataclass(frozen=True)
class _Schedule:
    """An active scheduled operation, as the scheduler reads it."""

    operation_id: int
    configuration_id: str
    cron: str
    timezone: str
    since: datetime  # operations.updated_at
    last_tick: datetime | None

    def owed(self, now: datetime) -> datetime | None:
        return due_tick(self.cron, self.timezone, self.last_tick, self.since, now)


def fire_due(store: Store, runs: RunService, now: datetime) -> list[TickOutcome]:
    """Handle the tick each active scheduled operation owes at `now` (UTC-aware), one transaction per tick, and wake
    this process's workers if a run was accepted. What was handled, by operation id."""
    with store.read() as conn:
        schedules = _schedules(conn)
    outcomes: list[TickOutcome] = []
    for schedule in schedules:
        if _owed(schedule, now) is None:
            continue
        try:
            outcome = _fire(store, runs, schedule.operation_id, now)
        except sa.exc.DBAPIError:
            raise  # the database is failing: the caller logs it once and tries again at its next pass
        except Exception as error:  # a bug in one operation's launch must not keep the others from firing
            log.warning(
                "schedule of operation %s (%s) not fired: %s",
                schedule.operation_id,
                schedule.configuration_id,
                describe_failure(error),
                exc_info=True,
            )
            continue
        if outcome is not None:
            outcomes.append(outcome)
            _log(outcome, schedule.timezone)
    if any(outcome.accepted for outcome in outcomes):
        runs.notify_workers()
    return outcomes


def earliest_next_tick(store: Store, now: datetime) -> datetime | None:
    """The first tick after `now` of any active scheduled operation: when the scheduler should look again."""
    with store.read() as conn:
        schedules = _schedules(conn)
    ticks = [tick for tick in (_next(schedule, now) for schedule in schedules) if tick is not None]
    return min(ticks, default=None)


def schedule_timezone(operation: OperationView) -> str:
    """The operation's schedule_timezone (kept in its spec; specs deployed before it existed mean UTC)."""
    return str(operation.spec.get("schedule_timezone") or DEFAULT_TIMEZONE)


def schedule_view(operation: OperationView, last_tick_at: datetime | None, now: datetime) -> Ticks:
    """(previous tick, next tick) to show: the last tick handled, and the next one after `now`. Both None without a
    schedule; the next one None while the operation is deactivated or archived (its schedule is stopped)."""
    if operation.schedule is None:
        return None, None
    if not operation.activated or operation.archived:
        return last_tick_at, None
    try:
        upcoming = next_tick(operation.schedule, schedule_timezone(operation), now)
    except (ValueError, KeyError):  # a zone this machine lacks: the scheduler logs it; the page still shows
        upcoming = None
    return last_tick_at, upcoming


Ticks = tuple[datetime | None, datetime | None]  # (previous, next)


def schedule_ticks(conn: Connection, found: Sequence[OperationView]) -> dict[int, Ticks]:
    """operation id -> its schedule_view on the database's clock, for every operation in `found`: what the API and
    the Sources page show."""
    scheduled = [operation.id for operation in found if operation.schedule is not None]
    if not scheduled:
        return {operation.id: (None, None) for operation in found}
    now = dialect.database_now(conn)
    handled = last_ticks(conn, scheduled)
    return {operation.id: schedule_view(operation, handled.get(operation.id), now) for operation in found}


def last_ticks(conn: Connection, operation_ids: Collection[int]) -> dict[int, datetime]:
    """operation id -> the last tick its schedule handled (operations whose schedule never fired are left out)."""
    if not operation_ids:
        return {}
    rows = conn.execute(
        sa.select(operation_schedules.c.operation_id, operation_schedules.c.last_tick_at).where(
            operation_schedules.c.operation_id.in_(list(operation_ids)),
            operation_schedules.c.last_tick_at.is_not(None),
        )
    )
    return {row.operation_id: row.last_tick_at for row in rows}


# --- firing one tick ----------------------------------------------------------------------------------------------


def _fire(store: Store, runs: RunService, operation_id: int, now: datetime) -> TickOutcome | None:
    for _ in range(_FIRE_ATTEMPTS):
        try:
            with store.write() as conn:
                return _fire_in(conn, store, runs, operation_id, now)
        except sa.exc.IntegrityError as error:
            if not is_launch_race(error):
                raise
        except RunyardError as error:  # refused, rolled back: record the tick alone, so it is not retried
            return _refuse(store, operation_id, now, error)
    log.warning("operation %s: its runs changed too fast to fire its schedule; trying at the next pass", operation_id)
    return None


def _fire_in(conn: Connection, store: Store, runs: RunService, operation_id: int, now: datetime) -> TickOutcome | None:
    schedule = _locked_schedule(conn, operation_id)
    tick = None if schedule is None else schedule.owed(now)
    if schedule is None or tick is None:
        return None  # changed, deactivated, or handled by another process since it was read
    execution_date = local_time(tick, schedule.timezone).date()
    launched = runs.launch_in(
        conn,
        LaunchRequest(
            operation_id, run_type=RunType.INCREMENTAL, trigger=Trigger.SCHEDULE, execution_date=execution_date
        ),
    )
    _record(conn, operation_id, tick, launched.run_id, store.now(conn))
    return TickOutcome(
        operation_id=operation_id,
        configuration_id=schedule.configuration_id,
        tick=tick,
        execution_date=execution_date,
        run_id=launched.run_id,
        accepted=launched.accepted,
        blocked_by=launched.blocked_by,
    )


def _refuse(store: Store, operation_id: int, now: datetime, error: RunyardError) -> TickOutcome | None:
    with store.write() as conn:
        schedule = _locked_schedule(conn, operation_id)
        tick = None if schedule is None else schedule.owed(now)
        if schedule is None or tick is None:
            return None
        _record(conn, operation_id, tick, None, store.now(conn))
    return TickOutcome(
        operation_id=operation_id,
        configuration_id=schedule.configuration_id,
        tick=tick,
        execution_date=local_time(tick, schedule.timezone).date(),
        run_id=None,
        accepted=False,
        refused=str(error),
    )


def _locked_schedule(conn: Connection, operation_id: int) -> _Schedule | None:
    """The operation's schedule read again under its row lock, held to the commit; None if it no longer fires."""
    conn.execute(dialect.lock_for_write(sa.select(operations.c.id).where(operations.c.id == operation_id), conn))
    found = _schedules(conn, operation_id)
    return found[0] if found else None


def _record(conn: Connection, operation_id: int, tick: datetime, run_id: int | None, now: datetime) -> None:
    values = {"last_tick_at": tick, "last_run_id": run_id, "updated_at": now}
    # No insert race: the operation's row lock (PostgreSQL) or the one writer (SQLite) is held.
    updated = conn.execute(
        operation_schedules.update().where(operation_schedules.c.operation_id == operation_id).values(**values)
    ).rowcount
    if not updated:
        conn.execute(operation_schedules.insert().values(operation_id=operation_id, **values))


# --- reading ------------------------------------------------------------------------------------------------------


def _schedules(conn: Connection, operation_id: int | None = None) -> list[_Schedule]:
    query = (
        sa.select(
            operations.c.id,
            operations.c.configuration_id,
            operations.c.configuration_type,
            operations.c.schedule,
            operations.c.spec,
            operations.c.updated_at,
            operation_schedules.c.last_tick_at,
        )
        .select_from(operations.outerjoin(operation_schedules, operation_schedules.c.operation_id == operations.c.id))
        .where(
            operations.c.schedule.is_not(None),
            operations.c.activated.is_(True),
            operations.c.archived.is_(False),
        )
        .order_by(operations.c.id)
    )
    if operation_id is not None:
        query = query.where(operations.c.id == operation_id)
    return [_schedule(row) for row in conn.execute(query).mappings() if _launchable(row["configuration_type"])]


def _schedule(row: sa.RowMapping) -> _Schedule:
    return _Schedule(
        operation_id=row["id"],
        configuration_id=row["configuration_id"],
        cron=row["schedule"],
        timezone=str(dict(row["spec"]).get("schedule_timezone") or DEFAULT_TIMEZONE),
        since=row["updated_at"],
        last_tick=row["last_tick_at"],
    )


def _launchable(configuration_type: str) -> bool:
    try:
        return registry.operation_type(configuration_type).launchable
    except ConfigError:  # a type this version does not know: nothing to launch
        return False


_reported: set[tuple[int, str, str]] = set()  # schedules already logged as unusable: once per process is enough


def _owed(schedule: _Schedule, now: datetime) -> datetime | None:
    try:
        return schedule.owed(now)
    except (ValueError, KeyError) as error:  # a zone this machine's tz database lacks, a cron that never matches
        _report(schedule, error)
        return None


def _next(schedule: _Schedule, now: datetime) -> datetime | None:
    try:
        return next_tick(schedule.cron, schedule.timezone, now)
    except (ValueError, KeyError) as error:
        _report(schedule, error)
        return None


def _report(schedule: _Schedule, error: Exception) -> None:
    key = (schedule.operation_id, schedule.cron, schedule.timezone)
    if key not in _reported:
        _reported.add(key)
        log.warning(
            "operation %s (%s): its schedule '%s' in %s cannot fire: %s",
            schedule.operation_id,
            schedule.configuration_id,
            schedule.cron,
            schedule.timezone,
            error,
        )


def _log(outcome: TickOutcome, timezone: str) -> None:
    when = f"{local_time(outcome.tick, timezone):%Y-%m-%d %H:%M} {timezone}"
    if outcome.accepted:
        log.info("schedule: %s tick %s launched run %s", outcome.configuration_id, when, outcome.run_id)
    elif outcome.run_id is not None:
        log.info(
            "schedule: %s tick %s met active run %s: run %s recorded as Rejected",
            outcome.configuration_id,
            when,
            outcome.blocked_by,
            outcome.run_id,
        )
    else:
        log.warning("schedule: %s tick %s launched nothing: %s", outcome.configuration_id, when, outcome.refused)
