"""One pass of alert evaluation: reads what changed, asks runyard.domain.alert_rules, opens and resolves alerts.

The leading scheduler calls `AlertEvaluator.evaluate` every RUNYARD_ALERT_SECONDS. A pass is cheap because it reads
only what can have changed:

- the runs that ended since the previous pass (with an overlap: a run's `completed_at` is written by its transaction
  before that commits, so a run may appear a little after its end time), or within the lookback after a start;
- the runs still running (through the partial index of active runs), each against its operation's history;
- the open alerts (through the partial unique index of open alerts, a few rows);
- each source's last successful runs, for overdue, cached per operation until one of its runs ends.

Nothing is raised twice: a run's alerts are keyed by the run (and looked up by `run_id`, resolved or not), and the
partial unique index holds at most one open alert per (operation, key). So a pass that sees a run again, after an
overlap or a restart, changes nothing. Each alert opened or resolved is notified (runyard.services.notifications)
in the transaction that stores it: nothing is notified that was not stored, nothing stored goes unnotified.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.alert_rules import (
    ROW_FLOOR,
    SECOND_FLOOR,
    AlertSettings,
    ExpectedInterval,
    Finding,
    NormalRange,
    ended_run,
    history_interval,
    human_duration,
    normal_range,
    overdue,
    running_long,
    schedule_interval,
    unusual_rows,
)
from runyard.domain.alerts import Alert, AlertEvent, AlertKind
from runyard.domain.statuses import RUN_ACTIVE, RUN_SUCCEEDED, RunStatus
from runyard.errors import ConfigError
from runyard.operations import registry
from runyard.services.alerts import alert_of, alerts_select
from runyard.services.attention import first_failure
from runyard.services.notifications import enqueue
from runyard.store.database import Store
from runyard.store.tables import accounts, alerts, data_loads, operations, runs

log = logging.getLogger("runyard.alerts")

_Row = Any  # a result row (sqlalchemy types each select's rows by their columns)

#: How far back a pass looks for ended runs when it has no previous pass (a start, a new leader, a test).
DEFAULT_LOOKBACK = timedelta(hours=1)
#: How far before the previous pass the next one looks again (see the module's docstring).
OVERLAP = timedelta(minutes=2)

_SUCCEEDED = [status.value for status in RUN_SUCCEEDED]
# The active statuses as literals, listed as the partial index of active runs lists them: only then may a planner
# (SQLite's) read that index instead of scanning every run.
_ACTIVE_CLAUSE = runs.c.status.in_(
    sa.bindparam("active", [status.value for status in sorted(RUN_ACTIVE)], expanding=True, literal_execute=True)
)
_RUN_KINDS = (AlertKind.FAILED, AlertKind.COMPLETED_WITH_ERRORS)
_ROW_KINDS = (AlertKind.ROWS_LOW, AlertKind.ROWS_HIGH)
_OVERDUE_KEY = "overdue"


@dataclass(frozen=True)
class EvaluationReport:
    opened: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    notifications: int  # deliveries enqueued
    ended_runs: int  # ended runs looked at
    running_runs: int
    sources: int  # sources checked for overdue


@dataclass(frozen=True)
class _Open:
    account_id: int
    operation_id: int
    run_id: int | None
    run_type: str | None
    key: str
    finding: Finding
    configuration_id: str
    resolution: str | None = None  # resolved in the same pass (a later run of the pass settled it)


@dataclass(frozen=True)
class _Resolve:
    alert: Alert
    resolution: str


@dataclass
class _Changes:
    opens: dict[tuple[int, str], _Open] = field(default_factory=dict)  # by (operation_id, key)
    resolves: dict[int, _Resolve] = field(default_factory=dict)  # by alert id: resolved once per pass

    def open(self, change: _Open) -> None:
        self.opens.setdefault((change.operation_id, change.key), change)

    def resolve(self, alert: Alert, resolution: str) -> None:
        self.resolves.setdefault(alert.id, _Resolve(alert, resolution))

    def resolve_opened(self, change: _Open, resolution: str) -> None:
        """An alert this pass opens, settled by a later run of the same pass: stored opened, then resolved."""
        if change.resolution is None:
            self.opens[(change.operation_id, change.key)] = replace(change, resolution=resolution)


@dataclass(frozen=True)
class _Source:
    """An operation's successful runs, newest first (at most history_runs), for overdue."""

    last_success_at: datetime | None
    last_success_run: int | None
    starts: tuple[datetime, ...]


