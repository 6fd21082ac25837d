"""An in-process runyard (store, worker, scheduler, DuckDB warehouse) against a real demo HR source.

`api_harness(tmp_path, config)` starts a DemoSourceServer on a free loopback port, a migrated
SQLite store under tmp_path, a Runtime with the engine's real executors and one worker and one
scheduler thread, and stops all of it (source, threads, store, DuckDB) when the block ends.
`StaticJsonServer` serves fixed JSON bodies, for sources the demo cannot imitate.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

from runyard.demo import OPERATIONS, SOURCE_URL_PLACEHOLDER, demo_specs
from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.domain.statuses import RunType, TaskStatus
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import run_tasks
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView, TaskView
from runyard.settings import Settings
from runyard.store.tables import data_loads, task_attempts
from runyard.warehouse.duckdb import DuckDBWarehouse
from runyard.worker.scheduler import Scheduler
from runyard.worker.worker import Worker

T = TypeVar("T")

RUN_TIMEOUT = 60.0
POLL = 0.05
DEMO_TABLES = ("employees", "departments", "time_off")


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, poll: float = POLL) -> T:
    """Call `check` until it returns something truthy (returned); AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def demo_hr_text(source_url: str) -> str:
    """The YAML of the demo-hr operation, pointed at `source_url` (to derive custom specs from)."""
    text = (OPERATIONS / "demo-hr.yaml").read_text(encoding="utf-8")
    return text.replace(SOURCE_URL_PLACEHOLDER, source_url)


