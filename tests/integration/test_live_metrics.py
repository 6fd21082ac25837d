"""Live metrics (spec 001) over real HTTP while an api-to-table extraction runs against a slowed demo source.

The heartbeat is set to 20 s, so everything seen while the extraction runs was written by the worker's metrics
flusher (RUNYARD_METRICS_SECONDS, 1 s by default).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from runyard.app import create_app
from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.settings import Settings
from tests.integration.rest_harness import ADMIN_PASSWORD, HTTP_TIMEOUT, all_items, cheap_hashing, serving, wait_for

EMPLOYEES = 800
PAGE = 20  # 40 pages, each held 150 ms by the source: about 6 s of extraction
SPACING = 1.5  # seconds between two polls: more than one flush interval
EXTRACT = "Process [employees]"


def spec_text(source_url: str) -> str:
    return f"""\
configuration_type: api-to-table
configuration_id: slow-employees
base_url: "{source_url}"
endpoints:
  - name: employees
    path: /employees
    records: data
    pagination: {{style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, limit: {PAGE}}}
    primary_key: id
"""


@contextmanager
def serving_runyard(home: Path, database_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    """runyard on `database_url` behind real HTTP, with a worker whose heartbeat is too slow to write metrics
    during the test; an administrator's client."""
    settings = Settings(
        home=home,
        database_url=database_url,
        lease_seconds=60,
        heartbeat_seconds=20,
        poll_seconds=0.1,
        admin_password=SecretStr(ADMIN_PASSWORD),
    )
    with cheap_hashing():
        store = open_store(settings)
        bootstrap_admin(store, ADMIN_PASSWORD)
        runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
        worker = runtime.worker("live")
        worker.start()
        try:
            with serving(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as client:
                answer = client.post("/api/v1/auth/token", json={"login": "admin", "password": ADMIN_PASSWORD})
                assert answer.status_code == 200, answer.text
                client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
                yield runtime, client
        finally:
            worker.stop(1.0)
            runtime.close()


def running_extract(client: httpx.Client, run_id: int) -> dict[str, Any] | None:
    response = client.get(f"/etl/rest/v1/tasks/{run_id}/", params={"type": "extract"})
    assert response.status_code == 200, response.text
    found = [task for task in response.json() if task["name"] == EXTRACT]
    return found[0] if found else None


def samples_while_extracting(client: httpx.Client, run_id: int) -> list[dict[str, Any]]:
    """Spec 001's answer for the extraction, every SPACING seconds, from its first records until it ends."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        asked = time.monotonic()
        task = running_extract(client, run_id)
        if task is None and samples:
            return samples
        if task is not None and task["recordsProcessed"] > 0:
            samples.append(task)
        time.sleep(max(0.0, SPACING - (time.monotonic() - asked)) if samples else 0.05)
    raise AssertionError(f"the extraction of run {run_id} did not end within 60 s")


def test_spec_001_shows_records_rising_every_second_with_latencies(tmp_path: Path, database_url: str) -> None:
    source = DemoSourceServer(DemoSourceConfig(employees=EMPLOYEES, slow_rate=1.0, slow_ms=150))
    source.start()
    try:
        with serving_runyard(tmp_path / "home", database_url) as (runtime, admin):
            (deployed,) = deploy(runtime.store, load_text(spec_text(source.base_url)), runtime.registry)
            launched = admin.post(f"/api/v1/operations/{deployed.operation_id}/runs", json={"type": "incremental"})
            assert launched.status_code == 202, launched.text
            run_id = launched.json()["id"]

            samples = samples_while_extracting(admin, run_id)
            wait_for(lambda: admin.get(f"/api/v1/runs/{run_id}").json()["completed_at"], timeout=60, what="the run")
            tasks = {task["name"]: task for task in all_items(admin, f"/api/v1/runs/{run_id}/tasks")}
    finally:
        source.stop()

    seen = [sample["recordsProcessed"] for sample in samples]
    # Live: the count never goes back, and rises more than once while the extraction runs (the flusher writes it
    # every second). Not a rise at every poll: a poll 1.5 s after another says nothing new when the machine starved
    # the extraction's thread meanwhile.
    assert all(later >= earlier for earlier, later in itertools.pairwise(seen)), seen
    assert len(set(seen)) >= 3, seen
    assert sum(sample["recordsProcessedSinceLastCheck"] for sample in samples) == seen[-1]
    assert tasks[EXTRACT]["records_processed"] == EMPLOYEES  # what was not flushed live came with the task's end
    assert tasks[EXTRACT]["latency_ms"] >= 150  # the source's slow pages: the native API shows the last latency
    for sample in samples:
        assert sample["code"].startswith(f"Extracting: {sample['recordsProcessed']:,} records, "), sample
        assert sample["lastTimeRecordsReceivedDate"] is not None
        if sample["recordsProcessed"] > 0:  # a page's latency is recorded before its records are counted
            latencies = [sample[key] for key in ("latency", "minLatency", "avgLatency", "maxLatency")]
            assert all(isinstance(value, int | float) for value in latencies), sample
            assert sample["minLatency"] <= sample["avgLatency"] <= sample["maxLatency"]
            assert "page latency" in sample["code"]
