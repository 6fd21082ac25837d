"""Canceling an api-to-table run during extraction: nothing reaches the warehouse, and it can run again."""

from __future__ import annotations

import time
from pathlib import Path

from runyard.demo.source_api import DemoSourceConfig, expected_counts
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from tests.integration.api_harness import DEMO_TABLES, api_harness

CANCEL_TIMEOUT = 15.0


def test_cancel_during_extraction_loads_nothing_and_the_operation_runs_again(tmp_path: Path) -> None:
    # Every page waits 200 ms: employees' 4 pages take about a second.
    config = DemoSourceConfig(employees=2000, slow_rate=1, slow_ms=200)
    with api_harness(tmp_path, config) as harness:
        operation = harness.deploy_demo()
        run = harness.launch(operation, RunType.DESTRUCTIVE)
        harness.wait_task(run.id, "Process [employees]", TaskStatus.RUNNING, timeout=30)
        canceled_at = time.monotonic()
        requested = harness.runtime.runs.cancel(run.id)
        assert requested.status in (RunStatus.CANCELING, RunStatus.CANCELED)
        assert requested.cancel_requested_at is not None

        final = harness.wait(run.id, timeout=CANCEL_TIMEOUT)
        assert final.status is RunStatus.CANCELED, harness.describe(run.id)
        assert time.monotonic() - canceled_at < 5, "the extraction did not stop between pages"
        tasks = harness.tasks(run.id)
        assert tasks["Process [employees]"].status is TaskStatus.CANCELED, harness.describe(run.id)
        assert tasks["Data Load"].status is TaskStatus.CANCELED
        assert all(task.status.is_final for task in tasks.values())
        assert harness.source_stats()["employees"]["requests"] < 4, "the whole endpoint was extracted anyway"

        assert not set(DEMO_TABLES) & harness.table_names()  # a first run: the tables do not exist
        assert harness.query("SELECT count(*) FROM _runyard.loads") == [(0,)]
        assert harness.data_loads(run.id) == []

        harness.admin("DELETE", "faults")
        again = harness.run(operation, RunType.DESTRUCTIVE)
        assert again.status is RunStatus.COMPLETED, harness.describe(again.id)
        assert harness.counts() == expected_counts(config)
        assert {t: harness.duplicate_ids(t) for t in DEMO_TABLES} == dict.fromkeys(DEMO_TABLES, 0)
