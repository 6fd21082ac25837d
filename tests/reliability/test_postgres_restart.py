"""R15: the runs database, PostgreSQL, restarted or stopped under a running run.

The module starts a PostgreSQL cluster of its own (tests/reliability/private_postgres.py; a fresh database per
test): the shared test server serves other tests at the same time and must never go down. A real `runyard worker`
runs an api-to-table run from the demo source, held at a named point (RUNYARD_PAUSE_AT, runyard.faults) so the
database goes away at exactly that moment:

- mid-extract: `pg_ctl restart -m fast` while the worker is between two pages of the source;
- mid-load: `pg_ctl stop -m fast` while the worker is inside the warehouse load's transaction, kept down until the
  worker has given up renewing the load's lease. While the database is down the API (the real app over real HTTP,
  on the same private cluster) answers 503 with a JSON `detail` in words, on a read route and on a write route;
  once it is started again, the same requests succeed.

Either way the worker process stays alive throughout, the run ends Completed with the source's exact counts, each
task completed once or was taken up again once, and I1-I7 hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from runyard.app import create_app
from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.operations.loader import load_text
from runyard.runtime import Runtime
from runyard.services.operations import deploy
from runyard.services.tokens import create_api_token
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import tasks, users
from tests.factories import make_account
from tests.live_server import serving
from tests.reliability.db import attempt_log, launch, messages, run_state, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.private_postgres import PrivatePostgres, private_postgres
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
EMPLOYEES = 200  # four pages of 50
LOOPBACK = "127.0.0.1"
EXTRACT = "Process [employees]"
LEASE_GIVEN_UP = "its lease could not be renewed for"


@dataclass
class Case:
    pg: PrivatePostgres
    store: Store
    home: Path
    workers: Workers
    source: DemoSourceServer

    def start_paused_at(self, point: str) -> tuple[WorkerProcess, Path]:
        """A worker that holds at `point` until the returned gate file exists."""
        gate = self.home / "gate"
        worker = self.workers.start(
            allowed_hosts=LOOPBACK, extra_env={"RUNYARD_PAUSE_AT": point, "RUNYARD_PAUSE_FILE": str(gate)}
        )
        return worker, gate

    def launch(self) -> int:
        make_account(self.store)
        (deployed,) = deploy(
            self.store,
            load_text(
                "configuration_type: api-to-table\nconfiguration_id: restart-api\n"
                f'base_url: "{self.source.base_url}"\n'
                "endpoints:\n  - name: employees\n    path: /employees\n    records: data\n    primary_key: id\n"
                "    pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, "
                "limit: 50}\n"
            ),
        )
        return launch(self.store, deployed.operation_id)

    def describe(self, run_id: int) -> str:
        lines = [f"{name}: {rows}" for name, rows in run_state(self.store, run_id).items()]
        lines += [f"--- worker {w.pid} ({w.returncode}):\n{w.log()[-4000:]}" for w in self.workers.started]
        return "\n".join(lines)

    def finish(self, run_id: int, worker: WorkerProcess) -> None:
        """The run Completed; every task completed at its first attempt, or once more after its lease lapsed; the
        worker alive all along and stopping cleanly; exact counts and I1-I7."""

        def final() -> RunStatus | None:
            status = run_status(self.store, run_id)
            return status if status.is_final else None

        status = wait_until(final, timeout=TIMEOUT, what=f"run {run_id} to end", alive=[worker])
        assert status is RunStatus.COMPLETED, self.describe(run_id)
        with self.store.read() as conn:
            task_ids = list(conn.execute(sa.select(tasks.c.id).where(tasks.c.run_id == run_id)).scalars())
        for task_id in task_ids:
            outcomes = [outcome for _, outcome, _ in attempt_log(self.store, task_id)]
            assert outcomes in (["completed"], ["lease_expired", "completed"]), self.describe(run_id)
        assert worker.terminate() == 0, worker.log()
        check_invariants(
            self.store,
            self.home / "warehouse",
            source_counts={"employees": expected_counts(DemoSourceConfig(employees=EMPLOYEES))["employees"]},
            staging_root=self.home / "staging",
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


@pytest.fixture
def case(cluster: PrivatePostgres, tmp_path: Path) -> Iterator[Case]:
    """A fresh database on the module's private cluster (running: each test leaves it started), a worker home."""
    home = tmp_path / "home"
    home.mkdir()
    name = f"ry_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(cluster.url).set(database=name).render_as_string(hide_password=False)
    with DemoSourceServer(DemoSourceConfig(employees=EMPLOYEES)) as source:
        store = Store(url)
        migrate.upgrade(store)
        pool = Workers(url, home)
        try:
            yield Case(cluster, store, home, pool, source)
        finally:
            pool.close()
            store.dispose()
            if not cluster.running():  # a failed test may have left it stopped: the next one needs it
                cluster.start()


