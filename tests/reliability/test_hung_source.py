"""R13 and R9: a source that never finishes its answer holds no worker slot for ever.

A real source on loopback answers its headers, then trickles one byte every 0.2 s for ever (or says nothing
at all). httpx's read timeout is per read, so it never fires. What must end the task instead: the page
deadline (`request_deadline_seconds`), a cancel (the heartbeat's stop closes the connection, so the blocked
read returns at once) and the task's maximum run time (`RUNYARD_TASK_MAX_SECONDS`). Each test proves the
slot is free by running another operation on a worker with one slot.

No test waits for a timer it could replace: the cancel timeout is a day, and the per-read timeout ten
minutes, so only the interruption under test can end the run in time.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.operations.api_to_table.http import RequestInterrupted, SourceClient, TransientSourceError
from runyard.operations.api_to_table.spec import ApiToTableSpec
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import run_tasks
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView, TaskView
from runyard.settings import Settings
from runyard.worker.worker import Worker
from tests.integration.api_harness import RUN_TIMEOUT, wait_for

TRICKLE_SECONDS = 0.2
DAY = 86_400.0
PROCESS = "Process [items]"

# --------------------------------------------------------------------------------------------------
# The hung source


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HungServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        source = self.server.source
        with source.lock:
            source.requests += 1
        if source.silent:  # read the request, then say nothing until the test ends
            source.stopping.wait()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"[")
        while not source.stopping.wait(TRICKLE_SECONDS):
            try:
                self.wfile.write(b" ")
            except OSError:  # the client dropped the connection
                source.hung_up.set()
                return
            source.trickling.set()

    def log_message(self, format: str, *args: Any) -> None:
        return


class _HungServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    source: HungSource


class HungSource:
    """Answers every GET with headers, then one byte every TRICKLE_SECONDS for ever (or nothing, if silent)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.requests = 0
        self.lock = threading.Lock()
        self.trickling = threading.Event()  # a body byte went out
        self.hung_up = threading.Event()  # the client closed a connection while bytes were trickling
        self.stopping = threading.Event()
        self._server = _HungServer(("127.0.0.1", 0), _Handler)
        self._server.source = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HungSource:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --------------------------------------------------------------------------------------------------
# runyard with one worker slot


@dataclass
class OneSlot:
    runtime: Runtime
    worker: Worker

    def deploy(self, text: str) -> int:
        deployed = deploy(self.runtime.store, load_text(text), self.runtime.registry)
        return deployed[0].operation_id

    def launch(self, operation_id: int) -> RunView:
        return self.runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=RunType.DESTRUCTIVE))

    def wait(self, run_id: int) -> RunView:
        def final() -> RunView | None:
            view = self.runtime.runs.get_run(run_id)
            return view if view.status.is_final else None

        return wait_for(final, timeout=RUN_TIMEOUT, what=f"run {run_id} to end:\n{self.describe(run_id)}")

    def tasks(self, run_id: int) -> dict[str, TaskView]:
        with self.runtime.store.read() as conn:
            return {task.name: task for task in run_tasks(conn, run_id)}

    def describe(self, run_id: int) -> str:
        return "\n".join(
            f"  {task.name:30} {task.status.label:12} " + " | ".join(m.text for m in task.messages)
            for task in self.tasks(run_id).values()
        )

    def errors(self, run_id: int, task: str) -> str:
        return " | ".join(m.text for m in self.tasks(run_id)[task].messages if m.level == "error")

    def prove_slot_free(self) -> None:
        """Another operation's run completes: with one slot, only if the hung task gave it back."""
        operation = self.deploy(AFTER_YAML)
        run = self.launch(operation)
        final = self.wait(run.id)
        assert final.status is RunStatus.COMPLETED, self.describe(run.id)


AFTER_YAML = """
configuration_type: tasks
configuration_id: after-the-hang
tasks:
  - {name: "Done", executor: noop}
"""


def hung_yaml(source: HungSource, *, deadline_seconds: float, max_retries: int = 0) -> str:
    return f"""
configuration_type: api-to-table
configuration_id: hung-source
base_url: {source.base_url}
timeout_seconds: 600          # per read: a trickle never reaches it
request_deadline_seconds: {deadline_seconds}
max_retries: {max_retries}
endpoints:
  - name: items
    path: /items
"""


@contextmanager
def one_slot(tmp_path: Path, **settings: Any) -> Iterator[OneSlot]:
    config = Settings(
        home=tmp_path / "home",
        worker_concurrency=1,
        lease_seconds=3,
        heartbeat_seconds=0.3,
        poll_seconds=0.1,
        sweep_seconds=0.3,
        cancel_timeout_seconds=DAY,  # a run may end Canceled only because its task was interrupted
        **settings,
    )
    store = open_store(config)
    bootstrap_admin(store, "hung-source-password")
    runtime = Runtime(config, store, resources=engine_resources(config, extra_hosts=("127.0.0.1",)))
    worker = runtime.worker("hung")
    scheduler = runtime.scheduler()
    worker.start()
    scheduler.start()
    try:
        yield OneSlot(runtime, worker)
    finally:
        worker.stop(5)
        scheduler.stop()
        runtime.close()


