"""`runyard serve` as a process: it answers /healthz, says where it runs, runs the demo, and stops on a signal."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import Background, Runyard, free_port, query, wait_until

STARTUP_SECONDS = 20.0
DEMO_RUN_SECONDS = 30.0
STOP_SECONDS = 5.0


class Server:
    """One `runyard serve` subprocess on a free port; always stopped (killed if need be) at teardown."""

    def __init__(self, tmp_path: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.cli = Runyard(tmp_path / "home", extra_env=env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Background = self.cli.spawn("serve", "--port", str(self.port), *extra, log=tmp_path / "serve")

    def health(self) -> httpx.Response:
        """GET /healthz once it answers (bounded by STARTUP_SECONDS)."""

        def answer() -> httpx.Response | None:
            assert self.process.alive(), self.process.describe()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2)
            except httpx.TransportError:
                return None

        return wait_until(answer, timeout=STARTUP_SECONDS, what=f"{self.url}/healthz to answer")

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def admin_password(self) -> str:
        """The password `serve` printed for the administrator it created (once every process answers)."""

        def printed() -> str | None:
            assert self.process.alive(), self.process.describe()
            found = re.search(r"password: (\S+)", self.process.stdout)
            return found.group(1) if found else None

        return wait_until(printed, timeout=STARTUP_SECONDS, what="the administrator's password")

    def stop_with(self, sig: int) -> tuple[int, float]:
        """Send `sig`; the exit code and how long the process took to end."""
        started = time.monotonic()
        code = self.process.stop(sig, timeout=STOP_SECONDS)
        return code, time.monotonic() - started


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    yield running
    running.process.stop(signal.SIGKILL)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, "--demo")
    yield running
    running.process.stop(signal.SIGKILL)


def assert_started(server: Server) -> None:
    response = server.health()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "sqlite"
    out = server.process.stdout
    assert f"runyard is running at http://127.0.0.1:{server.port}" in out, server.process.describe()
    assert re.search(r"^administrator login: admin\s+password: \S+\s+\(shown once\)$", out, re.M), out
    assert "Traceback" not in server.process.stderr


def test_serve_answers_healthz_and_stops_on_sigterm(server: Server) -> None:
    assert_started(server)

    code, took = server.stop_with(signal.SIGTERM)

    assert code == 0, server.process.describe()
    assert took < STOP_SECONDS
    assert "Traceback" not in server.process.stderr


def test_serve_demo_deploys_and_completes_the_demo_run_then_stops_on_sigint(demo_server: Server) -> None:
    assert_started(demo_server)
    db = demo_server.cli.db
    assert query(db, "SELECT id FROM operations WHERE configuration_id = 'demo-hr-sleep'"), "demo-hr-sleep not deployed"

    def demo_run_status() -> str | None:
        rows = query(
            db,
            "SELECT runs.status FROM runs JOIN operations ON operations.id = runs.operation_id "
            "WHERE operations.configuration_id = 'demo-hr-sleep' AND runs.trigger != 'schedule' ORDER BY runs.id",
        )
        assert len(rows) <= 1, rows  # the demo launches one run, not one per start
        status = rows[0][0] if rows else None
        assert status not in ("failed", "canceled", "rejected"), status
        return "completed" if status == "completed" else None

    wait_until(demo_run_status, timeout=DEMO_RUN_SECONDS, what="the demo run to complete", interval=0.25)
    listed = demo_server.cli("runs", "--operation", "demo-hr-sleep").stdout
    assert re.search(r"^\s*1\s+demo-hr-sleep\s+destructive\s+Completed\b", listed, re.M), listed

    code, took = demo_server.stop_with(signal.SIGINT)

    assert code == 0, demo_server.process.describe()
    assert took < STOP_SECONDS
    assert "Traceback" not in demo_server.process.stderr


def _port_with_next_taken() -> tuple[int, socket.socket]:
    """A free port P whose neighbour P+1 is held by a socket of ours (the caller closes it)."""
    for _ in range(50):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1] - 1
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("127.0.0.1", port))
            return port, holder
        except OSError:
            holder.close()
        finally:
            probe.close()
    raise AssertionError("no free port with a neighbour to hold")


def test_serve_demo_starts_its_source_elsewhere_when_the_next_port_is_taken(tmp_path: Path) -> None:
    port, holder = _port_with_next_taken()
    server = Server(tmp_path, "--demo", port=port)
    try:
        assert server.health().status_code == 200

        def demo_hr_completed() -> bool | None:
            rows = query(
                server.cli.db,
                "SELECT runs.status FROM runs JOIN operations ON operations.id = runs.operation_id "
                "WHERE operations.configuration_id = 'demo-hr'",
            )
            assert not rows or rows[0][0] not in ("failed", "canceled", "rejected"), rows
            return True if rows and rows[0][0] == "completed" else None

        wait_until(demo_hr_completed, timeout=DEMO_RUN_SECONDS, what="demo-hr to complete", interval=0.25)
        assert f"http://127.0.0.1:{port + 1}" not in server.process.stdout  # the taken port was not used

        def summaries_launched_by_the_workflow() -> list[tuple[str, str]] | None:
            rows = query(
                server.cli.db,
                "SELECT runs.trigger, runs.status FROM runs JOIN operations ON operations.id = runs.operation_id "
                "WHERE operations.configuration_id = 'demo-hr-summaries_DEV'",
            )
            return rows if rows and rows[0][1] == "completed" else None

        # the demo's workflow launches the summaries once demo-hr has completed, and its counts are consumed
        summaries = wait_until(
            summaries_launched_by_the_workflow, timeout=DEMO_RUN_SECONDS, what="the summaries", interval=0.25
        )
        assert [tuple(row) for row in summaries] == [("workflow", "completed")]
        assert query(server.cli.db, "SELECT successes FROM workflow_upstreams") == [(0,)]
    finally:
        server.process.stop(signal.SIGTERM, timeout=STOP_SECONDS)
        holder.close()


def test_a_port_in_use_is_one_line_before_anything_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli = Runyard(tmp_path / "home")

        error = cli.fails("serve", "--port", str(port))

    assert error.strip() == "error: Address already in use"
    assert not (tmp_path / "home" / "runyard.db").exists()  # no store, so no administrator whose password is lost
