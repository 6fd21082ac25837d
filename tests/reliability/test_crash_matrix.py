"""Issue 16's crash matrix: every named crash point, on both stores, with real `runyard worker` processes.

Each scenario launches a small run, starts a worker with RUNYARD_CRASH_AT=<point>, waits for it to die by
SIGKILL there, starts a fresh worker without the setting and waits for the run's final status: Completed, or
Canceled where the scenario cancels. Then the worker is stopped and `check_invariants` (I1-I7) reads the store,
the DuckDB file and the staging folder. The warehouse is DuckDB, the only one today.

RUNYARD_CRASH_REPEAT (default 3, as in `make test`) runs every scenario that many times; `make soak` runs 20.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.operations.loader import load_text
from runyard.operations.storage_to_storage.copy import CRASH_MID_FILE
from runyard.services.operations import deploy
from runyard.services.runs import RunService
from runyard.store.database import Store
from runyard.store.tables import task_attempts, tasks
from tests.factories import make_account, make_operation, sleep_task
from tests.integration.cdc_source import SourceDb, cdc_source
from tests.reliability.db import launch, run_state, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

REPEAT = int(os.environ.get("RUNYARD_CRASH_REPEAT", "3"))
LOOPBACK = "127.0.0.1"  # the workers may reach the demo source on loopback
TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
EMPLOYEES = 200  # four pages of 50
COPY_BYTES = 12 * 2**20  # two 8 MiB chunks: the kill comes after the first, with the file half written
SOURCE_ROWS = 100
CDC_URL_ENV = "CRASH_MATRIX_CDC_URL"


@dataclass
class Case:
    """One scenario's store, worker home and workers, and what it expects of the warehouse."""

    store: Store
    home: Path
    workers: Workers
    source_counts: dict[str, int] | None = None

    def start(self, crash_at: str | None = None) -> WorkerProcess:
        return self.workers.start(crash_at=crash_at, allowed_hosts=LOOPBACK)

    def deploy(self, text: str) -> int:
        make_account(self.store)
        (deployed,) = deploy(self.store, load_text(text))
        return deployed.operation_id

    def describe(self, run_id: int) -> str:
        lines = [f"{name}: {rows}" for name, rows in run_state(self.store, run_id).items()]
        lines += [f"--- worker {w.pid} ({w.returncode}):\n{w.log()[-3000:]}" for w in self.workers.started]
        return "\n".join(lines)


def crash(case: Case, point: str, run_id: int, meanwhile: Callable[[WorkerProcess], None] | None = None) -> str:
    """Start a worker set to die at `point`, do `meanwhile`, and wait for its SIGKILL; its worker id."""
    doomed = case.start(crash_at=point)
    if meanwhile is not None:
        meanwhile(doomed)
    wait_until(lambda: not doomed.alive(), timeout=TIMEOUT, what=f"the worker to die at {point}")
    assert doomed.returncode == -signal.SIGKILL, case.describe(run_id)
    return doomed.worker_id


def recover(
    case: Case, run_id: int, expected: RunStatus, doomed: str, survivor: WorkerProcess | None = None
) -> WorkerProcess:
    """Start a fresh worker (unless given one) and wait for the run to end as `expected`; the crashed attempt was
    taken over."""
    survivor = survivor or case.start()
    status = wait_until(
        lambda: (s := run_status(case.store, run_id)).is_final and s,
        timeout=TIMEOUT,
        what=f"run {run_id} to end",
        alive=[survivor],
    )
    assert status is expected, case.describe(run_id)
    with case.store.read() as conn:
        crashed = conn.execute(
            sa.select(tasks.c.name, tasks.c.status, task_attempts.c.outcome)
            .join(tasks, tasks.c.id == task_attempts.c.task_id)
            .where(
                tasks.c.run_id == run_id, task_attempts.c.worker_id == doomed, task_attempts.c.outcome != "completed"
            )
        ).all()
    assert len(crashed) == 1, (crashed, case.describe(run_id))
    if expected is RunStatus.COMPLETED:  # the task the worker died in was finished by another attempt
        assert crashed[0].status == TaskStatus.COMPLETED.value, case.describe(run_id)
    return survivor