# --------------------------------------------------------------------------------------------------
# The tests


def test_a_page_slower_than_its_deadline_fails_its_attempts_and_is_retried(tmp_path: Path) -> None:
    with HungSource() as source, one_slot(tmp_path) as runyard:
        operation = runyard.deploy(hung_yaml(source, deadline_seconds=0.5, max_retries=1))
        run = runyard.launch(operation)
        final = runyard.wait(run.id)

        assert final.status is RunStatus.FAILED, runyard.describe(run.id)
        assert runyard.tasks(run.id)[PROCESS].status is TaskStatus.FAILED
        error = runyard.errors(run.id, PROCESS)
        assert "was too slow: the source sent" in error, error
        assert "slower than the 0.5 s deadline for one page allows (request_deadline_seconds)" in error, error
        assert "gave up after 2 attempt(s)" in error, error
        assert source.requests == 2  # the overrun is retryable: the page was asked for again
        runyard.prove_slot_free()


def test_a_source_that_never_answers_misses_the_deadline(tmp_path: Path) -> None:
    with HungSource(silent=True) as source:
        spec = ApiToTableSpec.model_validate(
            {
                "base_url": source.base_url,
                "timeout_seconds": 600,
                "request_deadline_seconds": 0.3,
                "max_retries": 0,
                "endpoints": [{"name": "items", "path": "/items"}],
            }
        )
        expected = r"did not answer within the 0\.3 s deadline for one page"
        with (
            SourceClient(spec, environ={}, allowed_hosts=["127.0.0.1"]) as client,
            pytest.raises(TransientSourceError, match=expected),
        ):
            client.get("/items")


def test_interrupt_from_another_thread_ends_a_blocked_read(tmp_path: Path) -> None:
    with HungSource() as source:
        spec = ApiToTableSpec.model_validate(
            {
                "base_url": source.base_url,
                "timeout_seconds": 600,
                "request_deadline_seconds": DAY,
                "endpoints": [{"name": "items", "path": "/items"}],
            }
        )
        raised: list[BaseException] = []

        def fetch() -> None:
            try:
                client.get("/items")
            except BaseException as error:
                raised.append(error)

        with SourceClient(spec, environ={}, allowed_hosts=["127.0.0.1"]) as client:
            reader = threading.Thread(target=fetch, daemon=True)
            reader.start()
            wait_for(source.trickling.is_set, timeout=RUN_TIMEOUT, what="the client to be reading the trickle")
            client.interrupt()
            reader.join(RUN_TIMEOUT)
            assert not reader.is_alive(), "the blocked read did not return"
            with pytest.raises(RequestInterrupted):  # and every later request ends before it starts
                client.get("/items")
        assert len(raised) == 1
        assert isinstance(raised[0], RequestInterrupted), raised
        assert "was interrupted: the task is stopping" in str(raised[0])
        assert source.requests == 1


def test_cancel_interrupts_a_read_blocked_on_a_trickling_source_and_frees_the_slot(tmp_path: Path) -> None:
    with HungSource() as source, one_slot(tmp_path) as runyard:
        operation = runyard.deploy(hung_yaml(source, deadline_seconds=DAY))
        run = runyard.launch(operation)
        wait_for(source.trickling.is_set, timeout=RUN_TIMEOUT, what="the extract to be reading the trickle")

        runyard.runtime.runs.cancel(run.id)
        final = runyard.wait(run.id)

        assert final.status is RunStatus.CANCELED, runyard.describe(run.id)
        tasks = runyard.tasks(run.id)
        assert tasks[PROCESS].status is TaskStatus.CANCELED, runyard.describe(run.id)
        assert any(m.text == "Stopped: the run was canceled" for m in tasks[PROCESS].messages)
        assert not runyard.errors(run.id, PROCESS)  # interrupted, not failed: no source error is reported
        wait_for(source.hung_up.is_set, timeout=RUN_TIMEOUT, what="the worker to close the connection")
        runyard.prove_slot_free()


def test_a_task_past_its_maximum_run_time_fails_and_frees_the_slot(tmp_path: Path) -> None:
    with HungSource() as source, one_slot(tmp_path, task_max_seconds=1.0) as runyard:
        operation = runyard.deploy(hung_yaml(source, deadline_seconds=DAY))
        run = runyard.launch(operation)
        final = runyard.wait(run.id)

        assert final.status is RunStatus.FAILED, runyard.describe(run.id)
        assert runyard.tasks(run.id)[PROCESS].status is TaskStatus.FAILED
        error = runyard.errors(run.id, PROCESS)
        assert error == ("Stopped: the task ran longer than 1 s, the most a task may run (RUNYARD_TASK_MAX_SECONDS)"), (
            error
        )
        wait_for(source.hung_up.is_set, timeout=RUN_TIMEOUT, what="the worker to close the connection")
        runyard.prove_slot_free()
