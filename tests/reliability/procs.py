"""Real `runyard worker` processes for the reliability tests, and bounded waits.

Every process started here is stopped by `Workers.close()` (continued if paused, then killed,
then waited for), so a failing test leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path
from typing import TypeVar

from runyard.errors import RunRejected
from runyard.services.runs import LaunchRequest, RunService
from runyard.store.database import Store

T = TypeVar("T")

LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.3
POLL_SECONDS = 0.1
SWEEP_SECONDS = 0.3
POLL_INTERVAL = 0.1


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str, alive: Sequence[WorkerProcess] = ()) -> T:
    """Poll `check` every 0.1 s until it returns something truthy; fail with `what` after `timeout` s.

    Fails at once, with its log, if one of the `alive` workers exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for worker in alive:
            worker.expect_alive(what)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def _process_state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat: R, S, T (stopped), Z..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


class WorkerProcess:
    """One `runyard worker` subprocess, its stdout and stderr in `log_path`."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def worker_id(self) -> str:
        """What runyard.worker.worker.default_worker_id("worker") gives inside the process."""
        return f"{socket.gethostname()}:{self.pid}:worker"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def expect_alive(self, context: str) -> None:
        if not self.alive():
            raise AssertionError(
                f"worker {self.pid} exited with code {self.returncode} while waiting for {context}; its log:\n"
                f"{self.log()}"
            )

    def kill(self) -> int:
        """SIGKILL (continuing it first if paused) and reap it; its return code."""
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            self.popen.kill()
        return self.popen.wait(timeout=10)

    def terminate(self, timeout: float = 10.0) -> int:
        """The graceful stop (SIGTERM); SIGKILL if it does not exit in time. Its return code."""
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            self.popen.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker {self.pid} did not stop within {timeout} s of SIGTERM") from None

    def pause(self, busy: Callable[[], bool], attempts: int = 50) -> None:
        """SIGSTOP it at a moment it holds no write transaction (`busy()` tells), so others never wait on it."""
        for _ in range(attempts):
            os.kill(self.pid, signal.SIGSTOP)
            wait_until(lambda: _process_state(self.pid) == "T", timeout=5, what=f"worker {self.pid} to stop")
            if not busy():
                return
            os.kill(self.pid, signal.SIGCONT)
            time.sleep(0.02)
        raise AssertionError(f"worker {self.pid} was inside a write transaction every time it was paused")

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


class Workers:
    """Starts workers on one runs database with short timings; `close()` stops them all."""

    def __init__(self, database_url: str, home: Path) -> None:
        self.database_url = database_url
        self.home = home
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *,
        crash_at: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        allowed_hosts: str = "public",
        extra_env: Mapping[str, str] | None = None,
        command: Sequence[str] = ("worker",),
    ) -> WorkerProcess:
        """A `runyard worker` (or `command`, e.g. `serve --port N`) on the database and home, with short timings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("RUNYARD_")}
        env.update(
            RUNYARD_DATABASE_URL=self.database_url,
            RUNYARD_HOME=str(self.home),
            RUNYARD_ALLOWED_HOSTS=allowed_hosts,
            RUNYARD_LEASE_SECONDS=str(lease_seconds),
            RUNYARD_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            RUNYARD_POLL_SECONDS=str(POLL_SECONDS),
            RUNYARD_SWEEP_SECONDS=str(SWEEP_SECONDS),
            RUNYARD_WORKER_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
        )
        if crash_at is not None:
            env["RUNYARD_CRASH_AT"] = crash_at
        env.update(extra_env or {})  # last: a test may change any of the above
        log_path = self.home / f"{command[0]}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "runyard.cli", *command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(popen, log_path)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        errors: list[BaseException] = []
        for worker in self.started:
            try:
                worker.kill()
            except (OSError, subprocess.SubprocessError) as error:  # keep stopping the others
                errors.append(error)
        if errors:
            raise errors[0]


Outcome = tuple[str, int, int | None]  # ("accepted" | "rejected", run id, the blocking run id)


def launch_many(
    database_url: str, operation_id: int, count: int, start: BarrierType, results: Queue[list[Outcome] | str]
) -> None:
    """A racer process: wait for the others at `start`, then launch `count` runs; put what it saw on `results`."""
    store = Store(database_url)
    outcomes: list[Outcome] = []
    try:
        service = RunService(store)
        start.wait(timeout=60)
        for _ in range(count):
            try:
                view = service.launch(LaunchRequest(operation_id=operation_id))
                outcomes.append(("accepted", view.id, None))
            except RunRejected as rejected:
                outcomes.append(("rejected", rejected.rejected_run_id, rejected.active_run_id))
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")
        return
    finally:
        store.dispose()
    results.put(outcomes)
