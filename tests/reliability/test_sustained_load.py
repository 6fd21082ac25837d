"""R23: under sustained load the API stays correct, and the server's memory stays flat.

A real `runyard serve` process (HTTP, worker and scheduler in one) is hammered, on each store with its default
HTTP processes (SQLite, the embedded default: one per CPU; PostgreSQL: one more), for LOAD_SECONDS by CLIENTS
threads, each with its own connection, with a mix of what clients do all day: lists of runs, one run and its tasks,
the running tasks' metrics (spec 001), a job's status (spec 002), the operations, and launches of two operations,
which the server's worker runs meanwhile. What must hold:

- no answer is a 5xx, and no request fails at the transport (refused, reset);
- every read answers 200; every launch answers as the API documents: 202 (a run), 409 (another run is active: the
  Rejected run names it) or 429 (too many rejected launches this minute: with Retry-After);
- every run that was accepted ends Completed once the load stops (the worker kept up, no run was lost);
- the server's memory (VmRSS of the process and its children) at the end is less than RSS_GROWTH times what it was
  after the warm-up: a ratio, never a speed.

How many requests are made depends on the machine: the test asserts that each kind was made, not how fast.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from runyard.domain.statuses import RUN_ACTIVE, RunStatus
from runyard.operations.loader import load_text
from runyard.services.operations import deploy
from runyard.store.database import Store
from tests.integration.cli_helpers import Background, Runyard, answers_health, free_port
from tests.reliability.procs import wait_until

pytestmark = pytest.mark.slow

LOAD_SECONDS = 15.0
CLIENTS = 4
WARMUP_REQUESTS = 100  # the baseline RSS is read once this many requests were answered
RSS_GROWTH = 1.5  # generous: it catches memory kept per request (tens of MB over the load), not a slow drip
STARTUP_SECONDS = 30.0
SETTLE_SECONDS = 60.0  # a bound on the worker finishing the accepted runs once the load stops
API = "/api/v1"
READ_KINDS = ("runs", "run", "tasks", "metrics", "job", "operations")
ACTIVE = {status.value for status in RUN_ACTIVE}

OPERATIONS = """\
configuration_type: tasks
configuration_id: load-quick
tasks:
  - {name: "First", executor: noop}
  - {name: "Second", executor: noop, depends_on: ["First"]}
---
configuration_type: tasks
configuration_id: load-sleepy
tasks:
  - {name: "Nap", executor: sleep, params: {seconds: 0.3}}
"""


# --------------------------------------------------------------------------------------------------
# The server and its memory


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and of all its descendants, in KiB (a process that is gone counts 0)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = " ".join(p.read_text() for p in Path(f"/proc/{current}/task").glob("*/children"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
        total += int(line.split()[1]) if line else 0
        pending.extend(int(child) for child in children.split())
    return total


@dataclass
class Served:
    url: str
    process: Background
    token: str

    @property
    def pid(self) -> int:
        return self.process.process.pid


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Served]:
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_DATABASE_URL": database_url})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = cli.spawn("serve", "--port", str(port), log=tmp_path / "serve")
    try:
        wait_until(lambda: answers_health(url, process), timeout=STARTUP_SECONDS, what=f"{url}/healthz")

        def printed_password() -> str | None:
            assert process.alive(), process.describe()
            for line in process.stdout.splitlines():
                if line.startswith("administrator login: admin"):
                    return line.split("password:")[1].split()[0]
            return None

        password = wait_until(printed_password, timeout=STARTUP_SECONDS, what="the administrator's password")
        store = Store(database_url)  # deployed as `runyard deploy` does, into the account serve created
        try:
            assert len(deploy(store, load_text(OPERATIONS))) == 2
        finally:
            store.dispose()
        answer = httpx.post(f"{url}{API}/auth/token", json={"login": "admin", "password": password}, timeout=10)
        assert answer.status_code == 200, answer.text
        yield Served(url, process, answer.json()["access_token"])
    finally:
        code = process.stop(signal.SIGTERM)
        assert code == 0, process.describe()


# --------------------------------------------------------------------------------------------------
# The clients


@dataclass
class Tally:
    """What every client saw, shared under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status) -> how many
    problems: list[str] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)  # ids of the runs launches started
    known_runs: list[int] = field(default_factory=list)

    def total(self) -> int:
        with self.lock:
            return sum(self.answers.values())

    def note(self, kind: str, response: httpx.Response) -> None:
        with self.lock:
            self.answers[kind, response.status_code] += 1
            if response.status_code >= 500:
                self.problems.append(f"{kind}: {response.request.url} answered {response.status_code}: {response.text}")

    def a_run(self, turn: int) -> int | None:
        with self.lock:
            return self.known_runs[turn % len(self.known_runs)] if self.known_runs else None