def run_key(run_id: int, kind: AlertKind) -> str:
    return f"run:{run_id}:{kind.value}"


def rows_key(run_type: str, kind: AlertKind) -> str:
    return f"{kind.value}:{run_type}"


def evaluate_alerts(store: Store, now: datetime, rules: AlertSettings) -> EvaluationReport:
    """One pass, with no memory of earlier ones: runs ended within DEFAULT_LOOKBACK of `now`."""
    return AlertEvaluator(store, rules).evaluate(now)


class AlertEvaluator:
    """Evaluates alerts pass after pass, remembering where the previous pass got to (and each source's history)."""

    def __init__(self, store: Store, rules: AlertSettings, *, lookback: timedelta = DEFAULT_LOOKBACK) -> None:
        self.store = store
        self.rules = rules
        self.lookback = lookback
        self._since: datetime | None = None
        self._sources: dict[int, _Source] = {}
        self._schedules: dict[int, tuple[tuple[str, str], ExpectedInterval]] = {}  # croniter is slow: once per tick

    def __call__(self, now: datetime) -> EvaluationReport:
        return self.evaluate(now)

    def evaluate(self, now: datetime) -> EvaluationReport:
        since = now - self.lookback if self._since is None else min(self._since, now) - OVERLAP
        changes = _Changes()
        with self.store.read() as conn:
            open_alerts = _open_alerts(conn, now)
            known = _operations(conn)
            ended = _ended_runs(conn, since, known)
            for run in ended:
                self._sources.pop(run.operation_id, None)  # its history changed
            _judge_ended(conn, ended, open_alerts, self.rules, changes)
            running = _judge_running(conn, now, known, open_alerts, self.rules, changes)
            sources = self._judge_sources(conn, now, known, open_alerts, changes)
        report = _apply(self.store, changes, now)
        self._since = now
        return EvaluationReport(
            opened=report[0],
            resolved=report[1],
            notifications=report[2],
            ended_runs=len(ended),
            running_runs=running,
            sources=sources,
        )

    def _judge_sources(
        self,
        conn: Connection,
        now: datetime,
        known: dict[int, _Row],
        open_alerts: dict[tuple[int, str], Alert],
        changes: _Changes,
    ) -> int:
        """(d) Overdue: activated, unarchived, launchable sources without a success within their expected interval."""
        eligible = {key: row for key, row in known.items() if row.activated and not row.archived}
        for operation_id, alert in _open_of_key(open_alerts, _OVERDUE_KEY):
            if operation_id not in eligible:
                changes.resolve(alert, "the source is no longer active (deactivated, archived or removed)")
        for row in eligible.values():
            source = self._sources.get(row.id)
            if source is None:
                source = self._sources[row.id] = _source_history(conn, row.id, self.rules.history_runs)
            finding = overdue(
                source.last_success_at,
                row.updated_at,
                now,
                self._expected(row, source, now),
                self.rules.overdue_grace,
            )
            current = open_alerts.get((row.id, _OVERDUE_KEY))
            if finding is not None and current is None:
                changes.open(_Open(row.account_id, row.id, None, None, _OVERDUE_KEY, finding, row.configuration_id))
            elif finding is None and current is not None:
                changes.resolve(current, _overdue_resolution(source, current))
        return len(eligible)

    def _expected(self, row: _Row, source: _Source, now: datetime) -> ExpectedInterval | None:
        """From the schedule if it has one (and it can be read), else from its history."""
        if row.schedule:
            schedule = (str(row.schedule), str(dict(row.spec).get("schedule_timezone") or "UTC"))
            cached = self._schedules.get(row.id)
            if cached is not None and cached[0] == schedule and cached[1].changes_at and now < cached[1].changes_at:
                return cached[1]
            try:
                expected = schedule_interval(*schedule, now)
            except (ValueError, KeyError):  # a schedule that never fires, a zone this machine lacks: the history's
                pass
            else:
                self._schedules[row.id] = (schedule, expected)
                return expected
        return history_interval(source.starts, self.rules)


