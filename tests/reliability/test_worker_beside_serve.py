"""Issue 15 item 4: a `runyard worker` beside `runyard serve` on the embedded default (SQLite, DuckDB) runs runs.

Two api-to-table operations load the same account's DuckDB file. DuckDB admits one process per file: each process
lets the file go once idle (warehouse/duckdb.py, IDLE_RELEASE_SECONDS) and a task that finds it held waits (a
transient error, engine/executors.py). Both processes run throughout; SIGSTOP (at a moment the paused one holds
neither the file nor a write transaction) decides who works: the first round serve alone, the second the worker
alone (the file serve used is now the worker's), then both at once. What must hold: every run Completed, every task
in its first attempt, the warehouse tasks of each round run where expected, the tables equal to the source, I1-I7.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus
from runyard.operations.loader import load_text
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import Deployed, deploy
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import tasks
from tests.integration.cli_helpers import free_port
from tests.reliability.db import has_open_write, launch, run_status
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 90.0  # a bound on a run that waits for the other process's turn at the file, never a speed requirement
ENDPOINTS = ("employees", "departments")
WAREHOUSE_TASKS = ("Get High Watermark", "Metadata Consolidation", "Ingestion", "Data Load")


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{home / 'runyard.db'}")
    migrate.upgrade(store)
    bootstrap_admin(store, "beside-serve-password")
    yield store
    store.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(exist_ok=True)
    return path


def operation(endpoint: str, base_url: str) -> str:
    return (
        f"configuration_type: api-to-table\nconfiguration_id: beside-{endpoint}\n"
        f'base_url: "{base_url}"\n'
        f"endpoints:\n  - name: {endpoint}\n    path: /{endpoint}\n    records: data\n    primary_key: id\n"
        "    pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, "
        "limit: 50}\n"
    )


def file_in_use(path: Path) -> bool:
    """Whether a process holds the DuckDB file (it cannot be opened, even to read)."""
    if not path.exists():
        return False
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.Error:
        return True
    return False


def run_round(store: Store, deployed: list[Deployed], alive: list[WorkerProcess], label: str) -> list[int]:
    """Launch each operation once and wait for every run to end Completed; the run ids."""
    run_ids = [launch(store, each.operation_id) for each in deployed]
    for run_id in run_ids:
        status = wait_until(
            lambda run_id=run_id: (found := run_status(store, run_id)).is_final and found,  # type: ignore[misc]
            timeout=TIMEOUT,
            what=f"run {run_id} ({label}) to end",
            alive=alive,
        )
        logs = "\n---\n".join(process.log() for process in alive)
        assert status is RunStatus.COMPLETED, f"run {run_id} ({label}) ended {status}\n{logs}"
    return run_ids


def warehouse_task_owners(store: Store, run_ids: list[int]) -> set[str]:
    """ "serve" and/or "worker": the kinds of process that ran the runs' warehouse tasks."""
    with store.read() as conn:
        rows = conn.execute(sa.select(tasks.c.name, tasks.c.worker_id).where(tasks.c.run_id.in_(run_ids))).all()
    return {row.worker_id.rsplit(":", 1)[-1] for row in rows if row.name.startswith(WAREHOUSE_TASKS)}


def test_a_worker_beside_serve_on_the_embedded_default_completes_every_run(store: Store, home: Path) -> None:
    config = DemoSourceConfig(employees=200)
    pool = Workers(store.url.render_as_string(hide_password=False), home)
    file = home / "warehouse" / "default.duckdb"
    with DemoSourceServer(config) as source:
        deployed = deploy(store, load_text("\n---\n".join(operation(e, source.base_url) for e in ENDPOINTS)))
        try:
            server = pool.start(allowed_hosts="127.0.0.1", command=("serve", "--port", str(free_port())))
            worker = pool.start(allowed_hosts="127.0.0.1")
            worker.pause(lambda: has_open_write(store) or file_in_use(file))
            serve_round = run_round(store, deployed, [server], "serve alone")

            worker.resume()
            server.pause(lambda: has_open_write(store) or file_in_use(file))
            worker_round = run_round(store, deployed, [worker], "the worker alone")

            server.resume()
            together = [run_round(store, deployed, [server, worker], f"together, round {n + 1}") for n in range(2)]
            assert worker.terminate() == 0, worker.log()
            assert server.terminate() == 0, server.log()
        finally:
            pool.close()

    with store.read() as conn:
        attempts = set(conn.execute(sa.select(tasks.c.attempt)).scalars())
    assert attempts == {1}, "a task needed a second attempt: waiting for the file is not transient"
    assert warehouse_task_owners(store, serve_round) == {"serve"}
    assert warehouse_task_owners(store, worker_round) == {"worker"}
    assert warehouse_task_owners(store, [run for runs in together for run in runs])
    counts = expected_counts(config)
    check_invariants(store, home / "warehouse", source_counts={e: counts[e] for e in ENDPOINTS})
