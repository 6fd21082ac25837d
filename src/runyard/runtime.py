"""Wiring: from Settings to a migrated store, workers and a scheduler."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from runyard.domain.alert_rules import AlertSettings
from runyard.logtext import OneLineFormatter
from runyard.services.runs import RunService
from runyard.services.tasks import TaskLeases
from runyard.services.wakeup import Wakeup
from runyard.services.work_signal import WorkListener, listener_for
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from runyard.worker.scheduler import Scheduler
from runyard.worker.worker import Worker, default_worker_id

if TYPE_CHECKING:
    from runyard.engine.executors import Executor
    from runyard.engine.resources import EngineResources
    from runyard.services.alert_evaluation import AlertEvaluator
    from runyard.services.exports import ExportService
    from runyard.staging import Staging
    from runyard.warehouse.base import WarehouseProvider
    from runyard.worker.notifier import Notifier


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("runyard")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@contextmanager
def tuned_gc() -> Iterator[None]:
    """For the life of a long-running process, once it has started.

    What is alive after start-up stays alive: freezing it spares every later collection a scan of
    it. Extraction allocates a dict per record, freed by reference counting, not by the cyclic
    collector: collecting the youngest generation every 100,000 allocations instead of 700 saves
    about a fifth of an extraction's time (measured on the ingest benchmark's pages).
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:  # give everything back to the collector, so that shutdown frees it
        gc.set_threshold(*previous)
        gc.unfreeze()


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    settings.ensure_home()
    store = Store(settings.resolved_database_url)
    if upgrade:
        migrate.upgrade(store)
    return store


def alert_settings(settings: Settings) -> AlertSettings:
    """The alert rules' knobs, from the RUNYARD_ALERT_* settings."""
    return AlertSettings(
        min_runs=settings.alert_min_runs,
        history_runs=settings.alert_history_runs,
        spread=settings.alert_spread,
        overdue_grace=timedelta(seconds=settings.alert_overdue_grace_seconds),
    )


def engine_resources(settings: Settings, *, extra_hosts: tuple[str, ...] = ()) -> EngineResources:
    # Imported here: the CLI's short commands should not pay for pyarrow and duckdb.
    from runyard.engine.resources import EngineResources
    from runyard.staging import Staging
    from runyard.warehouse.provider import open_warehouses

    return EngineResources(
        staging=Staging(settings.resolved_staging_url),
        warehouses=open_warehouses(settings.resolved_warehouse_url),
        allowed_hosts=(*settings.allowed_hosts, *extra_hosts),
        storage_roots=settings.resolved_storage_roots,
        environ=dict(os.environ),
        warehouse_lock_wait_seconds=settings.warehouse_lock_wait_seconds,
        remove_staged_after_load=not settings.staging_keep_after_load,
    )


def default_registry() -> dict[str, Executor]:
    """The executors a process without engine resources can run: the `tasks` type's (noop, sleep, fail)."""
    from runyard.operations.tasks.executors import BUILTIN

    return dict(BUILTIN)


def full_registry(resources: EngineResources) -> dict[str, Executor]:
    """Every operation type's executors, bound to this process's resources."""
    from runyard.operations import registry

    return registry.executors(resources)


@dataclass
class Runtime:
    """Everything one process runs: its store, its workers' wakeup signal, the run services."""

    settings: Settings
    store: Store
    wakeup: Wakeup = field(default_factory=Wakeup)
    resources: EngineResources | None = None
    registry: dict[str, Executor] = field(default_factory=default_registry)
    _staging: Staging | None = field(default=None, init=False, repr=False)
    _exports: ExportService | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.resources is not None:
            self.registry = full_registry(self.resources)

    @property
    def warehouses(self) -> WarehouseProvider | None:
        """The warehouses of this process's engine; None where it runs none (the extra HTTP processes)."""
        return self.resources.warehouses if self.resources is not None else None

    @property
    def exports(self) -> ExportService:
        """This process's export sessions: the API starts them, the leading scheduler expires them."""
        if self._exports is None:
            from runyard.services.exports import export_service

            self._exports = export_service(self)
        return self._exports

    @property
    def staging(self) -> Staging:
        if self.resources is not None:
            return self.resources.staging
        if self._staging is None:
            from runyard.staging import Staging

            self._staging = Staging(self.settings.resolved_staging_url)
        return self._staging

    def close(self) -> None:
        if self.resources is not None:
            self.resources.warehouses.close_all()
        self.store.dispose()

    def notifier(self) -> Notifier:
        """Sends the alert notifications that are due; in every process that runs workers (claims keep it safe)."""
        from runyard.services.notify_send import NotificationSender
        from runyard.worker.notifier import Notifier

        sender = NotificationSender.from_settings(self.settings)
        return Notifier(
            self.store,
            sender,
            notify_seconds=self.settings.notify_seconds,
            public_url=self.settings.public_url,
            close=sender.close,
        )

    @property
    def runs(self) -> RunService:
        return RunService(self.store, self.wakeup, rejected_per_minute=self.settings.launch_rejected_per_minute)

    def leases(self) -> TaskLeases:
        return TaskLeases(self.store, lease_seconds=self.settings.lease_seconds, wakeup=self.wakeup)

    def work_listener(self) -> WorkListener | None:
        """What wakes this process's workers when another process makes work (runyard.services.work_signal): a
        LISTEN connection on PostgreSQL, a wake socket on SQLite; None for an in-memory database. Start it before
        the workers, stop it after them."""
        return listener_for(self.store, self.wakeup)

    def worker(self, label: str = "worker") -> Worker:
        return Worker(
            self.leases(),
            self.registry,
            concurrency=self.settings.worker_concurrency,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            poll_seconds=self.settings.poll_seconds,
            metrics_seconds=self.settings.metrics_seconds,
            task_max_seconds=self.settings.task_max_seconds,
            wakeup=self.wakeup,
            worker_id=default_worker_id(label),
        )

    def scheduler(self) -> Scheduler:
        """The sweep of this process, and the schedules if it leads. Its launches wake this process's workers."""
        return Scheduler(
            self.store,
            sweep_seconds=self.settings.sweep_seconds,
            cancel_timeout_seconds=self.settings.cancel_timeout_seconds,
            warehouses=self.resources.warehouses if self.resources is not None else None,
            runs=self.runs,
            tick_seconds=self.settings.scheduler_seconds,
            expire_exports=self.exports.sweep,
            evaluate_alerts=self.alert_evaluator(),
            alert_seconds=self.settings.alert_seconds,
            staging=self.staging,
            staging_retention_days=self.settings.staging_retention_days,
        )

    def alert_evaluator(self) -> AlertEvaluator:
        """The leading scheduler's alert passes, with the RUNYARD_ALERT_* rules."""
        from runyard.services.alert_evaluation import AlertEvaluator

        return AlertEvaluator(self.store, alert_settings(self.settings))
