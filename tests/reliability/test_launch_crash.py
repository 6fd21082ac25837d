"""R17: `runyard serve` dies (SIGKILL) in the middle of a launch, on each runs database.

Real `runyard serve` processes run with RUNYARD_CRASH_AT set to one of the launch's crash points (runyard.faults),
each sent `POST /api/v1/operations/{id}/runs` for an operation of its own:

- `launch.before_commit`: RunService.launch has inserted the run and its tasks, the transaction is not committed.
  The client's connection drops without an answer; the store holds no run of the operation (the transaction died
  with the process), and once a server runs again without the setting, a new launch is accepted and completes.
- `launch.after_commit`: the transaction committed, nobody answered. The connection drops; the store holds exactly
  that one run; started again, the server's worker runs it to Completed, a second launch while it is active answers
  409 naming it (or, once it has completed, is accepted and completes), and there are never two active runs.

The two crashing servers start side by side (each start costs seconds of imports), then one server without the
setting starts on the same store. I1-I7 are checked at the end, once it has stopped.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard import client as client_module
from runyard.client import RunyardClient
from runyard.domain.statuses import RUN_ACTIVE, RunStatus, RunType
from runyard.store.database import Store
from runyard.store.tables import runs
from tests.factories import make_operation, sleep_task
from tests.integration.cli_helpers import Background, Runyard, answers_health, free_port
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 30.0  # a bound on waiting for what must happen, never a speed requirement
PASSWORD = "admin-password"  # what tests.factories.make_account gives the administrator
WORK_SECONDS = 1.5  # each run's one task: long enough for a launch right after the restart to find the run active
ACTIVE = [status.value for status in RUN_ACTIVE]


@dataclass
class Served:
    """One `runyard serve` process and its base URL."""

    process: Background
    url: str

    def client(self) -> httpx.Client:
        """An API client signed in as the administrator (a JWT from this server)."""
        answer = httpx.post(f"{self.url}/api/v1/auth/token", json={"login": "admin", "password": PASSWORD}, timeout=10)
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


class Servers:
    """`runyard serve` processes on one home and runs database; every one is killed at teardown."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.database_url = database_url
        self.started: list[Background] = []

    def start(self, *crash_points: str | None, env: dict[str, str] | None = None) -> list[Served]:
        """One server per argument (set to die at that crash point, or not with None), started side by side on
        ports of their own, with `env` set too; returned once every one answers."""
        started = []
        for crash_at in crash_points:
            env = {**(env or {}), "RUNYARD_DATABASE_URL": self.database_url, "RUNYARD_WORKER_CONCURRENCY": "2"}
            if crash_at is not None:
                env["RUNYARD_CRASH_AT"] = crash_at
            port = free_port()
            log = self.home.parent / f"serve-{len(self.started)}"
            process = Runyard(self.home, extra_env=env).spawn("serve", "--port", str(port), log=log)
            self.started.append(process)
            started.append(Served(process, f"http://127.0.0.1:{port}"))
        for served in started:
            wait_until(partial(answers_health, served.url, served.process), timeout=TIMEOUT, what="serve to answer")
        return started

    def close(self) -> None:
        for process in self.started:
            process.stop(signal.SIGKILL)


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[Servers]:
    home = tmp_path / "home"
    home.mkdir()
    running = Servers(home, database_url)
    try:
        yield running
    finally:
        running.close()