# --- reads ----------------------------------------------------------------------------------------------------------


def _open_alerts(conn: Connection, now: datetime) -> dict[tuple[int, str], Alert]:
    """Every open alert (silenced ones too), by (operation_id, key): the partial unique index's rows."""
    rows = conn.execute(alerts_select().add_columns(alerts.c.key).where(alerts.c.resolved_at.is_(None))).all()
    return {(row.operation_id, row.key): alert_of(row, now) for row in rows}


def _open_of_key(open_alerts: dict[tuple[int, str], Alert], key: str) -> list[tuple[int, Alert]]:
    return [(operation_id, alert) for (operation_id, k), alert in open_alerts.items() if k == key]


def _launchable_types() -> list[str]:
    """Workflows and bi-views launch nothing of their own: they get no alerts."""
    names = []
    for name in registry.operation_types():
        try:
            if registry.operation_type(name).launchable:
                names.append(name)
        except ConfigError:  # pragma: no cover - the registry lists what it knows
            continue
    return names


def _operations(conn: Connection) -> dict[int, _Row]:
    """Every operation of a launchable type (workflows and bi-views get no alerts), by id: a small table, read once
    per pass, so that the runs' queries need no join (a join lets a planner walk every operation's runs)."""
    rows = conn.execute(
        sa.select(
            operations.c.id,
            operations.c.account_id,
            operations.c.configuration_id,
            operations.c.schedule,
            operations.c.spec,
            operations.c.activated,
            operations.c.archived,
            operations.c.updated_at,
        ).where(operations.c.configuration_type.in_(_launchable_types()))
    )
    return {row.id: row for row in rows}


@dataclass(frozen=True)
class _Run:
    id: int
    account_id: int
    operation_id: int
    configuration_id: str
    run_type: str
    status: str
    message: str
    started_at: datetime | None
    completed_at: datetime | None
    rows: int | None = None  # its Data Load's, if it made one


def _runs(conn: Connection, query: sa.Select[Any], known: dict[int, _Row]) -> list[_Run]:
    return [
        _Run(
            row.id,
            row.account_id,
            row.operation_id,
            known[row.operation_id].configuration_id,
            row.run_type,
            row.status,
            row.message or "",
            row.started_at,
            row.completed_at,
        )
        for row in conn.execute(query)
        if row.operation_id in known
    ]


_RUN_COLUMNS = (
    runs.c.id,
    runs.c.account_id,
    runs.c.operation_id,
    runs.c.run_type,
    runs.c.status,
    runs.c.message,
    runs.c.started_at,
    runs.c.completed_at,
)


def _ended_runs(conn: Connection, since: datetime, known: dict[int, _Row]) -> list[_Run]:
    """The runs of launchable sources that ended at or after `since`, in the order they ended, with their rows."""
    ended = _runs(
        conn,
        sa.select(*_RUN_COLUMNS)
        # Each account in turn, so that the (account_id, completed_at) index serves the time bound.
        .where(runs.c.account_id.in_(sa.select(accounts.c.id).scalar_subquery()), runs.c.completed_at >= since)
        .order_by(runs.c.completed_at, runs.c.id),
        known,
    )
    if not ended:
        return ended
    loaded = dict(
        conn.execute(
            sa.select(data_loads.c.run_id, data_loads.c.rows).where(data_loads.c.run_id.in_([run.id for run in ended]))
        ).all()
    )
    return [replace(run, rows=loaded.get(run.id)) for run in ended]


