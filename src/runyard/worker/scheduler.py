"""The scheduler loop. In every process: sweeps expired leases and stuck cancellations on a timer, and drops the
warehouse staging tables of runs that ended without loading them (failed, canceled, or a worker died mid-load).
In the one process that leads (runyard.worker.leader): fires the schedule ticks operations owe, and, at each sweep,
evaluates the workflows still pending (a success counted by a process that died before it launched the target, or
a run completed at its launch); and, every RUNYARD_ALERT_SECONDS, the alerts (runyard.services.alert_evaluation).
Also in the leader, at most once an hour (at a sweep), the staged files of runs that ended more than
RUNYARD_STAGING_RETENTION_DAYS ago, in every account (`sweep_staged_files`).

The sweep stays in every process: it is idempotent, and each process holds its own warehouses' staging tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from runyard.domain.statuses import RUN_ACTIVE, RUN_FINAL
from runyard.errors import TransientError
from runyard.services.runs import RunService
from runyard.services.schedules import TickOutcome, earliest_next_tick, fire_due
from runyard.services.sweep import ended_runs, sweep
from runyard.services.workflows import fire_pending
from runyard.store.database import Store
from runyard.store.failures import describe_failure
from runyard.store.tables import runs as runs_table
from runyard.store.tables import tasks as tasks_table
from runyard.warehouse.base import WarehouseProvider
from runyard.worker.leader import Leadership, leadership_for

if TYPE_CHECKING:
    from runyard.staging import StagedRun, Staging

log = logging.getLogger("runyard.scheduler")

# How often the leader looks for staged files past RUNYARD_STAGING_RETENTION_DAYS: listing a whole S3 prefix at
# every sweep would cost requests for nothing, and a day's retention does not need to be kept to the second.
STAGING_SWEEP_SECONDS = 3600.0
_KEYS_PER_QUERY = 500

DEFAULT_TICK_SECONDS = 1.0
# Wake this long after a tick is due rather than on it: a clock read a hair early would find nothing due yet.
_AFTER_TICK_SECONDS = 0.005


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        sweep_seconds: float,
        cancel_timeout_seconds: float,
        warehouses: WarehouseProvider | None = None,
        runs: RunService | None = None,
        clock: Callable[[], datetime] | None = None,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        leadership: Leadership | None = None,
        expire_exports: Callable[[], int] | None = None,
        evaluate_alerts: Callable[[datetime], object] | None = None,
        alert_seconds: float = 5.0,
        staging: Staging | None = None,
        staging_retention_days: float = 0.0,
    ) -> None:
        self.store = store
        self.staging = staging
        self.staging_retention_days = staging_retention_days  # 0: staged files are kept
        self._next_staging_sweep = 0.0  # time.monotonic() of the next one: the first leading sweep does it
        self.expire_exports = expire_exports
        self.evaluate_alerts = evaluate_alerts  # runyard.services.alert_evaluation.AlertEvaluator, when leading
        self.alert_seconds = alert_seconds
        self.warehouses = warehouses
        self.sweep_seconds = sweep_seconds
        self.cancel_timeout_seconds = cancel_timeout_seconds
        self.runs = runs if runs is not None else RunService(store)
        self.clock = clock if clock is not None else self._database_clock
        self.tick_seconds = tick_seconds
        self.leadership = leadership if leadership is not None else leadership_for(store)
        self.leading = False
        self._told_standing_by = False
        self._lock_error = ""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is None:
            self.leadership.release()  # a test's lead() may have taken it
        else:
            self._thread.join(max(self.sweep_seconds, self.tick_seconds) + 5)  # the loop lets go as it ends

    def tick_once(self, now: datetime | None = None) -> list[TickOutcome]:
        """Fire the schedule ticks due at `now` (default: the clock), leader or not: the leader's work, once. The
        record of each tick makes a second call for the same ticks fire nothing."""
        return fire_due(self.store, self.runs, now if now is not None else self.clock())

    def alerts_once(self, now: datetime | None = None) -> object:
        """One pass of alert evaluation at `now` (default: the clock), leader or not; None without an evaluator."""
        if self.evaluate_alerts is None:
            return None
        return self.evaluate_alerts(now if now is not None else self.clock())

    def lead(self) -> bool:
        """Try to lead (or check that this process still does); log when that changes."""
        try:
            leading = self.leadership.try_lead()
        except OSError as error:  # the lock file's folder is unusable: stand by, and say why (once per reason)
            if str(error) != self._lock_error:
                log.warning("scheduler: cannot take %s (%s); standing by", self.leadership.description, error)
                self._lock_error = str(error)
            self.leading = False
            return False
        if leading and not self.leading:
            log.info("scheduler: leading (%s): this process fires schedule ticks", self.leadership.description)
        elif self.leading and not leading:
            log.warning("scheduler: no longer leading; another process takes over the schedules")
        elif not leading and not self._told_standing_by:
            log.info("scheduler: standing by: another process leads (%s)", self.leadership.description)
            self._told_standing_by = True
        self.leading = leading
        return leading

    def _loop(self) -> None:
        next_sweep = time.monotonic() + self.sweep_seconds
        next_alerts = time.monotonic()
        wait = 0.0
        try:
            while not self._stopping.wait(wait):
                try:
                    wait = self._fire_ticks() if self.lead() else self.tick_seconds
                    if time.monotonic() >= next_sweep:
                        self._sweep()
                        next_sweep = time.monotonic() + self.sweep_seconds
                    if self.leading and self.evaluate_alerts is not None and time.monotonic() >= next_alerts:
                        self._evaluate_alerts()
                        next_alerts = time.monotonic() + self.alert_seconds
                except Exception:  # a loop that died would hold leadership and fire nothing: log, go on
                    log.exception("scheduler: pass failed; trying again in %s s", self.tick_seconds)
                    wait = self.tick_seconds
                wait = min(wait, max(next_sweep - time.monotonic(), 0.0))
                if self.leading and self.evaluate_alerts is not None:
                    wait = min(wait, max(next_alerts - time.monotonic(), 0.0))
        finally:
            self.leadership.release()
            self.leading = False

    def _fire_ticks(self) -> float:
        """Fire what is due; how long to wait before looking again (until the next tick, at most tick_seconds)."""
        started = time.monotonic()
        try:
            now = self.clock()
            self.tick_once(now)
            upcoming = earliest_next_tick(self.store, now)
        except Exception as error:  # the next pass fires whatever this one could not
            log.warning(
                "schedules skipped (%s); trying again in %s s",
                describe_failure(error),
                self.tick_seconds,
                exc_info=not isinstance(error, sa.exc.DBAPIError),  # a bug's traceback, not a driver's
            )
            return self.tick_seconds
        if upcoming is None:
            return self.tick_seconds
        until = (upcoming - now).total_seconds() - (time.monotonic() - started)
        return min(self.tick_seconds, max(until, 0.0) + _AFTER_TICK_SECONDS)

    def _database_clock(self) -> datetime:
        with self.store.read() as conn:
            return self.store.now(conn)

    def _sweep(self) -> None:
        try:
            report = sweep(self.store, cancel_timeout_seconds=self.cancel_timeout_seconds)
        except Exception as error:  # the next sweep picks up whatever this one left
            log.warning(
                "sweep skipped (%s); trying again in %s s",
                describe_failure(error),
                self.sweep_seconds,
                exc_info=not isinstance(error, sa.exc.DBAPIError),  # a bug's traceback, not a driver's
            )
            return
        if report.exhausted or report.canceled or report.forced_runs:
            log.info("sweep: %s", report)
        if self.leading:
            self._fire_pending_workflows()
            self._expire_exports()
            if time.monotonic() >= self._next_staging_sweep:
                self._next_staging_sweep = time.monotonic() + STAGING_SWEEP_SECONDS
                self._sweep_staged_files()
        if self.warehouses is not None:
            self._drop_ended_staging(self.warehouses)

    def _evaluate_alerts(self) -> None:
        try:
            self.alerts_once()
        except Exception as error:  # the next pass looks again (it remembers where the last good one got to)
            log.warning(
                "alerts not evaluated (%s); trying again in %s s",
                describe_failure(error),
                self.alert_seconds,
                exc_info=not isinstance(error, sa.exc.DBAPIError),  # a bug's traceback, not a driver's
            )

    def _fire_pending_workflows(self) -> None:
        try:
            fire_pending(self.store, self.runs)
        except Exception as error:  # the next sweep tries again
            log.warning("pending workflows not evaluated (%s); trying again at the next sweep", describe_failure(error))

    def _expire_exports(self) -> None:
        if self.expire_exports is None:
            return
        try:
            removed = self.expire_exports()
        except Exception as error:  # the next sweep tries again
            log.warning("export sessions not expired (%s); trying again at the next sweep", describe_failure(error))
            return
        if removed:
            log.info("removed %d export session(s) that had drained, with their cached pages", removed)

    def sweep_staged_files(self, now: datetime | None = None) -> list[StagedRun]:
        """Remove the staged files of the runs that ended more than RUNYARD_STAGING_RETENTION_DAYS before `now`
        (default: the database's clock), in every account, on a local folder or S3 alike; the runs removed. Never
        those of a run still going, nor those a run still going reuses (a retry reads its original's extractions).
        Folders of runs this store does not know are left alone. Leader or not (the scheduler calls it as leader).

        Before a run's files go, its tasks' outputs stop being reusable (`forget_outputs`): a later retry of it, or of
        a retry that reused them, runs those tasks again instead of failing on files that are gone."""
        if self.staging is None or self.staging_retention_days <= 0:
            return []
        cutoff = (now if now is not None else self.clock()) - timedelta(days=self.staging_retention_days)
        staged = self.staging.staged_runs()
        expired = expired_runs(self.store, {run.run_key for run in staged}, cutoff)
        removed = []
        for run in staged:
            if run.run_key not in expired or not forget_outputs(self.store, run.run_key):
                continue
            try:
                self.staging.remove_run(run.account, run.operation_id, run.run_key)
            except Exception as error:  # the next pass tries again
                log.warning("could not remove the staged files of run %s: %s", run.run_key, describe_failure(error))
                continue
            removed.append(run)
        if removed:
            log.info(
                "removed the staged files of %s that ended more than %s ago",
                _count(len(removed), "run"),
                _count(self.staging_retention_days, "day"),
            )
        return removed

    def _sweep_staged_files(self) -> None:
        try:
            self.sweep_staged_files()
        except Exception as error:  # the next pass (in an hour) tries again
            log.warning(
                "staged files of old runs not removed (%s); trying again in %s",
                describe_failure(error),
                _count(STAGING_SWEEP_SECONDS / 60, "minute"),
            )

    def _drop_ended_staging(self, warehouses: WarehouseProvider) -> None:
        for warehouse in warehouses.sweepable():
            try:
                for run_key in ended_runs(self.store, warehouse.staged_runs()):
                    warehouse.drop_staging(run_key)
                    log.info("dropped the warehouse staging tables of run %s, which has ended", run_key)
            except TransientError as busy:  # another process has the file now: its turn, the next sweep looks again
                log.debug("staging tables of ended runs not looked at: %s", busy)
            except Exception as error:  # the next sweep tries again
                log.warning("could not drop the staging tables of ended runs: %s", describe_failure(error))


def expired_runs(store: Store, run_keys: Collection[str], cutoff: datetime) -> set[str]:
    """The run keys among `run_keys` whose runs ended before `cutoff`, less those whose outputs a run still going
    reuses (a retry's reused tasks read the files of the run that made them)."""
    if not run_keys:
        return set()
    final = [status.value for status in RUN_FINAL]
    active = [status.value for status in RUN_ACTIVE]
    keys = sorted(run_keys)
    expired: set[str] = set()
    with store.read() as conn:
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            expired.update(
                conn.execute(
                    sa.select(runs_table.c.run_key).where(
                        runs_table.c.run_key.in_(chunk),
                        runs_table.c.status.in_(final),
                        runs_table.c.completed_at < cutoff,
                    )
                ).scalars()
            )
        if expired:
            reusing = tasks_table.alias("reusing")
            reusing_run = runs_table.alias("reusing_run")
            made = tasks_table.alias("made")
            expired -= set(
                conn.execute(
                    sa.select(runs_table.c.run_key)
                    .distinct()
                    .select_from(
                        reusing.join(reusing_run, reusing_run.c.id == reusing.c.run_id)
                        .join(made, made.c.id == reusing.c.reused_from)
                        .join(runs_table, runs_table.c.id == made.c.run_id)
                    )
                    .where(reusing_run.c.status.in_(active))
                ).scalars()
            )
    return expired


class _StillReused(Exception):
    """Rolls forget_outputs' transaction back."""


def forget_outputs(store: Store, run_key: str) -> bool:
    """Mark the outputs of run `run_key`'s tasks as no longer reusable, and every task that reused one of them: their
    staged files are about to be removed. False (nothing changed) when a run still going reuses one of them.

    The update comes first so that, on PostgreSQL, it waits for a retry being launched (which locks the tasks it
    reuses, runyard.services.runs) and then sees it; a retry launched after it reuses nothing of this run."""
    made = (
        sa.select(tasks_table.c.id)
        .join(runs_table, runs_table.c.id == tasks_table.c.run_id)
        .where(runs_table.c.run_key == run_key)
        .scalar_subquery()
    )
    reusing_run = runs_table.alias("reusing_run")
    try:
        with store.write() as conn:
            conn.execute(
                tasks_table.update()
                .where(
                    tasks_table.c.reusable.is_(True),
                    sa.or_(
                        sa.and_(tasks_table.c.id.in_(made), tasks_table.c.reused_from.is_(None)),  # made here
                        tasks_table.c.reused_from.in_(made),
                    ),
                )
                .values(reusable=False)
            )
            still_reused = conn.execute(
                sa.select(tasks_table.c.id)
                .join(reusing_run, reusing_run.c.id == tasks_table.c.run_id)
                .where(tasks_table.c.reused_from.in_(made), reusing_run.c.status.in_([s.value for s in RUN_ACTIVE]))
                .limit(1)
            ).first()
            if still_reused is not None:
                raise _StillReused
    except _StillReused:
        return False
    return True


def _count(amount: float, unit: str) -> str:
    """`3 runs`, `1 run`, `7 days`, `0.5 days`."""
    return f"{amount:g} {unit}" if amount == 1 else f"{amount:g} {unit}s"