@dataclass
class ApiHarness:
    settings: Settings
    runtime: Runtime
    source: DemoSourceServer
    worker: Worker
    scheduler: Scheduler

    # -- operations and runs -------------------------------------------------------------

    def deploy_demo(self) -> int:
        """Deploy the demo-hr operation; its operation id."""
        specs = [s for s in demo_specs(self.source.base_url) if s.configuration_id == "demo-hr"]
        assert len(specs) == 1
        return self._deploy(specs)

    def deploy_text(self, text: str) -> int:
        """Deploy the one operation a YAML text holds; its operation id."""
        return self._deploy(load_text(text))

    def _deploy(self, specs: list[Any]) -> int:
        deployed = deploy(self.runtime.store, specs, self.runtime.registry)
        assert len(deployed) == 1
        return deployed[0].operation_id

    def launch(self, operation_id: int, run_type: RunType = RunType.DESTRUCTIVE) -> RunView:
        return self.runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=run_type))

    def wait(self, run_id: int, timeout: float = RUN_TIMEOUT) -> RunView:
        """The run once it is final (AssertionError, with its tasks, if it is not within `timeout` s)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.runtime.runs.get_run(run_id)
            if view.status.is_final:
                return view
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"run {run_id} is still {view.status} after {timeout:.0f} s:\n{self.describe(run_id)}"
                )
            time.sleep(POLL)

    def run(self, operation_id: int, run_type: RunType = RunType.DESTRUCTIVE) -> RunView:
        """Launch a run and wait until it is final."""
        return self.wait(self.launch(operation_id, run_type).id)

    def tasks(self, run_id: int) -> dict[str, TaskView]:
        with self.runtime.store.read() as conn:
            return {task.name: task for task in run_tasks(conn, run_id)}

    def task(self, run_id: int, name: str) -> TaskView:
        tasks = self.tasks(run_id)
        assert name in tasks, f"run {run_id} has no task {name!r}: {sorted(tasks)}"
        return tasks[name]

    def wait_task(self, run_id: int, name: str, status: TaskStatus, timeout: float = RUN_TIMEOUT) -> TaskView:
        def reached() -> TaskView | None:
            task = self.task(run_id, name)
            return task if task.status is status else None

        return wait_for(reached, timeout=timeout, what=f"{name} of run {run_id} to be {status}", poll=0.01)

    def describe(self, run_id: int) -> str:
        """Every task of a run with its status, tables and messages: for assertion messages."""
        lines = []
        for task in self.tasks(run_id).values():
            messages = " | ".join(f"{m.level}: {m.text[:300]}" for m in task.messages)
            lines.append(f"  {task.name:40} {task.status.label:22} {task.tables} {messages}")
        return "\n".join(lines)

    def attempts(self, task_id: int) -> int:
        """How many task_attempts rows a task has."""
        with self.runtime.store.read() as conn:
            query = sa.select(sa.func.count()).select_from(task_attempts).where(task_attempts.c.task_id == task_id)
            return int(conn.execute(query).scalar_one())

    def data_loads(self, run_id: int) -> list[dict[str, Any]]:
        """The data_loads rows the runs store holds for a run."""
        with self.runtime.store.read() as conn:
            rows = conn.execute(sa.select(data_loads).where(data_loads.c.run_id == run_id)).mappings().all()
        return [dict(row) for row in rows]

    # -- the warehouse -------------------------------------------------------------------

    @property
    def warehouse(self) -> DuckDBWarehouse:
        assert self.runtime.resources is not None
        warehouse = self.runtime.resources.warehouses.for_account("default")
        assert isinstance(warehouse, DuckDBWarehouse)
        return warehouse

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return self.warehouse.query(sql, params)

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        rows = self.query(sql, params)
        assert len(rows) == 1, rows
        assert len(rows[0]) == 1, rows
        return rows[0][0]

    def table_names(self) -> set[str]:
        rows = self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
        return {str(row[0]) for row in rows}

    def count(self, table: str) -> int:
        return int(self.scalar(f'SELECT count(*) FROM main."{table}"'))

    def duplicate_ids(self, table: str) -> int:
        return int(self.scalar(f'SELECT count(*) - count(DISTINCT id) FROM main."{table}"'))

    def counts(self, tables: tuple[str, ...] = DEMO_TABLES) -> dict[str, int]:
        return {table: self.count(table) for table in tables}

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return {str(name): str(kind) for name, kind in rows}

    # -- the demo source -----------------------------------------------------------------

    def admin(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call an /_admin endpoint of the demo source; its JSON answer."""
        response = httpx.request(method, self.source.url(f"/_admin/{path}"), json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def source_stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = self.admin("GET", "stats")
        return stats


def fast_settings(home: Path) -> Settings:
    return Settings(home=home, lease_seconds=3, heartbeat_seconds=0.3, poll_seconds=0.1, sweep_seconds=0.3)


@contextmanager
def api_harness(
    tmp_path: Path, config: DemoSourceConfig | None = None, *, warehouse_url: str | None = None
) -> Iterator[ApiHarness]:
    """A started harness (see the module docstring), on `warehouse_url` when given (else DuckDB under its home);
    everything is stopped when the block ends."""
    settings = fast_settings(tmp_path / "home").model_copy(update={"warehouse_url": warehouse_url})
    source = DemoSourceServer(config or DemoSourceConfig())
    source.start()
    try:
        store = open_store(settings)
        bootstrap_admin(store, "harness-password-1")
        runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
        try:
            worker = runtime.worker("harness")
            scheduler = runtime.scheduler()
            worker.start()
            scheduler.start()
            try:
                yield ApiHarness(settings, runtime, source, worker, scheduler)
            finally:
                worker.stop(10)
                scheduler.stop()
        finally:
            runtime.close()
    finally:
        source.stop()


# --------------------------------------------------------------------------------------------------
# A source that serves fixed bodies


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self.server.bodies.get(path)
        if body is None:
            self.send_response(404)
            payload = b'{"error": "not found"}'
        else:
            self.send_response(200)
            payload = body
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    bodies: dict[str, bytes]


class StaticJsonServer:
    """Serves `bodies` (path -> JSON bytes) on 127.0.0.1 from a thread; a context manager."""

    def __init__(self, bodies: Mapping[str, bytes]) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.bodies = dict(bodies)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StaticJsonServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
