"""R20: stopping a worker, or `runyard serve`, with SIGTERM while a task runs, once or twice.

What runyard does (runyard.serve.run_worker, runyard.worker.worker.Worker.stop and .hurry):

- the first SIGTERM (or SIGINT): the worker claims nothing more, lets its running tasks finish within the grace
  (runyard.serve.SHUTDOWN_GRACE_SECONDS), gives back what still runs then, and exits 0;
- a second SIGTERM (or SIGINT) during that grace: every running task is given back at once (at its next
  checkpoint; its attempt ends "released" with a message naming the worker) and the process exits 0. The task is
  Waiting to start again, so another worker claims it at its next poll, with no lease to wait for;
- `runyard serve` does the same: a second signal, while its HTTP server stops or while its worker's grace runs,
  gives the running tasks back and it exits 0, without a traceback. Its HTTP server waits for requests in flight
  at most the grace: a client whose request never ends is disconnected then (at once on a second signal), where
  uvicorn alone would wait for it for ever.

Real processes on a SQLite store (the signal handling does not depend on the store); each worker scenario ends with
another worker taking the task over, the run Completed and I1-I7 checked.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.serve import SHUTDOWN_GRACE_SECONDS
from runyard.store import migrate
from runyard.store.database import Store
from tests.factories import make_operation, sleep_task
from tests.integration.cli_helpers import Runyard, answers_health, free_port
from tests.reliability.db import attempt_log, launch, messages, run_state, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
STOPPING = "stopping: finishing running tasks"
GIVEN_BACK = "stopped; the task was given back"
PROMPT_SECONDS = SHUTDOWN_GRACE_SECONDS / 2  # a second signal ends the process well within the grace


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    home = tmp_path / "home"
    home.mkdir()
    store = Store(f"sqlite:///{home / 'runyard.db'}")
    migrate.upgrade(store)
    yield store
    store.dispose()


@pytest.fixture
def workers(store: Store, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(store.url.render_as_string(hide_password=False), tmp_path / "home")
    try:
        yield pool
    finally:
        pool.close()


def running_on(store: Store, run_id: int, name: str, worker_id: str) -> bool:
    task = task_row(store, run_id, name)
    return bool(task["status"] == TaskStatus.RUNNING.value and task["worker_id"] == worker_id)


def exit_code(worker: WorkerProcess, timeout: float = TIMEOUT) -> int:
    """Wait for the worker to end by itself (no signal sent here); its exit code."""
    wait_until(lambda: not worker.alive(), timeout=timeout, what=f"worker {worker.pid} to exit")
    code = worker.returncode
    assert code is not None
    return code


def completed_by_another(store: Store, run_id: int, workers: Workers) -> WorkerProcess:
    """Start a fresh worker and wait for the run to complete; the worker, stopped cleanly."""
    taker = workers.start()

    def final() -> RunStatus | None:
        status = run_status(store, run_id)
        return status if status.is_final else None

    status = wait_until(final, timeout=TIMEOUT, what=f"run {run_id} to end", alive=[taker])
    assert status is RunStatus.COMPLETED, run_state(store, run_id)
    assert taker.terminate() == 0, taker.log()
    return taker


def test_one_sigterm_finishes_the_running_task_claims_nothing_new_and_exits_0(
    store: Store, workers: Workers, tmp_path: Path
) -> None:
    operation_id = make_operation(
        store, tasks=[sleep_task("first", 2.0, units=20), sleep_task("second", 0.2, depends_on=["first"])]
    )
    run_id = launch(store, operation_id)
    a = workers.start()
    wait_until(lambda: running_on(store, run_id, "first", a.worker_id), timeout=TIMEOUT, what="A to run `first`")

    a.popen.send_signal(signal.SIGTERM)

    assert exit_code(a) == 0, a.log()
    assert STOPPING in a.log()
    first, second = task_row(store, run_id, "first"), task_row(store, run_id, "second")
    assert attempt_log(store, first["id"]) == [(1, "completed", a.worker_id)]  # finished within the grace
    # `second` became ready while A was stopping: A did not claim it.
    assert (second["status"], second["attempt"]) == (TaskStatus.WAITING_TO_START.value, 0), run_state(store, run_id)
    assert attempt_log(store, second["id"]) == []
    assert "Traceback" not in a.log()

    b = completed_by_another(store, run_id, workers)
    assert attempt_log(store, second["id"]) == [(1, "completed", b.worker_id)]
    check_invariants(store, tmp_path / "home" / "warehouse", staging_root=tmp_path / "home" / "staging")


def test_a_second_sigterm_gives_the_task_back_at_once_and_exits_0(
    store: Store, workers: Workers, tmp_path: Path
) -> None:
    operation_id = make_operation(
        store, tasks=[sleep_task("long", 4.0, units=40), sleep_task("after", 0.1, depends_on=["long"])]
    )
    run_id = launch(store, operation_id)
    a = workers.start()
    wait_until(lambda: running_on(store, run_id, "long", a.worker_id), timeout=TIMEOUT, what="A to run `long`")
    a.popen.send_signal(signal.SIGTERM)
    wait_until(lambda: STOPPING in a.log(), timeout=TIMEOUT, what="A to start its grace", alive=[a])

    second = time.monotonic()
    a.popen.send_signal(signal.SIGTERM)

    assert exit_code(a) == 0, a.log()
    took = time.monotonic() - second
    assert took < PROMPT_SECONDS, f"A took {took:.1f} s to stop after the second SIGTERM\n{a.log()}"
    long = task_row(store, run_id, "long")
    assert attempt_log(store, long["id"]) == [(1, "released", a.worker_id)], run_state(store, run_id)
    assert long["status"] == TaskStatus.WAITING_TO_START.value
    assert any(a.worker_id in text and GIVEN_BACK in text for text in messages(store, long["id"], "warning"))
    assert "Traceback" not in a.log()

    b = completed_by_another(store, run_id, workers)
    assert attempt_log(store, long["id"]) == [(1, "released", a.worker_id), (2, "completed", b.worker_id)]
    check_invariants(store, tmp_path / "home" / "warehouse", staging_root=tmp_path / "home" / "staging")


def stalled_request(port: int) -> socket.socket:
    """A client that sends a request's headers and one byte of its 100-byte body, then nothing: in flight for ever."""
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: runyard\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    return client