def wait_at_gate(case: Case, worker: WorkerProcess, gate: Path, run_id: int) -> None:
    reached = gate.with_name(gate.name + ".reached")
    wait_until(reached.exists, timeout=TIMEOUT, what=f"the worker to reach {gate}", alive=[worker])


def started_at(store: Store) -> object:
    with store.read() as conn:
        return conn.execute(sa.text("SELECT pg_postmaster_start_time()")).scalar_one()


def test_a_restart_mid_extract_leaves_the_worker_running_and_the_run_exact(case: Case) -> None:
    run_id = case.launch()
    worker, gate = case.start_paused_at("extract.page_3")
    wait_at_gate(case, worker, gate, run_id)
    before = started_at(case.store)

    case.pg.restart()  # every session of the worker is cut while it is between two pages

    assert started_at(case.store) != before  # a real restart: a new postmaster
    worker.expect_alive("the restart")
    gate.touch()
    case.finish(run_id, worker)
    # Down for well under a lease: the worker reconnected and kept its lease; the extract was never run again.
    extract = task_row(case.store, run_id, EXTRACT)
    assert attempt_log(case.store, extract["id"]) == [(1, "completed", worker.worker_id)]
    assert extract["records_processed"] == EMPLOYEES


def test_a_stop_mid_load_answers_503_then_recovers_and_the_run_completes(case: Case, tmp_path: Path) -> None:
    run_id = case.launch()
    worker, gate = case.start_paused_at("load.before_commit")
    api_home = tmp_path / "api"
    url = case.store.url.render_as_string(hide_password=False)
    runtime = Runtime(Settings(home=api_home, database_url=url), Store(url))
    with case.store.read() as conn:
        admin = conn.execute(sa.select(users.c.id).where(users.c.login == "admin")).scalar_one()
    _, token = create_api_token(case.store, admin, "r15-probe")
    try:
        with serving(create_app(runtime)) as url, httpx.Client(base_url=url, headers={"TOKEN": token}) as api:
            read = f"/api/v1/runs/{run_id}"
            assert api.get(read).status_code == 200
            wait_at_gate(case, worker, gate, run_id)
            assert run_status(case.store, run_id) is RunStatus.RUNNING

            case.pg.stop()  # the worker is inside the warehouse load's transaction

            for response in (api.get(read), api.post("/api/v1/tokens", json={"name": "while-down"})):
                assert response.status_code == 503, (response.request.method, response.status_code, response.text)
                assert response.headers["content-type"] == "application/json"
                assert response.headers["retry-after"].isdigit()
                detail = response.json()["detail"]
                assert "runs database is unavailable" in detail, detail
                assert "Traceback" not in response.text
                assert "psycopg" not in response.text
                assert "127.0.0.1" not in response.text
            wait_until(
                lambda: LEASE_GIVEN_UP in worker.log(),
                timeout=TIMEOUT,
                what="the worker to give up renewing the Data Load's lease",
                alive=[worker],
            )

            case.pg.start()

            def answered() -> httpx.Response | None:
                response = api.get(read)
                return response if response.status_code == 200 else None

            back = wait_until(answered, timeout=TIMEOUT, what="the API to answer again")
            assert back.json()["id"] == run_id
            created = api.post("/api/v1/tokens", json={"name": "after-restart"})
            assert created.status_code == 201, created.text
            gate.touch()
            case.finish(run_id, worker)
    finally:
        runtime.close()
        runtime.store.dispose()
    # The load committed in the warehouse after its lease had lapsed: the worker wrote nothing of it, attempt 2 found
    # the load recorded and did not load again (I2 and I4 above: exact rows, one load record).
    with case.store.read() as conn:
        load = conn.execute(sa.select(tasks).where(tasks.c.run_id == run_id, tasks.c.name == "Data Load")).one()
    assert load.status == TaskStatus.COMPLETED.value
    assert [outcome for _, outcome, _ in attempt_log(case.store, load.id)] == ["lease_expired", "completed"]
    assert "already been loaded" in " ".join(messages(case.store, load.id)), case.describe(run_id)
