"""Issue 16 item 4 (and issue 15 item 4): the account's DuckDB file held by another process is a wait, not a failure.

A real OS process (`python -c`, holding `duckdb.connect(<home>/warehouse/default.duckdb)` open until a line arrives
on its stdin) holds the file while a real `runyard worker` runs a table-to-table run, whose first step opens that
file. The step must stay Running (attempt 1, its live note naming the file and the holder's PID, retried with
growing pauses), and once the file is let go the run Completes with every row, I1-I7 holding. Held for good, the
step fails after RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS with one clear message naming the holder, and nothing of the
run reaches the warehouse. The wait on both stores (its heartbeats keep the lease past RUNYARD_LEASE_SECONDS); the
failure, which the store records as any other, on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.operations.loader import load_text
from runyard.services.operations import deploy
from runyard.store.database import Store
from tests.factories import make_account
from tests.reliability.db import attempt_log, attempt_times, launch, messages, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import (
    WorkerProcess,
    Workers,
    wait_until,
)

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
ROWS = 100
FILE = "warehouse/default.duckdb"  # how runyard names the file: relative to its home, never the full path
IN_USE = f"the warehouse file {FILE} is in use by another process"
STEPS = (
    "configuration_type: table-to-table\nconfiguration_id: lock-t2t\nsteps:\n"
    "  - target: doubled\n    sql: SELECT id, id * 2 AS twice FROM src\n"
    "  - target: summed\n    sql: SELECT id, twice + id AS thrice FROM doubled\n"
)
# Holds the file until a line (or EOF) arrives on stdin; says when it holds it and when it let it go.
HOLD = (
    "import sys, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
    "con.close()\n"
    "print('released', flush=True)\n"
)


class Holder:
    """Another OS process holding a DuckDB file open (DuckDB's own lock on it), until `release()`."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        said = self.process.stdout.readline()  # returns at "holding", or at EOF if the process died
        assert said == "holding\n", f"the holder did not get the file: {said}{self.process.stdout.read()}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def release(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "released\n"
        assert self.process.wait(timeout=TIMEOUT) == 0

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class Scene:
    """A home whose default account's warehouse holds `src` (ROWS rows), a table-to-table operation over it, and
    the workers and holder of one test (all stopped at teardown)."""

    def __init__(self, store: Store, database_url: str, home: Path) -> None:
        self.store = store
        self.home = home
        self.file = home / FILE
        self.file.parent.mkdir(parents=True)
        with duckdb.connect(str(self.file)) as con:
            con.execute(f"CREATE TABLE main.src AS SELECT range AS id FROM range({ROWS})")
        make_account(store)
        (deployed,) = deploy(store, load_text(STEPS))
        self.operation_id = deployed.operation_id
        self.workers = Workers(database_url, home)
        self.holders: list[Holder] = []

    def hold(self) -> Holder:
        holder = Holder(self.file)
        self.holders.append(holder)
        return holder

    def start_worker(self, lock_wait_seconds: float) -> WorkerProcess:
        """A `runyard worker` as tests.reliability.procs starts them, with RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS (and
        metrics written every 0.1 s, so its live note shows the wait at once)."""
        return self.workers.start(
            extra_env={
                "RUNYARD_METRICS_SECONDS": "0.1",
                "RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS": str(lock_wait_seconds),
            }
        )

    def final_status(self, run_id: int, worker: WorkerProcess) -> RunStatus:
        def ended() -> RunStatus | None:
            status = run_status(self.store, run_id)
            return status if status.is_final else None

        return wait_until(
            ended,
            timeout=TIMEOUT,
            what=f"run {run_id} to end",
            alive=[worker],
        )

    def close(self) -> None:
        try:
            self.workers.close()
        finally:
            for holder in self.holders:
                holder.close()


@pytest.fixture
def scene(store: Store, database_url: str, tmp_path: Path) -> Iterator[Scene]:
    home = tmp_path / "home"
    home.mkdir()
    made = Scene(store, database_url, home)
    try:
        yield made
    finally:
        made.close()


def note_of(store: Store, run_id: int, task: str, *, containing: str) -> str | None:
    """The task's live note (what the run page shows of a running task), when it contains `containing`."""
    note = task_row(store, run_id, task)["metrics_note"]
    return note if note is not None and containing in note else None


def test_a_step_waits_while_another_process_holds_the_warehouse_file_and_completes_once_it_is_let_go(
    scene: Scene,
) -> None:
    holder = scene.hold()
    run_id = launch(scene.store, scene.operation_id)
    worker = scene.start_worker(lock_wait_seconds=TIMEOUT)

    # The step found the file held, and says so with the holder's PID, on the run page, while it waits.
    note = wait_until(
        lambda: note_of(scene.store, run_id, "doubled", containing=IN_USE),
        timeout=TIMEOUT,
        what="the step to say the warehouse file is in use",
        alive=[worker],
    )
    assert f"PID {holder.pid})" in note, note
    assert str(scene.home) not in note, note  # the file by its name under the home, not its full path
    # It keeps trying with growing pauses (0.25, 0.5, 1 s) and is still its first attempt, Running, not failed.
    wait_until(
        lambda: note_of(scene.store, run_id, "doubled", containing="will try again in 1 s"),
        timeout=TIMEOUT,
        what="the step to try again after longer pauses",
        alive=[worker],
    )
    step = task_row(scene.store, run_id, "doubled")
    assert (step["status"], step["attempt"]) == (TaskStatus.RUNNING.value, 1), dict(step)
    assert run_status(scene.store, run_id) is RunStatus.RUNNING
    assert holder.alive()

    holder.release()
    assert scene.final_status(run_id, worker) is RunStatus.COMPLETED
    # The one attempt did the work once the file was free, and left a word on the wait.
    assert [(attempt, outcome) for attempt, outcome, _ in attempt_log(scene.store, step["id"])] == [(1, "completed")]
    (waited,) = [text for text in messages(scene.store, step["id"], "warning") if text.startswith("Waited ")]
    assert f"because {IN_USE} (" in waited, waited
    assert f"PID {holder.pid})" in waited, waited
    # The worker said at its start that it shares DuckDB files with other processes by waiting for them.
    assert "the warehouse is DuckDB files under warehouse/, each open in one process at a time" in worker.log()

    assert worker.terminate() == 0, worker.log()
    check_invariants(
        scene.store,
        scene.home / "warehouse",
        source_counts={"doubled": ROWS, "summed": ROWS},
        staging_root=scene.home / "staging",
    )
    with duckdb.connect(str(scene.file), read_only=True) as con:
        assert con.execute("SELECT sum(thrice) FROM main.summed").fetchone() == (3 * sum(range(ROWS)),)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the store only records the failure
def test_a_step_fails_naming_the_holder_once_the_file_stays_held_past_the_wait(scene: Scene) -> None:
    holder = scene.hold()
    run_id = launch(scene.store, scene.operation_id)
    worker = scene.start_worker(lock_wait_seconds=1.5)

    assert scene.final_status(run_id, worker) is RunStatus.FAILED
    assert holder.alive()  # it failed while the file was still held, not because the holder went away
    step = task_row(scene.store, run_id, "doubled")
    assert (step["status"], step["attempt"]) == (TaskStatus.FAILED.value, 1), dict(step)
    (error,) = messages(scene.store, step["id"], "error")
    assert error.startswith(f"{IN_USE} ("), error
    assert f"PID {holder.pid}); this task waited" in error, error
    assert "(RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS is 1.5 s)" in error, error
    assert str(scene.home) not in error, error
    started, ended = attempt_times(scene.store, step["id"], 1)
    assert ended is not None
    assert (ended - started).total_seconds() >= 1.5  # it did wait the whole bound
    assert task_row(scene.store, run_id, "summed")["status"] != TaskStatus.COMPLETED.value

    holder.release()
    assert worker.terminate() == 0, worker.log()
    check_invariants(scene.store, scene.home / "warehouse", staging_root=scene.home / "staging")
    with duckdb.connect(str(scene.file), read_only=True) as con:  # nothing of the run reached the warehouse
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"src"}, tables  # the worker never opened it: no staging table, no load record
