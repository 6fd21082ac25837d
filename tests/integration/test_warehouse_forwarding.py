"""`runyard serve` with RUNYARD_HTTP_PROCESSES=3 on the embedded DuckDB warehouse: the SQL Explorer and the exports
answer from every process, the extra ones forwarding them to the process that holds the warehouse."""

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
STARTUP_SECONDS = 60.0
STOP_SECONDS = 15.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, "--demo", env={"RUNYARD_HTTP_PROCESSES": str(PROCESSES)})
    yield running
    helpers = http_helpers(running.pid)
    running.process.stop(signal.SIGKILL)
    deadline = time.monotonic() + STOP_SECONDS
    while alive_processes(helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive_processes(helpers):
        os.kill(pid, signal.SIGKILL)


def test_every_process_answers_the_sql_explorer_and_the_exports(served: Server) -> None:
    served.health()
    token = httpx.post(
        f"{served.url}/api/v1/auth/token", json={"login": "admin", "password": served.admin_password()}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    wait_until(
        lambda: len(http_helpers(served.pid)) == PROCESSES - 1 or None,
        timeout=STARTUP_SECONDS,
        what="the extra processes to start",
    )
    # Connections held open until each process holds one (the kernel hands each to whichever accepts first).
    processes = {served.pid, *http_helpers(served.pid)}
    clients: list[httpx.Client] = []

    def every_process_holds_one() -> bool | None:
        client = httpx.Client(base_url=served.url, headers=headers, timeout=30)
        clients.append(client)
        assert client.get("/healthz").status_code == 200
        return connection_holders(processes, served.port) == processes or None

    try:
        wait_until(every_process_holds_one, timeout=STARTUP_SECONDS, what="every process to accept a connection")

        def employees_loaded() -> bool | None:
            answer = clients[0].post("/api/v1/sql", json={"sql": "SELECT count(*) AS n FROM employees"})
            return answer.status_code == 200 or None

        wait_until(employees_loaded, timeout=STARTUP_SECONDS, what="the demo to load the employees")
        for client in clients:
            answer = client.post("/api/v1/sql", json={"sql": "SELECT 40 + 2 AS answer"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["rows"] == [[42]]
            first = client.get("/api/integrations/v2/biviews/EMPLOYEES_V", params={"pagenum": 1, "pageSize": 100})
            assert first.status_code == 200, first.text
            continuation = {"continuation-token": first.headers["continuation-token"]}
            for other in clients:  # the later pages, from every process
                page = other.get(
                    "/api/integrations/v2/biviews/EMPLOYEES_V", params={"pagenum": 2}, headers=continuation
                )
                assert page.status_code == 200, page.text
                assert page.text.splitlines()[0] == first.text.splitlines()[0]
    finally:
        for client in clients:
            client.close()
    assert "Traceback" not in served.process.stderr, served.process.describe()