def finish(case: Case, survivor: WorkerProcess) -> None:
    """Stop the survivor (it lets the DuckDB file go), then check I1-I7."""
    assert survivor.terminate() == 0, survivor.log()
    check_invariants(
        case.store,
        case.home / "warehouse",
        source_counts=case.source_counts,
        staging_root=case.home / "staging",
    )


# --- the scenarios -----------------------------------------------------------------------------------


def api_to_table(case: Case, point: str) -> None:
    """The demo source's employees, four pages, into one table."""
    config = DemoSourceConfig(employees=EMPLOYEES)
    with DemoSourceServer(config) as source:
        operation_id = case.deploy(
            "configuration_type: api-to-table\nconfiguration_id: crash-api\n"
            f'base_url: "{source.base_url}"\n'
            "endpoints:\n  - name: employees\n    path: /employees\n    records: data\n    primary_key: id\n"
            "    pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, "
            "limit: 50}\n"
        )
        run_id = launch(case.store, operation_id)
        doomed = crash(case, point, run_id)
        survivor = recover(case, run_id, RunStatus.COMPLETED, doomed)
    case.source_counts = {"employees": expected_counts(config)["employees"]}
    finish(case, survivor)


def cancel(case: Case, point: str) -> None:
    """A long task canceled while it runs: its worker dies once told; the sweep ends the run Canceled."""
    operation_id = make_operation(case.store, tasks=[sleep_task("long", 60.0, units=600)])
    run_id = launch(case.store, operation_id)

    def cancel_once_running(doomed: WorkerProcess) -> None:
        wait_until(
            lambda: task_row(case.store, run_id, "long")["status"] == TaskStatus.RUNNING.value,
            timeout=TIMEOUT,
            what="the task to run",
            alive=[doomed],
        )
        RunService(case.store).cancel(run_id)

    doomed = crash(case, point, run_id, cancel_once_running)
    finish(case, recover(case, run_id, RunStatus.CANCELED, doomed))


def storage_to_storage(case: Case, point: str) -> None:
    """One 12 MiB file copied from landing to archive under the default root, <home>/files."""
    landing = case.home / "files" / "landing"
    landing.mkdir(parents=True)
    content = os.urandom(COPY_BYTES)
    (landing / "stores-1.csv").write_bytes(content)
    operation_id = case.deploy(
        "configuration_type: storage-to-storage\nconfiguration_id: crash-copy\nsource: landing\n"
        'destination: archive\nfiles: ["stores-*.csv"]\ndestination_name: "{{FD_NAME}}"\n'
    )
    run_id = launch(case.store, operation_id)
    doomed = crash(case, point, run_id)
    survivor = recover(case, run_id, RunStatus.COMPLETED, doomed)
    archived = [path for path in (case.home / "files" / "archive").rglob("*") if path.is_file()]
    assert [(path.name, path.read_bytes() == content) for path in archived] == [("stores-1.csv", True)]
    finish(case, survivor)


def table_to_table(case: Case, point: str) -> None:
    """Two steps over a seeded table; the crash comes inside the first step's warehouse session."""
    warehouse = case.home / "warehouse"
    warehouse.mkdir(parents=True)
    with duckdb.connect(str(warehouse / "default.duckdb")) as con:
        con.execute(f"CREATE TABLE main.src AS SELECT range AS id FROM range({SOURCE_ROWS})")
    operation_id = case.deploy(
        "configuration_type: table-to-table\nconfiguration_id: crash-t2t\nsteps:\n"
        "  - target: doubled\n    sql: SELECT id, id * 2 AS twice FROM src\n"
        "  - target: summed\n    sql: SELECT id, twice + id AS thrice FROM doubled\n"
    )
    run_id = launch(case.store, operation_id)
    doomed = crash(case, point, run_id)
    survivor = recover(case, run_id, RunStatus.COMPLETED, doomed)
    case.source_counts = {"doubled": SOURCE_ROWS, "summed": SOURCE_ROWS}
    finish(case, survivor)