@pytest.mark.parametrize("second_signal", ["while-http-stops", "during-the-grace"])
def test_serve_stopped_by_two_sigterms_gives_its_task_back_and_exits_0_without_a_traceback(
    store: Store, tmp_path: Path, second_signal: str
) -> None:
    """while-http-stops: a client whose request never ends holds the HTTP server's stop (at most the grace); the
    second SIGTERM disconnects it at once. during-the-grace: the HTTP server has stopped, the worker's grace runs."""
    home = tmp_path / "home"
    port = free_port()
    server = Runyard(home).spawn("serve", "--port", str(port), log=tmp_path / "serve")
    client: socket.socket | None = None
    try:

        def answers() -> bool:
            assert server.alive(), server.describe()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=TIMEOUT, what="runyard serve to answer")
        operation_id = make_operation(store, tasks=[sleep_task("long", 30.0, units=300)])
        run_id = launch(store, operation_id, worker_running=True)
        worker_id = wait_until(
            lambda: (t := task_row(store, run_id, "long"))["status"] == TaskStatus.RUNNING.value and t["worker_id"],
            timeout=TIMEOUT,
            what="serve's worker to run `long`",
        )
        assert worker_id.endswith(f":{server.process.pid}:serve")
        if second_signal == "while-http-stops":
            client = stalled_request(port)

        server.process.send_signal(signal.SIGTERM)
        if second_signal == "while-http-stops":
            wait_until(lambda: not answers(), timeout=TIMEOUT, what="serve to stop accepting connections")
            assert STOPPING not in server.stderr, server.describe()  # the HTTP server still waits for the client
        else:
            wait_until(lambda: STOPPING in server.stderr, timeout=TIMEOUT, what="serve's worker to start its grace")
        second = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        code = server.process.wait(TIMEOUT)
        took = time.monotonic() - second
        if client is not None:
            assert client.recv(1024) == b"", "the stalled client was not disconnected"
    finally:
        if client is not None:
            client.close()
        server.stop(signal.SIGKILL)
    assert code == 0, server.describe()
    assert took < PROMPT_SECONDS, f"serve took {took:.1f} s to stop after the second SIGTERM\n{server.describe()}"
    assert "Traceback" not in server.stderr + server.stdout, server.describe()
    long = task_row(store, run_id, "long")
    assert attempt_log(store, long["id"]) == [(1, "released", worker_id)], run_state(store, run_id)
    assert long["status"] == TaskStatus.WAITING_TO_START.value


def test_serve_stopped_by_one_sigterm_disconnects_a_client_that_never_finishes_after_the_grace(tmp_path: Path) -> None:
    port = free_port()
    server = Runyard(tmp_path / "home").spawn("serve", "--port", str(port), log=tmp_path / "serve")
    try:
        wait_until(
            lambda: server.alive() and answers_health(f"http://127.0.0.1:{port}", server),
            timeout=TIMEOUT,
            what="runyard serve to answer",
        )
        with stalled_request(port) as client:
            first = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(TIMEOUT)
            took = time.monotonic() - first
            assert client.recv(1024) == b"", "the stalled client was not disconnected"
    finally:
        server.stop(signal.SIGKILL)
    assert code == 0, server.describe()
    assert SHUTDOWN_GRACE_SECONDS <= took < SHUTDOWN_GRACE_SECONDS + PROMPT_SECONDS, (took, server.describe())
    assert "Traceback" not in server.stderr + server.stdout, server.describe()
