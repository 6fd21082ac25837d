"""Helpers for tests that drive the real `runyard` command in subprocesses against SQLite files under tmp_path."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

RUNYARD = [sys.executable, "-m", "runyard.cli"]
COMMAND_TIMEOUT = 60.0

#: Short worker timings so runs end (and stop) within a second or two.
FAST_TIMINGS = {
    "RUNYARD_LEASE_SECONDS": "3",
    "RUNYARD_HEARTBEAT_SECONDS": "0.5",
    "RUNYARD_POLL_SECONDS": "0.1",
    "RUNYARD_SWEEP_SECONDS": "0.5",
}

T = TypeVar("T")
Dump = dict[str, list[tuple[Any, ...]]]


# An operation whose second task fails: the failure, retry and reuse paths of both CLI modes.
BROKEN = """\
configuration_type: tasks
configuration_id: broken
tasks:
  - {name: "Process [employees]", executor: noop, reusable: true}
  - {name: "Fetch [departments]", executor: fail, max_attempts: 1,
     params: {message: "the source answered 500"}, depends_on: ["Process [employees]"]}
"""


def runyard_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any RUNYARD_* setting, pointed at `home`, colours off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k not in ("FORCE_COLOR",)}
    env.update(RUNYARD_HOME=str(home), NO_COLOR="1", PYTHONUNBUFFERED="1", **FAST_TIMINGS)
    env.update(extra)
    return env


def describe(result: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(result.args[len(RUNYARD) :])
    return f"`runyard {command}` exited {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ...` line a failed command printed on stderr (exit 1, no traceback, nothing else)."""
    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("error: "), describe(result)
    return lines[0]


@dataclass
class Runyard:
    """The `runyard` command against one RUNYARD_HOME."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return runyard_env(self.home, **self.extra_env)

    @property
    def db(self) -> Path:
        return self.home / "runyard.db"

    def __call__(
        self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run `runyard ARGS`; with check, the command must succeed."""
        result = subprocess.run(
            [*RUNYARD, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check:
            assert result.returncode == 0, describe(result)
            assert "Traceback" not in result.stdout + result.stderr, describe(result)
        return result

    def fails(self, *args: str) -> str:
        """Run `runyard ARGS`, which must fail the way a person can act on: exit 1 and one `error:` line."""
        return error_line(self(*args, check=False))

    def spawn(self, *args: str, log: Path) -> Background:
        """Start `runyard ARGS` in the background, its stdout and stderr going to `log` (.out / .err)."""
        out = log.with_suffix(".out").open("w")
        err = log.with_suffix(".err").open("w")
        process = subprocess.Popen(
            [*RUNYARD, *args], env=self.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True
        )
        return Background(process, log.with_suffix(".out"), log.with_suffix(".err"), (out, err))


@dataclass
class Background:
    """A long-running runyard process (worker, serve); `stop` always ends it."""

    process: subprocess.Popen[str]
    out_path: Path
    err_path: Path
    files: tuple[Any, ...]

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def describe(self) -> str:
        return f"exit {self.process.poll()}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig`, wait up to `timeout`, kill if still there; the exit code (killed: negative)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            return self.process.returncode
        finally:
            for handle in self.files:
                handle.close()


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `predicate` until it returns something truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def answers_health(url: str, process: Background) -> bool:
    """Whether `runyard serve` at `url` answers /healthz; AssertionError (with its output) if it has died."""
    assert process.alive(), process.describe()
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(_connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def dump(db: Path) -> Dump:
    """Every row of every table, in a stable order: two dumps are equal when the store did not change."""
    with closing(_connect(db)) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in names}


def counts(db: Path) -> dict[str, int]:
    return {name: len(rows) for name, rows in dump(db).items()}


def run_status(db: Path, run_id: int) -> str:
    rows = query(db, "SELECT status FROM runs WHERE id = ?", run_id)
    assert rows, f"run {run_id} is not in the store"
    return str(rows[0][0])


def run_ids(db: Path, configuration_id: str) -> list[int]:
    rows = query(
        db,
        "SELECT runs.id FROM runs JOIN operations ON operations.id = runs.operation_id "
        "WHERE operations.configuration_id = ? ORDER BY runs.id",
        configuration_id,
    )
    return [int(row[0]) for row in rows]
