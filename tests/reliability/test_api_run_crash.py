"""The process dies during the Data Load; started again, the run completes and loads every row exactly once.

Real `runyard serve --demo` processes: the first one runs with RUNYARD_CRASH_AT and SIGKILLs itself at
that point of the demo-hr Data Load; the second one (same home, same port) sweeps the lost lease,
runs the Data Load again and completes the run. The DuckDB file is then read directly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import duckdb
import pytest

from runyard.demo.source_api import DemoSourceConfig, expected_counts
from runyard.store.database import Store
from tests.reliability.invariants import check_invariants

T = TypeVar("T")

TIMINGS = {
    "RUNYARD_LEASE_SECONDS": "2",
    "RUNYARD_HEARTBEAT_SECONDS": "0.3",
    "RUNYARD_SWEEP_SECONDS": "0.3",
    "RUNYARD_POLL_SECONDS": "0.1",
}
CRASH_TIMEOUT = 60.0
RUN_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
TABLES = ("employees", "departments", "time_off")
FINAL = ("completed", "completed_with_errors", "failed", "canceled")


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def free_port_pair() -> int:
    """A port P with P and P + 1 free: serve --demo listens on P and its demo source on P + 1."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("found no two consecutive free ports")


class Serve:
    """`runyard serve --demo --port P` processes on one home; every one is killed at teardown."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        env.update(RUNYARD_HOME=str(self.home), PYTHONUNBUFFERED="1", NO_COLOR="1", **TIMINGS, **extra_env)
        log = self.home.parent / f"serve-{len(self.processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "runyard.cli", "serve", "--demo", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for _, log in self.processes)

    def close(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    home = tmp_path / "home"
    home.mkdir()
    server = Serve(home, free_port_pair())
    try:
        yield server
    finally:
        server.close()


def demo_run(home: Path, configuration_id: str = "demo-hr") -> tuple[int, str, str] | None:
    """(id, run_key, status) of the demo-hr run (or of another demo operation's one run), from the runs store."""
    path = home / "runyard.db"
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute(
                "SELECT runs.id, runs.run_key, runs.status FROM runs "
                "JOIN operations ON operations.id = runs.operation_id "
                "WHERE operations.configuration_id = ? ORDER BY runs.id",
                (configuration_id,),
            ).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return None
    assert len(rows) <= 1, f"serve --demo launched {configuration_id} more than once: {rows}"
    return (int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None


def final_demo_run(home: Path) -> tuple[int, str, str] | None:
    """The demo-hr run once it has ended."""
    run = demo_run(home)
    return run if run is not None and run[2] in FINAL else None


def data_load_task(home: Path, run_id: int) -> tuple[int, str, list[str]]:
    """(attempt, status, messages) of the run's Data Load task."""
    with closing(sqlite3.connect(f"file:{home / 'runyard.db'}?mode=ro", uri=True, timeout=5)) as conn:
        task_id, attempt, status = conn.execute(
            "SELECT id, attempt, status FROM tasks WHERE run_id = ? AND name = 'Data Load'", (run_id,)
        ).fetchone()
        texts = [r[0] for r in conn.execute("SELECT text FROM task_messages WHERE task_id = ? ORDER BY id", (task_id,))]
    return int(attempt), str(status), texts


def recorded_data_loads(home: Path, run_id: int) -> list[dict[str, int]]:
    """The tables of every data_loads row the runs store holds for the run: [{table: rows}]."""
    with closing(sqlite3.connect(f"file:{home / 'runyard.db'}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT tables FROM data_loads WHERE run_id = ?", (run_id,)).fetchall()
    return [{t["name"]: t["rows"] for t in json.loads(row[0])} for row in rows]


def load_records(home: Path, run_key: str) -> int:
    """How many _runyard.loads rows the DuckDB file holds for a run."""
    with duckdb.connect(str(home / "warehouse" / "default.duckdb"), read_only=True) as con:
        (count,) = con.execute("SELECT count(*) FROM _runyard.loads WHERE run_key = ?", [run_key]).fetchone()  # type: ignore[misc]
    return int(count)


def warehouse_facts(home: Path, run_key: str) -> tuple[dict[str, int], dict[str, int], int, int, int]:
    """(row counts, duplicate ids, load records of the run, load records in all but the demo stream's micro-batches
    (keyed `<run_key>-s<attempt>-b<n>`), staging tables left)."""
    with duckdb.connect(str(home / "warehouse" / "default.duckdb"), read_only=True) as con:
        counts = {t: int(con.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0]) for t in TABLES}  # type: ignore[index]
        duplicates = {
            t: int(con.execute(f"SELECT count(*) - count(DISTINCT id) FROM main.{t}").fetchone()[0])  # type: ignore[index]
            for t in TABLES
        }
        (of_run,) = con.execute("SELECT count(*) FROM _runyard.loads WHERE run_key = ?", [run_key]).fetchone()  # type: ignore[misc]
        (total,) = con.execute(  # type: ignore[misc]
            "SELECT count(*) FROM _runyard.loads WHERE NOT regexp_matches(run_key, '-s[0-9]+-b[0-9]+$')"
        ).fetchone()
        (staging,) = con.execute(  # type: ignore[misc]
            "SELECT count(*) FROM duckdb_tables() WHERE starts_with(table_name, '_runyard_staging__')"
        ).fetchone()
    return counts, duplicates, int(of_run), int(total), int(staging)


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["load.before_commit", "load.after_commit_before_meta"])
def test_a_crash_during_the_data_load_loads_every_row_exactly_once_after_restart(serve: Serve, crash_at: str) -> None:
    first = serve.start(RUNYARD_CRASH_AT=crash_at)
    try:
        first.wait(timeout=CRASH_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not crash at {crash_at} within {CRASH_TIMEOUT:.0f} s\n{serve.logs()}")
    assert first.returncode == -signal.SIGKILL, serve.logs()
    crashed = demo_run(serve.home)
    assert crashed is not None, serve.logs()
    run_id, run_key, status = crashed
    assert status == "running", (status, serve.logs())
    # Before the commit nothing is loaded; after it the load record is there, once, before any restart.
    committed = crash_at == "load.after_commit_before_meta"
    assert load_records(serve.home, run_key) == int(committed)

    second = serve.start()
    completed = wait_until(
        lambda: final_demo_run(serve.home),
        timeout=RUN_TIMEOUT,
        what="the demo-hr run to end after the restart",
    )
    assert completed[0] == run_id
    assert completed[2] == "completed", serve.logs()
    attempt, load_status, texts = data_load_task(serve.home, run_id)
    assert load_status == "completed"
    assert attempt >= 2, "the Data Load was not run again after the crash"
    already = any("already been loaded" in text for text in texts)
    assert already is (crash_at == "load.after_commit_before_meta"), texts
    # demo-hr's success launches the demo workflow's target once: its own load is the warehouse's other one
    summaries = wait_until(
        lambda: (run := demo_run(serve.home, "demo-hr-summaries_DEV")) and run[2] in FINAL and run,
        timeout=RUN_TIMEOUT,
        what="the demo workflow's summaries run to end",
    )
    assert summaries[2] == "completed", serve.logs()

    second.send_signal(signal.SIGTERM)
    try:
        second.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not stop on SIGTERM within {STOP_TIMEOUT:.0f} s\n{serve.logs()}")

    expected = expected_counts(DemoSourceConfig())  # serve --demo serves the default demo source
    counts, duplicates, loads_of_run, loads, staging_left = warehouse_facts(serve.home, run_key)
    assert counts == expected
    assert duplicates == dict.fromkeys(TABLES, 0)
    assert loads_of_run == 1
    assert loads == 2  # and the summaries' one
    assert staging_left == 0, "the run's staging tables were not dropped after the load"
    assert recorded_data_loads(serve.home, run_id) == [expected]
    store = Store(f"sqlite:///{serve.home / 'runyard.db'}")
    try:
        check_invariants(store, serve.home / "warehouse", source_counts=expected, staging_root=serve.home / "staging")
    finally:
        store.dispose()
