"""`runyard serve` with RUNYARD_HTTP_PROCESSES: the lists (and everything else) answered from several processes.

The extra processes accept on the same socket; only the first runs the workers, so a run launched through
any of them is picked up at once (the worker process is woken through `services/work_signal.py`), and
stopping or killing `serve` leaves no process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import wait_until
from tests.integration.http_processes import alive_processes, connection_holders, http_helpers
from tests.integration.test_serve import Server

PROCESSES = 3
STARTUP_SECONDS = 30.0
RUN_SECONDS = 20.0
STOP_SECONDS = 15.0

OPERATION = """\
configuration_type: tasks
configuration_id: quick
tasks:
  - {name: "Process [employees]", executor: noop}
  - {name: "Data Load", executor: noop, depends_on: ["Process [employees]"]}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, env={"RUNYARD_HTTP_PROCESSES": str(PROCESSES)})
    yield running
    helpers = http_helpers(running.pid)
    running.process.stop(signal.SIGKILL)
    deadline = time.monotonic() + STOP_SECONDS
    while alive_processes(helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive_processes(helpers):  # never leave one behind, whatever the test found
        os.kill(pid, signal.SIGKILL)


def test_every_process_answers_and_a_launch_through_any_reaches_the_workers(served: Server, tmp_path: Path) -> None:
    served.health()
    password = served.admin_password()
    (tmp_path / "quick.yaml").write_text(OPERATION)
    served.cli("deploy", str(tmp_path / "quick.yaml"))
    wait_until(
        lambda: len(http_helpers(served.pid)) == PROCESSES - 1 or None,
        timeout=STARTUP_SECONDS,
        what="the extra processes to start",
    )
    # Every process answers: open connections, keeping each open, until each process holds one. The kernel
    # gives a new connection to whichever process accepts first, and on a busy machine one process can win
    # many races in a row, so the count it takes varies; a process that never accepts fails the wait.
    processes = {served.pid, *http_helpers(served.pid)}
    clients: list[httpx.Client] = []

    def every_process_holds_one() -> bool | None:
        client = httpx.Client(base_url=served.url, timeout=10)
        clients.append(client)
        assert client.get("/healthz").status_code == 200
        return connection_holders(processes, served.port) == processes or None

    try:
        wait_until(every_process_holds_one, timeout=STARTUP_SECONDS, what="every process to accept a connection")
    finally:
        for client in clients:
            client.close()

    token = httpx.post(f"{served.url}/api/v1/auth/token", json={"login": "admin", "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    operation = httpx.get(f"{served.url}/api/v1/operations", headers=headers).json()[0]["id"]

    # New connections, so that the kernel hands them to whichever process accepts first.
    for number in range(1, 7):
        launched = httpx.post(f"{served.url}/api/v1/operations/{operation}/runs", json={}, headers=headers)
        assert launched.status_code == 202, launched.text
        run_id = launched.json()["id"]

        def completed(run_id: int = run_id) -> bool | None:
            answer = httpx.get(f"{served.url}/api/v1/runs/{run_id}", headers=headers).json()
            assert answer["status"] not in ("failed", "canceled", "rejected"), answer
            return answer["status"] == "completed" or None

        wait_until(completed, timeout=RUN_SECONDS, what=f"run {run_id} to complete")
        listed = httpx.get(f"{served.url}/api/v1/runs", params={"sort": "duration", "order": "asc"}, headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == number
        assert sorted(run["id"] for run in listed.json()["items"]) == list(range(1, number + 1))

    helpers = http_helpers(served.pid)
    code = served.process.stop(signal.SIGTERM, timeout=STOP_SECONDS)
    assert code == 0, served.process.describe()
    wait_until(lambda: not alive_processes(helpers) or None, timeout=STOP_SECONDS, what="the extra processes to stop")
    assert "Traceback" not in served.process.stderr


def test_the_extra_processes_do_not_outlive_a_killed_serve(served: Server) -> None:
    served.health()
    wait_until(
        lambda: len(http_helpers(served.pid)) == PROCESSES - 1 or None,
        timeout=STARTUP_SECONDS,
        what="the extra processes to start",
    )
    helpers = http_helpers(served.pid)
    served.process.stop(signal.SIGKILL)
    wait_until(lambda: not alive_processes(helpers) or None, timeout=STOP_SECONDS, what="the extra processes to stop")
