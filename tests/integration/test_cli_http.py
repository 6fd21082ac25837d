"""The `runyard` command through a running server (RUNYARD_URL): real `runyard serve` and CLI subprocesses.

The CLI gets a RUNYARD_HOME of its own, so it cannot open the server's store or warehouse: every
command below goes over HTTP (the test checks that no store appeared in the CLI's home).
"""

from __future__ import annotations

import re
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runyard import client as client_module
from runyard.client import ClientError, RunyardClient
from tests.integration.cli_helpers import (
    BROKEN,
    Background,
    Runyard,
    answers_health,
    error_line,
    free_port,
    run_status,
    wait_until,
)

PASSWORD = "correct-horse-battery-staple"
STARTUP_SECONDS = 20.0
RUN_SECONDS = 30.0
SERVER_TIMINGS = {
    "RUNYARD_LEASE_SECONDS": "3",
    "RUNYARD_HEARTBEAT_SECONDS": "0.3",
    "RUNYARD_POLL_SECONDS": "0.1",
    "RUNYARD_SWEEP_SECONDS": "0.3",
}

QUICK = """\
configuration_type: tasks
configuration_id: quick
tasks:
  - {name: "Process [employees]", executor: sleep,
     params: {seconds: 0.3, units: 3, records_per_unit: 10, table: employees}}
  - {name: "Data Load", executor: noop, depends_on: ["Process [employees]"]}
"""


def slow(configuration_id: str) -> str:
    return (
        f"configuration_type: tasks\nconfiguration_id: {configuration_id}\ntasks:\n"
        '  - {name: "Wait [forever]", executor: sleep, params: {seconds: 60, units: 600}}\n'
    )


