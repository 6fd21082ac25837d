"""Idle workers in one process are woken by work made in another (runyard.services.work_signal).

Every worker here polls every RUNYARD_POLL_SECONDS = 120 s, so a task claimed within the 30 s waits below was
claimed because a wakeup reached its process: on PostgreSQL through LISTEN/NOTIFY, on SQLite through the wake
sockets. No wait asserts a timing beyond that bound.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.work_signal import LISTENER_APPLICATION_NAME, local_folder
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import runs, tasks
from tests.factories import make_operation, sleep_task
from tests.integration.http_processes import connection_holders, http_helpers
from tests.integration.test_serve import Server
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

IDLE_POLL = {"RUNYARD_POLL_SECONDS": "120"}
WAKE_BOUND = 30.0  # far below the 120 s poll: only a wakeup makes a claim this soon
STARTUP_SECONDS = 30.0
HTTP_PROCESSES = 2
ADMIN_PASSWORD = "admin-password"  # what tests.factories.make_account sets


@pytest.fixture
def pg_workers(pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(pg_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def listener_sessions(store: Store) -> dict[int, str]:
    """The work listeners' sessions on this database: backend pid -> the session's last statement."""
    with store.read() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pid, query FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": LISTENER_APPLICATION_NAME},
        )
        return {int(row.pid): str(row.query) for row in rows}


def listening(store: Store, count: int) -> dict[int, str] | None:
    sessions = listener_sessions(store)
    ready = {pid: query for pid, query in sessions.items() if query.startswith("LISTEN")}
    return ready if len(ready) == count else None


def started(*workers: WorkerProcess) -> bool:
    return all(re.search(r"worker \S+ started with \d+ slots", worker.log()) for worker in workers)


def start_idle(pool: Workers, store: Store, count: int) -> list[WorkerProcess]:
    """`count` workers polling every 120 s, each once its slots run and its listener LISTENs."""
    workers = [pool.start(extra_env=IDLE_POLL) for _ in range(count)]
    wait_until(
        lambda: started(*workers) and listening(store, count),
        timeout=STARTUP_SECONDS,
        what=f"{count} workers to start and listen",
        alive=workers,
    )
    return workers


def launch(store: Store, operation_id: int) -> int:
    """A launch made in this process, on its own Store: no Wakeup of any worker here."""
    return RunService(store).launch(LaunchRequest(operation_id=operation_id)).id


def run_status(store: Store, run_id: int) -> RunStatus:
    with store.read() as conn:
        return RunStatus(conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar_one())


def claimed_by(store: Store, run_id: int, name: str) -> str | None:
    """The worker that claimed task `name` of the run, once it did."""
    with store.read() as conn:
        row = conn.execute(
            sa.select(tasks.c.status, tasks.c.worker_id).where(tasks.c.run_id == run_id, tasks.c.name == name)
        ).one()
    return row.worker_id if row.status != TaskStatus.WAITING_TO_START.value else None


def completed(store: Store, run_id: int) -> bool:
    status = run_status(store, run_id)
    assert status not in (RunStatus.FAILED, RunStatus.CANCELED, RunStatus.REJECTED), status
    return status == RunStatus.COMPLETED


# --- PostgreSQL: LISTEN/NOTIFY ---------------------------------------------------------------------------------------


def test_a_launch_in_another_process_wakes_an_idle_worker(pg_store: Store, pg_workers: Workers) -> None:
    operation = make_operation(pg_store, [sleep_task("only", 0.0)])
    (worker,) = start_idle(pg_workers, pg_store, 1)
    for _ in range(2):  # the second launch finds the worker idle for certain: it has run the first run since
        run_id = launch(pg_store, operation)
        wait_until(
            partial(completed, pg_store, run_id), timeout=WAKE_BOUND, what=f"run {run_id} to complete", alive=[worker]
        )
        assert claimed_by(pg_store, run_id, "only") == worker.worker_id


def test_a_finished_task_wakes_a_worker_in_another_process_for_its_successors(
    pg_store: Store, pg_workers: Workers
) -> None:
    # Two successors become ready when `first` ends. The worker that ran `first` (one slot) takes one of them at
    # once; `hog` keeps whoever takes it busy, so the other successor can only go to the other process's worker,
    # idle for 120 s unless woken.
    operation = make_operation(
        pg_store,
        [
            sleep_task("first", 1.0),
            sleep_task("hog", 60.0, units=60, depends_on=["first"]),
            sleep_task("second", 0.0, depends_on=["first"]),
        ],
    )
    workers = start_idle(pg_workers, pg_store, 2)
    run_id = launch(pg_store, operation)
    with pg_store.read() as conn:
        ids = {
            row.name: row.id
            for row in conn.execute(sa.select(tasks.c.name, tasks.c.id).where(tasks.c.run_id == run_id))
        }
    assert ids["hog"] < ids["second"]  # claimed first: the worker that ran `first` takes `hog` unless already taken
    first = wait_until(
        lambda: claimed_by(pg_store, run_id, "first"), timeout=WAKE_BOUND, what="`first` to be claimed", alive=workers
    )
    hog = wait_until(
        lambda: claimed_by(pg_store, run_id, "hog"), timeout=WAKE_BOUND, what="`hog` to be claimed", alive=workers
    )
    second = wait_until(
        lambda: claimed_by(pg_store, run_id, "second"), timeout=WAKE_BOUND, what="`second` to be claimed", alive=workers
    )
    # One successor each: whichever worker did not run `first` was woken by the end of a task in another process.
    assert {hog, second} == {worker.worker_id for worker in workers}
    assert first in (hog, second)


def test_the_listener_reconnects_after_its_session_is_terminated(pg_store: Store, pg_workers: Workers) -> None:
    operation = make_operation(pg_store, [sleep_task("only", 0.0)])
    (worker,) = start_idle(pg_workers, pg_store, 1)
    (old_session,) = listener_sessions(pg_store)
    with pg_store.write() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": old_session}).scalar_one()
    new_session = wait_until(
        lambda: next((pid for pid in listening(pg_store, 1) or {} if pid != old_session), None),
        timeout=WAKE_BOUND,
        what="the listener to LISTEN again",
        alive=[worker],
    )
    assert new_session != old_session
    run_id = launch(pg_store, operation)
    wait_until(lambda: completed(pg_store, run_id), timeout=WAKE_BOUND, what="the run to complete", alive=[worker])
    log = worker.log()
    assert "work listener: no connection to PostgreSQL" in log, log
    assert "listening for work on PostgreSQL again" in log, log
    assert "Traceback" not in log, log


# --- SQLite: the wake sockets ----------------------------------------------------------------------------------------


def test_a_launch_in_another_process_wakes_an_idle_worker_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    pool = Workers(str(store.url), tmp_path)
    try:
        migrate.upgrade(store)
        operation = make_operation(store, [sleep_task("only", 0.0)])
        worker = pool.start(extra_env=IDLE_POLL)
        folder = local_folder(store)
        assert folder is not None
        wait_until(
            lambda: started(worker) and (folder / f"wake-{worker.pid}.sock").exists(),
            timeout=STARTUP_SECONDS,
            what="the worker to start and bind its wake socket",
            alive=[worker],
        )
        for _ in range(2):
            run_id = launch(store, operation)
            wait_until(
                partial(completed, store, run_id), timeout=WAKE_BOUND, what=f"run {run_id} to complete", alive=[worker]
            )
        code = worker.terminate()
        assert code == 0, worker.log()
        assert not (folder / f"wake-{worker.pid}.sock").exists()  # removed on a graceful stop
    finally:
        pool.close()
        store.dispose()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    """`runyard serve` with two HTTP processes on a home prepared here: its store migrated, an operation deployed
    and the administrator created with a known password (so `serve` creates none)."""
    home = tmp_path / "home"
    home.mkdir()
    store = Store(f"sqlite:///{home / 'runyard.db'}")
    migrate.upgrade(store)
    make_operation(
        store,
        [
            {"name": "Process [employees]", "executor": "noop"},
            {"name": "Data Load", "executor": "noop", "depends_on": ["Process [employees]"]},
        ],
    )
    store.dispose()
    running = Server(tmp_path, env={"RUNYARD_HTTP_PROCESSES": str(HTTP_PROCESSES), **IDLE_POLL})
    yield running
    helpers = http_helpers(running.pid) if running.process.alive() else set()
    running.process.stop(signal.SIGKILL)
    for pid in helpers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_launches_through_either_http_process_wake_the_worker_on_sqlite(served: Server, tmp_path: Path) -> None:
    served.health()
    wait_until(
        lambda: len(http_helpers(served.pid)) == HTTP_PROCESSES - 1 or None,
        timeout=STARTUP_SECONDS,
        what="the extra HTTP process to start",
    )
    home = tmp_path / "home"
    folder = local_folder(Store(f"sqlite:///{home / 'runyard.db'}"))
    assert folder is not None
    assert (folder / f"wake-{served.pid}.sock").exists()  # bound before the workers start
    token = httpx.post(f"{served.url}/api/v1/auth/token", json={"login": "admin", "password": ADMIN_PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    operation = httpx.get(f"{served.url}/api/v1/operations", headers=headers).json()[0]["id"]

    # Keep-alive clients until each process holds one (the kernel hands a new connection to whichever process
    # accepts first), then launch through every one of them: each process serves at least one launch.
    processes = {served.pid, *http_helpers(served.pid)}
    clients: list[httpx.Client] = []

    def every_process_holds_one() -> bool | None:
        client = httpx.Client(base_url=served.url, timeout=10, headers=headers)
        clients.append(client)
        assert client.get("/healthz").status_code == 200
        return connection_holders(processes, served.port) == processes or None

    try:
        wait_until(every_process_holds_one, timeout=STARTUP_SECONDS, what="every process to accept a connection")
        for client in clients:
            launched = client.post(f"/api/v1/operations/{operation}/runs", json={})
            assert launched.status_code == 202, launched.text
            run_id = launched.json()["id"]

            def run_completed(run_id: int = run_id) -> bool | None:
                answer = httpx.get(f"{served.url}/api/v1/runs/{run_id}", headers=headers).json()
                assert answer["status"] not in ("failed", "canceled", "rejected"), answer
                return answer["status"] == "completed" or None

            wait_until(run_completed, timeout=WAKE_BOUND, what=f"run {run_id} to complete")
    finally:
        for client in clients:
            client.close()
    assert len(clients) >= HTTP_PROCESSES
    code = served.process.stop(signal.SIGTERM, timeout=STARTUP_SECONDS)
    assert code == 0, served.process.describe()
    assert not (folder / f"wake-{served.pid}.sock").exists()
    assert "Traceback" not in served.process.stderr