def client(served: Served, operations: list[int], tally: Tally, number: int, until: float) -> None:
    """One client: its own connection, one request after another until `until`, cycling through the mix."""
    headers = {"Authorization": f"Bearer {served.token}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as http:
        turn = number
        while time.monotonic() < until:
            turn += 1
            try:
                step(http, operations, tally, turn)
            except httpx.TransportError as error:
                with tally.lock:
                    tally.problems.append(f"turn {turn}: {type(error).__name__}: {error}")


def step(http: httpx.Client, operations: list[int], tally: Tally, turn: int) -> None:
    kind = ("launch", *READ_KINDS)[turn % (len(READ_KINDS) + 1)]
    run_id = tally.a_run(turn)
    if kind == "launch":
        response = http.post(f"{API}/operations/{operations[turn % 2]}/runs", json={"type": "incremental"})
        tally.note(kind, response)
        check_launch(response, tally)
        return
    if kind in ("run", "tasks", "job") and run_id is None:
        kind = "runs"
    paths = {
        "runs": f"{API}/runs?page_size=20",
        "run": f"{API}/runs/{run_id}",
        "tasks": f"{API}/runs/{run_id}/tasks",
        "metrics": "/etl/rest/v1/tasks/",
        "job": f"{API}/bulk_metadata/job/?id={run_id}",
        "operations": f"{API}/operations",
    }
    response = http.get(paths[kind])
    tally.note(kind, response)
    if response.status_code != 200:
        with tally.lock:
            tally.problems.append(f"{kind}: {response.request.url} answered {response.status_code}: {response.text}")


def check_launch(response: httpx.Response, tally: Tally) -> None:
    body = response.json()
    with tally.lock:
        if response.status_code == 202:
            tally.accepted.append(body["id"])
            tally.known_runs.append(body["id"])
        elif response.status_code == 409:
            if "run" in body:  # another run is active: the Rejected run was recorded and is shown
                tally.known_runs.append(body["run"]["id"])
        elif response.status_code == 429:
            if not response.headers.get("retry-after", "").isdigit():
                tally.problems.append(f"launch: 429 without a Retry-After: {response.headers}")
        else:
            tally.problems.append(f"launch: answered {response.status_code}: {response.text}")


def runs_with(http: httpx.Client, status: str) -> set[int]:
    """The ids of every run in `status`, through the API's list (page after page)."""
    found: set[int] = set()
    for page in range(1, 1000):
        answer = http.get(f"{API}/runs", params={"status": status, "page_size": 200, "page": page})
        assert answer.status_code == 200, answer.text
        found |= {run["id"] for run in answer.json()["items"]}
        if len(found) >= answer.json()["total"]:
            return found
    raise AssertionError(f"more pages of {status} runs than expected")


# --------------------------------------------------------------------------------------------------
# The test


def test_sustained_reads_and_launches_never_fail_and_memory_stays_flat(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.token}"}
    listed = httpx.get(f"{served.url}{API}/operations", headers=headers, timeout=10).json()
    operations = sorted(operation["id"] for operation in listed)
    assert len(operations) == 2, listed

    tally = Tally()
    until = time.monotonic() + LOAD_SECONDS
    clients = [
        threading.Thread(target=client, args=(served, operations, tally, n, until), name=f"load-{n}", daemon=True)
        for n in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    wait_until(lambda: tally.total() >= WARMUP_REQUESTS, timeout=LOAD_SECONDS, what="the warm-up requests")
    warm = rss_kib(served.pid)
    for thread in clients:
        thread.join(LOAD_SECONDS + 60)
        assert not thread.is_alive(), f"{thread.name} is still sending"
    end = rss_kib(served.pid)
    assert warm > 0, f"no VmRSS read for process {served.pid}"

    assert not tally.problems, "\n".join(tally.problems[:20])
    statuses = {status for (_, status) in tally.answers}
    assert statuses <= {200, 202, 409, 429}, tally.answers
    kinds = {kind for (kind, _) in tally.answers}
    assert kinds == {"launch", *READ_KINDS}, tally.answers  # every kind of request was made
    assert tally.answers["launch", 202] >= 2, tally.answers  # runs were started during the load ...
    assert tally.answers["launch", 409] + tally.answers["launch", 429] >= 1, tally.answers  # ... and refused

    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as http:
        wait_until(
            lambda: not any(runs_with(http, status) for status in sorted(ACTIVE)),
            timeout=SETTLE_SECONDS,
            what="the worker to end every run launched during the load",
        )
        completed = runs_with(http, RunStatus.COMPLETED.value)
    assert set(tally.accepted) <= completed, sorted(set(tally.accepted) - completed)

    assert end < warm * RSS_GROWTH, f"RSS grew from {warm} KiB after the warm-up to {end} KiB at the end"
    assert "Traceback" not in served.process.stderr, served.process.stderr[-3000:]