def _alerted(conn: Connection, run_ids: Sequence[int]) -> set[tuple[int, str]]:
    """(run_id, kind) of every alert ever raised about these runs, resolved ones included."""
    if not run_ids:
        return set()
    rows = conn.execute(sa.select(alerts.c.run_id, alerts.c.kind).where(alerts.c.run_id.in_(run_ids))).all()
    return {(row.run_id, row.kind) for row in rows}


def _history(
    conn: Connection, operation_id: int, run_type: str, limit: int, *, before: int | None = None, rows: bool = False
) -> list[float]:
    """The durations (or loaded rows) of the newest successful runs of an operation and run type."""
    value = data_loads.c.rows if rows else runs.c.duration_seconds
    query = sa.select(value).where(
        runs.c.operation_id == operation_id,
        runs.c.run_type == run_type,
        runs.c.status.in_(_SUCCEEDED),
        runs.c.started_at.is_not(None),
        runs.c.completed_at.is_not(None),
    )
    if rows:
        query = query.join(data_loads, data_loads.c.run_id == runs.c.id)
    if before is not None:
        query = query.where(runs.c.id < before)
    return [float(found) for found in conn.execute(query.order_by(runs.c.id.desc()).limit(limit)).scalars()]


def _source_history(conn: Connection, operation_id: int, limit: int) -> _Source:
    found = conn.execute(
        sa.select(runs.c.id, runs.c.started_at, runs.c.completed_at)
        .where(
            runs.c.operation_id == operation_id,
            runs.c.status.in_(_SUCCEEDED),
            runs.c.started_at.is_not(None),
            runs.c.completed_at.is_not(None),
        )
        .order_by(runs.c.id.desc())
        .limit(limit)
    ).all()
    if not found:
        return _Source(None, None, ())
    last = max(found, key=lambda row: row.completed_at)
    return _Source(last.completed_at, last.id, tuple(row.started_at for row in found))


# --- judgements -----------------------------------------------------------------------------------------------------


def _judge_ended(
    conn: Connection,
    ended: Sequence[_Run],
    open_alerts: dict[tuple[int, str], Alert],
    rules: AlertSettings,
    changes: _Changes,
) -> None:
    """(a) Failed and Completed with Errors runs; (c) unusual row counts; and what a success resolves."""
    alerted = _alerted(conn, [row.id for row in ended])
    for row in ended:
        status = RunStatus(row.status)
        finding = ended_run(row.id, status, _failure_words(conn, row) if status in _ALERTED_ENDS else "")
        if finding is not None and (row.id, finding.kind.value) not in alerted:
            key = run_key(row.id, finding.kind)
            if (row.operation_id, key) not in open_alerts:
                changes.open(
                    _Open(row.account_id, row.operation_id, row.id, row.run_type, key, finding, row.configuration_id)
                )
        if status in RUN_SUCCEEDED:
            _resolve_run_alerts(row, open_alerts, changes)
            _judge_rows(conn, row, open_alerts, alerted, rules, changes)


_ALERTED_ENDS = frozenset({RunStatus.FAILED, RunStatus.COMPLETED_WITH_ERRORS})


def _failure_words(conn: Connection, row: _Run) -> str:
    """What went wrong, in the run's own words: its first failed task and that task's first message."""
    task, message = first_failure(conn, row.id)
    if task is None:
        return row.message or ""
    return f"{task}: {message or row.message or 'failed'}"


def _resolve_run_alerts(row: _Run, open_alerts: dict[tuple[int, str], Alert], changes: _Changes) -> None:
    """A successful run resolves the Failed and Completed with Errors alerts of its operation's earlier runs."""
    resolution = f"run {row.id} {RunStatus(row.status).label} at {_when(row.completed_at)}"
    for alert in open_alerts.values():
        if _earlier_of(alert.operation_id, alert.kind, alert.run_id, row, _RUN_KINDS):
            changes.resolve(alert, resolution)
    for change in list(changes.opens.values()):
        if _earlier_of(change.operation_id, change.finding.kind, change.run_id, row, _RUN_KINDS):
            changes.resolve_opened(change, resolution)