def postgres_cdc(case: Case, point: str, source: SourceDb) -> None:
    """A snapshot of 100 rows, then 30 inserts and 20 updates streamed; the worker dies mid-batch."""
    slot = f"ry_matrix_{uuid.uuid4().hex[:10]}"
    stream = f"Stream Changes [{slot}]"
    source.execute(
        "CREATE TABLE public.items (id bigint PRIMARY KEY, version int NOT NULL)",
        f"INSERT INTO public.items SELECT i, 0 FROM generate_series(1, {SOURCE_ROWS}) AS i",
    )
    operation_id = case.deploy(
        f"configuration_type: postgres-cdc\nconfiguration_id: crash-cdc\nsource: {{url_env: {CDC_URL_ENV}}}\n"
        f"tables: [public.items]\nslot: {slot}\nbatch_max_changes: 40\npoll_seconds: 0.05\n"
    )
    run_id = launch(case.store, operation_id)

    def change_once_streaming(doomed: WorkerProcess) -> None:
        wait_until(
            lambda: task_row(case.store, run_id, stream)["status"] == TaskStatus.RUNNING.value,
            timeout=TIMEOUT,
            what="the stream to start",
            alive=[doomed],
        )
        source.execute(
            f"INSERT INTO public.items SELECT i, 0 FROM generate_series({SOURCE_ROWS + 1}, {SOURCE_ROWS + 30}) AS i",
            "UPDATE public.items SET version = version + 1 WHERE id % 5 = 0",
        )
        source.flush()

    doomed = crash(case, point, run_id, change_once_streaming)
    survivor = case.start()
    wait_until(
        lambda: (
            task_row(case.store, run_id, stream)["attempt"] == 2 and source.pending_changes(slot, ["public.items"]) == 0
        ),
        timeout=TIMEOUT,
        what="the fresh worker to take the stream over and confirm every change",
        alive=[survivor],
    )
    RunService(case.store).cancel(run_id)  # a stream ends only when canceled
    recover(case, run_id, RunStatus.CANCELED, doomed, survivor)
    case.source_counts = {"items": SOURCE_ROWS + 30}
    finish(case, survivor)


# --- the matrix --------------------------------------------------------------------------------------

Scenario = Callable[[Case, str], None]
POINTS: list[tuple[str, Scenario]] = [
    ("claim.after_commit", api_to_table),
    ("extract.page_3", api_to_table),
    ("stage.after_rename", api_to_table),
    ("load.before_commit", api_to_table),
    ("load.after_commit_before_meta", api_to_table),
    ("cancel.after_signal", cancel),
    (CRASH_MID_FILE, storage_to_storage),
    ("transform.mid_step", table_to_table),
]


@pytest.fixture
def case(store: Store, tmp_path: Path) -> Iterator[Case]:
    home = tmp_path / "home"
    home.mkdir()
    pool = Workers(store.url.render_as_string(hide_password=False), home)
    try:
        yield Case(store, home, pool)
    finally:
        pool.close()


@pytest.mark.parametrize("repetition", range(REPEAT), ids=lambda n: f"rep{n}")
@pytest.mark.parametrize(("point", "scenario"), POINTS, ids=[point for point, _ in POINTS])
def test_a_worker_killed_at_the_point_leaves_the_run_to_end_as_expected(
    case: Case, point: str, scenario: Scenario, repetition: int
) -> None:
    scenario(case, point)


@pytest.mark.parametrize("repetition", range(REPEAT), ids=lambda n: f"rep{n}")
def test_a_cdc_stream_killed_mid_batch_loses_and_repeats_no_change(
    case: Case, repetition: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cdc_source() as source:
        monkeypatch.setenv(CDC_URL_ENV, source.url)  # the workers inherit every variable but RUNYARD_*
        postgres_cdc(case, "cdc.mid_batch", source)
