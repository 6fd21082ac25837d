"""The scheduler loop: sweeps expired leases and stuck cancellations on a timer, and drops the warehouse
staging tables of runs that ended without loading them (failed, canceled, or a worker died mid-load)."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from runyard.services.sweep import ended_runs, sweep
from runyard.store.database import Store
from runyard.store.failures import describe_failure
from runyard.warehouse.base import WarehouseProvider

log = logging.getLogger("runyard.scheduler")


class Scheduler:
    def __init__(
        self,
        store: Store,
        *,
        sweep_seconds: float,
        cancel_timeout_seconds: float,
        warehouses: WarehouseProvider | None = None,
    ) -> None:
        self.store = store
        self.warehouses = warehouses
        self.sweep_seconds = sweep_seconds
        self.cancel_timeout_seconds = cancel_timeout_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.sweep_seconds + 5)

    def _loop(self) -> None:
        while not self._stopping.wait(self.sweep_seconds):
            try:
                report = sweep(self.store, cancel_timeout_seconds=self.cancel_timeout_seconds)
            except Exception as error:  # the next sweep picks up whatever this one left
                log.warning(
                    "sweep skipped (%s); trying again in %s s",
                    describe_failure(error),
                    self.sweep_seconds,
                    exc_info=not isinstance(error, sa.exc.DBAPIError),  # a bug's traceback, not a driver's
                )
                continue
            if report.exhausted or report.canceled or report.forced_runs:
                log.info("sweep: %s", report)
            if self.warehouses is not None:
                self._drop_ended_staging(self.warehouses)

    def _drop_ended_staging(self, warehouses: WarehouseProvider) -> None:
        for warehouse in warehouses.opened():
            try:
                for run_key in ended_runs(self.store, warehouse.staged_runs()):
                    warehouse.drop_staging(run_key)
                    log.info("dropped the warehouse staging tables of run %s, which has ended", run_key)
            except Exception as error:  # the next sweep tries again
                log.warning("could not drop the staging tables of ended runs: %s", describe_failure(error))