@dataclass
class Server:
    """`runyard serve` on a free port, over its own home (store, warehouse) with operations deployed."""

    home: Path
    url: str
    process: Background

    @property
    def db(self) -> Path:
        return self.home / "runyard.db"

    def token(self) -> str:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            response = http.post("/api/v1/auth/token", json={"login": "admin", "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    cli = Runyard(root / "home", extra_env={"RUNYARD_ADMIN_PASSWORD": PASSWORD, **SERVER_TIMINGS})
    specs = root / "specs"
    specs.mkdir()
    for name, text in {"quick": QUICK, "broken": BROKEN, "held": slow("held"), "stoppable": slow("stoppable")}.items():
        (specs / f"{name}.yaml").write_text(text)
    cli("db", "upgrade")
    cli("deploy", str(specs))  # direct mode, before the server holds anything
    port = free_port()
    running = Server(cli.home, f"http://127.0.0.1:{port}", cli.spawn("serve", "--port", str(port), log=root / "serve"))
    try:
        wait_until(
            lambda: answers_health(running.url, running.process),
            timeout=STARTUP_SECONDS,
            what="runyard serve to answer",
        )
        yield running
    finally:
        running.process.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def client(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Runyard:
    """The CLI with a home of its own, logged in to the server."""
    cli = Runyard(tmp_path_factory.mktemp("client") / "home", extra_env={"RUNYARD_URL": server.url})
    cli("login", "--login", "admin", "--password", PASSWORD)
    return cli


def launched_id(output: str) -> int:
    found = re.search(r"^run (\d+) of \S+ launched", output, re.M)
    assert found, output
    return int(found.group(1))


# --- login ------------------------------------------------------------------------------------------------


def test_login_saves_the_token_for_its_owner_only_and_never_prints_it(server: Server, tmp_path: Path) -> None:
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_URL": server.url})

    result = cli("login", "--login", "admin", "--password", PASSWORD)

    saved = cli.home / "cli.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    token = saved.read_text()
    assert server.url in token
    jwt = re.search(r'"token":\s*"([^"]+)"', token)
    assert jwt, token
    assert jwt.group(1) not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert f"logged in to {server.url} as admin" in result.stdout


def test_login_with_a_wrong_password_is_one_error_line(server: Server, tmp_path: Path) -> None:
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_URL": server.url})

    message = cli.fails("login", "--login", "admin", "--password", "not-the-password")

    assert "wrong login or password" in message
    assert not (cli.home / "cli.json").exists()


def test_a_saved_login_alone_chooses_the_server(server: Server, client: Runyard, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "cli.json").write_bytes((client.home / "cli.json").read_bytes())

    listed = Runyard(home)("runs")  # no RUNYARD_URL: the saved login's server

    assert re.search(r"^\d+ of \d+ runs$", listed.stdout, re.M), listed.stdout
    assert not (home / "runyard.db").exists()


def test_an_expired_login_says_so_in_one_line(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "cli.json").write_text(f'{{"url": "{server.url}", "token": "expired.or.forged"}}')

    message = Runyard(home).fails("runs")

    assert message == "error: your login expired: run `runyard login` again"


def test_a_server_url_without_a_login_asks_for_one(server: Server, tmp_path: Path) -> None:
    message = Runyard(tmp_path / "home", extra_env={"RUNYARD_URL": server.url}).fails("runs")

    assert "run `runyard login` or set RUNYARD_TOKEN" in message


def test_an_api_token_in_runyard_token_works_without_login(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        created = http.post(
            "/api/v1/tokens", json={"name": "cli"}, headers={"Authorization": f"Bearer {server.token()}"}
        )
    assert created.status_code == 201, created.text
    api_token = created.json()["token"]
    assert api_token.startswith("ry_")
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_URL": server.url, "RUNYARD_TOKEN": api_token})

    listed = cli("runs", "--operation", "quick")

    assert re.search(r"^\d+ of \d+ runs$", listed.stdout, re.M), listed.stdout
    assert api_token not in listed.stdout + listed.stderr
    assert not (cli.home / "runyard.db").exists()


def test_a_closed_port_cannot_be_reached(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_URL": url, "RUNYARD_TOKEN": "ry_whatever"})

    message = error_line(cli("runs", check=False))

    assert message == f"error: cannot reach runyard at {url}: is `runyard serve` running?"


# --- run, runs, retry, cancel -----------------------------------------------------------------------------


def test_run_wait_follows_the_events_to_completed_and_a_completed_run_cannot_be_retried(client: Runyard) -> None:
    result = client("run", "quick", "--wait", timeout=RUN_SECONDS)

    run_id = launched_id(result.stdout)
    assert re.search(rf"^run {run_id} of quick launched \(incremental\); job name quick#\S+", result.stdout, re.M)
    assert re.search(r"Process \[employees\].*Completed\s+30 records", result.stdout), result.stdout
    assert re.search(r"Data Load.*Completed", result.stdout), result.stdout
    assert f"run {run_id} ended Completed" in result.stdout
    shown = client("runs", "show", str(run_id)).stdout
    assert re.search(rf"^run {run_id}\s+quick\s+incremental\s+Completed$", shown, re.M), shown
    assert "employees (30)" in shown
    assert f"run {run_id} cannot be retried: it is Completed" in client.fails("retry", str(run_id))
    assert not (client.home / "runyard.db").exists()


def test_a_second_launch_while_the_first_is_active_is_rejected_and_listed(server: Server, client: Runyard) -> None:
    first = launched_id(client("run", "held").stdout)

    message = client.fails("run", "held")

    assert "Rejected - previous load still running" in message
    assert f"run {first} is still active" in message
    rejected = int(re.findall(r"rejected run (\d+)", message)[0])
    listed = client("runs", "--status", "rejected").stdout
    assert re.search(rf"^\s*{rejected}\s+held\s+incremental\s+Rejected - previous load still running", listed, re.M)
    assert not re.search(rf"^\s*{first}\s+held", listed, re.M), listed
    assert f"blocked by run {first}" in client("runs", "show", str(rejected)).stdout
    client("cancel", str(first))  # frees the worker slot


def test_cancel_a_running_run(server: Server, client: Runyard) -> None:
    run_id = launched_id(client("run", "stoppable").stdout)
    wait_until(lambda: run_status(server.db, run_id) == "running", timeout=RUN_SECONDS, what="the run to start")

    result = client("cancel", str(run_id))

    assert result.stdout.strip() in (f"run {run_id} is Canceling", f"run {run_id} is Canceled")
    wait_until(lambda: run_status(server.db, run_id) == "canceled", timeout=RUN_SECONDS, what="the run to stop")
    shown = client("runs", "show", str(run_id)).stdout
    assert re.search(rf"^run {run_id}\s+stoppable\s+incremental\s+Canceled$", shown, re.M), shown
    assert f"run {run_id} cannot be canceled" in client.fails("cancel", str(run_id))


def test_a_failed_run_exits_non_zero_and_retry_wait_follows_the_retry(client: Runyard) -> None:
    failed = client("run", "broken", "--wait", check=False, timeout=RUN_SECONDS)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    run_id = launched_id(failed.stdout)
    assert re.search(r"Fetch \[departments\].*Failed", failed.stdout), failed.stdout
    assert f"run {run_id} ended Failed" in failed.stdout

    retried = client("retry", str(run_id), "--wait", check=False, timeout=RUN_SECONDS)

    assert retried.returncode == 1, retried.stdout + retried.stderr
    found = re.search(rf"^run (\d+) launched as a retry of run {run_id}$", retried.stdout, re.M)
    assert found, retried.stdout
    assert f"run {found.group(1)} ended Failed" in retried.stdout
    shown = client("runs", "show", found.group(1)).stdout
    assert f"retry of run {run_id}" in shown
    assert "[error] Fetch [departments]: the source answered 500" in shown


# --- the events stream, in process ----------------------------------------------------------------------


class _Dropped(httpx.SyncByteStream):
    """A stream that sends `frames`, then loses its connection."""

    def __init__(self, frames: bytes) -> None:
        self.frames = frames

    def __iter__(self) -> Iterator[bytes]:
        yield self.frames
        raise httpx.ReadError("connection reset by peer")


def _frame(kind: str, data: str, event_id: int | None = None) -> bytes:
    return (f"id: {event_id}\n" if event_id else "").encode() + f"event: {kind}\ndata: {data}\n\n".encode()


@pytest.fixture
def no_reconnect_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RECONNECT_DELAY_SECONDS", 0.0)


@pytest.mark.usefixtures("no_reconnect_delay")
def test_the_events_stream_resumes_from_the_last_event_id_after_a_dropped_connection() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        if len(seen) == 1:
            frames = _frame("run", "{}") + _frame("task_claimed", '{"task_id": 1}', 7) + b"event: task_fin"
            return httpx.Response(200, stream=_Dropped(frames))
        return httpx.Response(200, content=_frame("task_finished", '{"task_id": 1}', 8) + _frame("end", "{}"))

    with RunyardClient("http://runyard.test", "t", transport=httpx.MockTransport(answer)) as api:
        events = list(api.events(1))

    assert [kind for kind, _ in events] == ["run", "task_claimed", "task_finished", "end"]
    assert events[1][1] == {"task_id": 1}
    assert seen == [None, "7"]


@pytest.mark.usefixtures("no_reconnect_delay")
def test_the_events_stream_gives_up_after_a_bounded_number_of_reconnects() -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    with (
        RunyardClient("http://runyard.test", "t", transport=httpx.MockTransport(refuse)) as api,
        pytest.raises(ClientError, match="lost the events of run 1"),
    ):
        list(api.events(1))
    assert calls == client_module.MAX_RECONNECTS + 1