def _earlier_of(operation_id: int, kind: AlertKind, run_id: int | None, row: _Run, kinds: Sequence[AlertKind]) -> bool:
    """An alert of one of `kinds` about an earlier run of `row`'s operation."""
    return operation_id == row.operation_id and kind in kinds and run_id is not None and run_id < row.id


def _judge_rows(
    conn: Connection,
    row: _Run,
    open_alerts: dict[tuple[int, str], Alert],
    alerted: set[tuple[int, str]],
    rules: AlertSettings,
    changes: _Changes,
) -> None:
    if row.rows is None:  # no Data Load: nothing to compare
        return
    loaded = row.rows
    values = _history(conn, row.operation_id, row.run_type, rules.history_runs, before=row.id, rows=True)
    history = normal_range(values, rules.min_runs, rules.spread, floor=ROW_FLOOR)
    if history is None:
        return
    finding = unusual_rows(row.id, row.run_type, loaded, history)
    for kind in _ROW_KINDS:
        if finding is not None and finding.kind is kind:
            continue  # the episode goes on
        if finding is None:
            resolution = f"run {row.id} loaded {loaded:,} rows, within the usual range"
        else:
            resolution = f"run {row.id} loaded {loaded:,} rows: see its own alert"
        episode = (row.operation_id, rows_key(row.run_type, kind))
        current = open_alerts.get(episode)
        if current is not None and _earlier_of(current.operation_id, current.kind, current.run_id, row, _ROW_KINDS):
            changes.resolve(current, resolution)
        pending = changes.opens.get(episode)
        if pending is not None and _earlier_of(
            pending.operation_id, pending.finding.kind, pending.run_id, row, _ROW_KINDS
        ):
            changes.resolve_opened(pending, resolution)
    if finding is None or (row.id, finding.kind.value) in alerted:
        return
    key = rows_key(row.run_type, finding.kind)
    if (row.operation_id, key) not in open_alerts:  # an episode already open keeps its first run's evidence
        changes.open(_Open(row.account_id, row.operation_id, row.id, row.run_type, key, finding, row.configuration_id))


def _judge_running(
    conn: Connection,
    now: datetime,
    known: dict[int, _Row],
    open_alerts: dict[tuple[int, str], Alert],
    rules: AlertSettings,
    changes: _Changes,
) -> int:
    """(b) Runs still going past their normal duration; and the end of the runs that were."""
    active = _runs(conn, sa.select(*_RUN_COLUMNS).where(_ACTIVE_CLAUSE), known)
    running = [row for row in active if row.status == RunStatus.RUNNING.value and row.started_at is not None]
    alerted = _alerted(conn, [row.id for row in running])
    histories: dict[tuple[int, str], NormalRange | None] = {}
    for row in running:
        key = run_key(row.id, AlertKind.RUNNING_LONG)
        if (row.id, AlertKind.RUNNING_LONG.value) in alerted or (row.operation_id, key) in open_alerts:
            continue
        group = (row.operation_id, row.run_type)
        if group not in histories:
            values = _history(conn, row.operation_id, row.run_type, rules.history_runs)
            histories[group] = normal_range(values, rules.min_runs, rules.spread, floor=SECOND_FLOOR)
        elapsed = (now - (row.started_at or now)).total_seconds()
        finding = running_long(row.id, row.run_type, elapsed, histories[group])
        if finding is not None:
            changes.open(
                _Open(row.account_id, row.operation_id, row.id, row.run_type, key, finding, row.configuration_id)
            )
    _resolve_ended_long_runs(conn, {row.id for row in active}, open_alerts, changes)
    return len(running)