def operation_runs(store: Store, operation_id: int) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(runs.c.id, runs.c.status).where(runs.c.operation_id == operation_id).order_by(runs.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def status_of(store: Store, run_id: int) -> str:
    with store.read() as conn:
        return str(conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar_one())


def completes(store: Store, run_id: int, operation_id: int, served: Served) -> None:
    """Wait for the run to end, never seeing two active runs of its operation meanwhile; it must be Completed."""

    def ended() -> str | None:
        assert served.process.alive(), served.process.describe()
        active = [run["id"] for run in operation_runs(store, operation_id) if run["status"] in ACTIVE]
        assert len(active) <= 1, operation_runs(store, operation_id)
        status = status_of(store, run_id)
        return status if RunStatus(status).is_final else None

    status = wait_until(ended, timeout=TIMEOUT, what=f"run {run_id} to end")
    assert status == RunStatus.COMPLETED.value, (operation_runs(store, operation_id), served.process.describe())


def launch(api: httpx.Client, operation_id: int, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post(f"/api/v1/operations/{operation_id}/runs", json={"type": "incremental"}, headers=headers)


def launch_dies_with_the_server(served: Served, operation_id: int, key: str | None = None) -> None:
    """POST a launch to a server that SIGKILLs itself at its crash point: no answer, the process gone by SIGKILL."""
    with served.client() as api, pytest.raises(httpx.TransportError):
        launch(api, operation_id, key)
    assert served.process.process.wait(TIMEOUT) == -signal.SIGKILL, served.process.describe()


def test_a_server_killed_in_a_launch_leaves_the_run_whole_or_absent_and_launching_again_never_makes_two(
    servers: Servers,
) -> None:
    store = Store(servers.database_url)
    try:
        work = [sleep_task("work", WORK_SECONDS, units=5)]
        uncommitted = make_operation(store, tasks=work, configuration_id="uncommitted")
        committed = make_operation(store, tasks=work, configuration_id="committed")
        before, after = servers.start("launch.before_commit", "launch.after_commit")

        launch_dies_with_the_server(before, uncommitted)
        assert operation_runs(store, uncommitted) == []  # the transaction died with the process
        launch_dies_with_the_server(after, committed)
        (launched,) = operation_runs(store, committed)  # committed before the crash: exactly one run
        assert launched["status"] in ACTIVE, launched

        (restarted,) = servers.start(None)
        assert operation_runs(store, uncommitted) == []  # nothing turned up on the restart either
        with restarted.client() as api:
            again = launch(api, committed)
            fresh = launch(api, uncommitted)
            assert fresh.status_code == 202, fresh.text  # before_commit: the operation launches as if never tried
            if again.status_code == 409:  # after_commit: the run was still active, and the answer names it
                assert f"run {launched['id']} is still active" in again.json()["detail"], again.text
                assert again.json()["run"]["status"] == RunStatus.REJECTED.value, again.text
                completes(store, launched["id"], committed, restarted)
                again = launch(api, committed)
            else:  # it had completed already
                assert status_of(store, launched["id"]) == RunStatus.COMPLETED.value, operation_runs(store, committed)
        assert again.status_code == 202, again.text
        assert again.json()["id"] != launched["id"]
        completes(store, launched["id"], committed, restarted)  # the crashed launch's run ran on the restarted worker
        completes(store, fresh.json()["id"], uncommitted, restarted)
        completes(store, again.json()["id"], committed, restarted)
        assert [run["id"] for run in operation_runs(store, uncommitted)] == [fresh.json()["id"]]
        statuses = [run["status"] for run in operation_runs(store, committed)]
        assert statuses.count(RunStatus.COMPLETED.value) == 2, statuses  # the crashed launch's run and the new one
        assert set(statuses) <= {RunStatus.COMPLETED.value, RunStatus.REJECTED.value}, statuses

        assert restarted.process.stop(signal.SIGTERM) == 0, restarted.process.describe()
        assert "Traceback" not in restarted.process.stderr, restarted.process.describe()
        check_invariants(store, servers.home / "warehouse", staging_root=servers.home / "staging")
    finally:
        store.dispose()


def test_a_launch_sent_again_with_its_idempotency_key_after_a_lost_answer_or_a_crash_answers_the_same_run(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R4 and R17 for the API's launches: the answer to a committed launch is lost (the database connection dropped
    after COMMIT: a 503), or the server died after the commit. The client sends the same launch again with the same
    Idempotency-Key, as clients retry: it answers the run the first one made, and there is exactly one run."""
    store = Store(servers.database_url)
    try:
        work = [sleep_task("work", WORK_SECONDS, units=5)]
        lossy_operation = make_operation(store, tasks=work, configuration_id="lost-answer")
        client_operation = make_operation(store, tasks=work, configuration_id="lost-answer-to-the-client")
        crashed_operation = make_operation(store, tasks=work, configuration_id="crashed-server")
        # One HTTP process: the count of lost answers is per process.
        (lossy,) = servers.start(None, env={"RUNYARD_LOSE_ACK": "launch:3", "RUNYARD_HTTP_PROCESSES": "1"})
        (crashing,) = servers.start("launch.after_commit")

        monkeypatch.setattr(client_module, "MAX_RESEND_PAUSE_SECONDS", 0.1)  # not the 5 s a 503 asks for
        with lossy.client() as api:
            lost = launch(api, lossy_operation, key="launch-7f3a")
            assert lost.status_code == 503, lost.text  # committed, but the server could not know it
            assert lost.headers["Retry-After"].isdigit()
            (made,) = operation_runs(store, lossy_operation)
            lost_again = launch(api, lossy_operation, key="launch-7f3a")  # the answer to the resend is lost too
            assert lost_again.status_code == 503, lost_again.text

            # runyard's own client (the CLI's) sends again by itself: the answer to its first send is lost (the third).
            with RunyardClient(lossy.url, api.headers["Authorization"].split()[1]) as client:
                launched = client.launch(client_operation, RunType.INCREMENTAL)
            assert [run["id"] for run in operation_runs(store, client_operation)] == [launched.id]

            again = launch(api, lossy_operation, key="launch-7f3a")
            assert again.status_code == 202, again.text
            assert again.json()["id"] == made["id"]
        assert [run["id"] for run in operation_runs(store, lossy_operation)] == [made["id"]]  # no Rejected run either

        launch_dies_with_the_server(crashing, crashed_operation, key="launch-c9e2")
        (committed,) = operation_runs(store, crashed_operation)
        (restarted,) = servers.start(None)
        with restarted.client() as api:
            resent = launch(api, crashed_operation, key="launch-c9e2")
        assert (resent.status_code, resent.json()["id"]) == (202, committed["id"]), resent.text

        completes(store, made["id"], lossy_operation, restarted)
        completes(store, launched.id, client_operation, restarted)
        completes(store, committed["id"], crashed_operation, restarted)
        for operation, run in ((lossy_operation, made), (crashed_operation, committed)):
            assert [found["id"] for found in operation_runs(store, operation)] == [run["id"]]
        for served in (lossy, restarted):
            assert served.process.stop(signal.SIGTERM) == 0, served.process.describe()
        check_invariants(store, servers.home / "warehouse", staging_root=servers.home / "staging")
    finally:
        store.dispose()