def _resolve_ended_long_runs(
    conn: Connection, active: set[int], open_alerts: dict[tuple[int, str], Alert], changes: _Changes
) -> None:
    waiting = {
        alert.run_id: alert
        for alert in open_alerts.values()
        if alert.kind is AlertKind.RUNNING_LONG and alert.run_id is not None and alert.run_id not in active
    }
    if not waiting:
        return
    ended = conn.execute(
        sa.select(runs.c.id, runs.c.status, runs.c.duration_seconds).where(runs.c.id.in_(list(waiting)))
    ).all()
    for row in ended:
        took = f" after {human_duration(row.duration_seconds)}" if row.duration_seconds is not None else ""
        changes.resolve(waiting[row.id], f"the run ended {RunStatus(row.status).label}{took}")


def _overdue_resolution(source: _Source, alert: Alert) -> str:
    if source.last_success_at is not None and source.last_success_at >= alert.opened_at:
        return f"run {source.last_success_run} succeeded at {_when(source.last_success_at)}"
    return "no longer overdue (its schedule or deployment changed)"


def _when(moment: datetime | None) -> str:
    if moment is None:  # pragma: no cover - an ended run has its end
        return "an unknown time"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# --- writes ---------------------------------------------------------------------------------------------------------


def _apply(store: Store, changes: _Changes, now: datetime) -> tuple[tuple[Alert, ...], tuple[Alert, ...], int]:
    """Store the pass's changes and enqueue their notifications, in one transaction (none if nothing changed)."""
    if not changes.opens and not changes.resolves:
        return (), (), 0
    opened: list[Alert] = []
    resolved: list[Alert] = []
    notified = 0
    with store.write() as conn:
        for resolve in changes.resolves.values():
            alert = _resolve(conn, resolve, now)
            if alert is not None:
                resolved.append(alert)
                notified += enqueue(conn, alert, AlertEvent.RESOLVED, now)
        for change in changes.opens.values():
            alert = _open(conn, change, now)
            if alert is None:
                continue
            opened.append(alert)
            notified += enqueue(conn, alert, AlertEvent.OPENED, now)
            if change.resolution is not None:
                alert = _resolve(conn, _Resolve(alert, change.resolution), now)
                if alert is not None:
                    resolved.append(alert)
                    notified += enqueue(conn, alert, AlertEvent.RESOLVED, now)
    for alert in opened:
        log.info("alert opened: %s: %s (%s)", alert.configuration_id, alert.summary, alert.evidence)
    for alert in resolved:
        log.info("alert resolved: %s: %s (%s)", alert.configuration_id, alert.summary, alert.resolution)
    return tuple(opened), tuple(resolved), notified


def _resolve(conn: Connection, change: _Resolve, now: datetime) -> Alert | None:
    done = conn.execute(
        alerts.update()
        .where(alerts.c.id == change.alert.id, alerts.c.resolved_at.is_(None))
        .values(resolved_at=now, resolution=change.resolution[:300], updated_at=now)
    )
    if done.rowcount != 1:  # resolved meanwhile
        return None
    return _load(conn, change.alert.id, now)


def _open(conn: Connection, change: _Open, now: datetime) -> Alert | None:
    exists = conn.execute(
        sa.select(alerts.c.id).where(
            alerts.c.operation_id == change.operation_id, alerts.c.key == change.key, alerts.c.resolved_at.is_(None)
        )
    ).first()
    if exists is not None:  # opened meanwhile (the partial unique index would refuse a second one)
        return None
    summary = f"{change.configuration_id}: {change.finding.summary}"
    alert_id = conn.execute(
        alerts.insert()
        .values(
            account_id=change.account_id,
            operation_id=change.operation_id,
            run_id=change.run_id,
            run_type=change.run_type,
            kind=change.finding.kind.value,
            key=change.key,
            summary=summary[:300],
            evidence=change.finding.evidence,
            opened_at=now,
            updated_at=now,
        )
        .returning(alerts.c.id)
    ).scalar_one()
    return _load(conn, alert_id, now)


def _load(conn: Connection, alert_id: int, now: datetime) -> Alert:
    return alert_of(conn.execute(alerts_select().where(alerts.c.id == alert_id)).one(), now)


__all__ = ["AlertEvaluator", "EvaluationReport", "evaluate_alerts", "rows_key", "run_key"]
