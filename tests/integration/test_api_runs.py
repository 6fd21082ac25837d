"""api-to-table runs end to end: the demo HR source into DuckDB, destructive and incremental."""

from __future__ import annotations

from pathlib import Path

from runyard.demo.source_api import DemoSourceConfig, expected_counts
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from tests.integration.api_harness import DEMO_TABLES, ApiHarness, api_harness

CONFIG = DemoSourceConfig(employees=2000)


def assert_no_duplicates(harness: ApiHarness, tables: tuple[str, ...] = DEMO_TABLES) -> None:
    assert {t: harness.duplicate_ids(t) for t in tables} == dict.fromkeys(tables, 0)


def test_destructive_demo_run_loads_every_table_exactly_once(tmp_path: Path) -> None:
    expected = expected_counts(CONFIG)
    with api_harness(tmp_path, CONFIG) as harness:
        run = harness.run(harness.deploy_demo(), RunType.DESTRUCTIVE)
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
        tasks = harness.tasks(run.id)

        assert harness.counts() == expected
        assert_no_duplicates(harness)

        assert tasks["Data Load"].status is TaskStatus.COMPLETED
        assert dict(tasks["Data Load"].tables) == expected
        assert len(tasks["Data Load"].tables) == len(expected)
        for table, rows in expected.items():
            for name in (f"Process [{table}]", f"{table} Consolidation", f"Ingestion [{table}]"):
                assert tasks[name].status is TaskStatus.COMPLETED, harness.describe(run.id)
                assert tasks[name].tables == ((table, rows),), name
            assert tasks[f"Process [{table}]"].records_processed == rows
        assert not any(name.startswith("Get High Watermark") for name in tasks)  # destructive: no watermark

        loads = harness.data_loads(run.id)
        assert len(loads) == 1
        assert {t["name"]: t["rows"] for t in loads[0]["tables"]} == expected
        assert loads[0]["rows"] == sum(expected.values())

        # The schema drifts halfway: cost_center appears at the second half of the employees.
        half = CONFIG.employees // 2
        assert "cost_center" in harness.column_types("employees")
        assert harness.scalar("SELECT count(*) FROM employees WHERE id <= ? AND cost_center IS NOT NULL", (half,)) == 0
        assert harness.scalar("SELECT count(*) FROM employees WHERE id > ? AND cost_center IS NULL", (half,)) == 0
        assert harness.scalar("SELECT count(cost_center) FROM employees") == CONFIG.employees - half

        columns = harness.column_types("employees")
        assert "department__name" in columns  # nested objects are flattened
        assert harness.scalar("SELECT count(*) FROM employees WHERE department__name IS NULL") == 0
        assert columns["skills"].endswith("[]"), columns["skills"]  # a LIST column
        assert harness.scalar("SELECT count(*) FROM employees WHERE len(skills) > 0") > 0


def test_incremental_run_merges_new_and_retouched_rows_then_destructive_replaces(tmp_path: Path) -> None:
    with api_harness(tmp_path, CONFIG) as harness:
        operation = harness.deploy_demo()
        first = harness.run(operation, RunType.DESTRUCTIVE)
        assert first.status is RunStatus.COMPLETED, harness.describe(first.id)
        before = harness.count("time_off")
        assert before == expected_counts(CONFIG)["time_off"]
        high_watermark = harness.scalar("SELECT high_watermark FROM _runyard.state WHERE table_name = 'time_off'")
        assert high_watermark, "the destructive run saved no high watermark of time_off"

        added = harness.admin("POST", "time_off/add?count=25&update=5")
        assert added["added"] == 25
        assert added["updated"] == 5

        second = harness.run(operation, RunType.INCREMENTAL)
        assert second.status is RunStatus.COMPLETED, harness.describe(second.id)
        tasks = harness.tasks(second.id)
        watermark_text = " ".join(m.text for m in tasks["Get High Watermark [time_off]"].messages)
        assert "high watermark" in watermark_text.lower(), watermark_text
        assert str(high_watermark) in watermark_text, watermark_text
        assert not any(n.startswith("Get High Watermark [employees]") for n in tasks)  # no cursor field there
        process = tasks["Process [time_off]"]
        assert process.tables == (("time_off", 30),), harness.describe(second.id)
        assert process.records_processed == 30

        assert harness.count("time_off") == before + 25
        assert harness.count("time_off") == harness.source.counts()["time_off"]
        assert_no_duplicates(harness)
        assert harness.counts(("employees", "departments")) == {"employees": 2000, "departments": 50}
        assert len(harness.data_loads(second.id)) == 1

        third = harness.run(operation, RunType.DESTRUCTIVE)
        assert third.status is RunStatus.COMPLETED, harness.describe(third.id)
        assert harness.counts() == harness.source.counts()
        assert harness.counts() == expected_counts(CONFIG, time_off_added=25)
        assert_no_duplicates(harness)


def test_incremental_run_with_nothing_new_leaves_time_off_and_its_watermark_as_they_were(tmp_path: Path) -> None:
    with api_harness(tmp_path, CONFIG) as harness:
        operation = harness.deploy_demo()
        first = harness.run(operation, RunType.DESTRUCTIVE)
        assert first.status is RunStatus.COMPLETED, harness.describe(first.id)
        state = "SELECT high_watermark FROM _runyard.state WHERE table_name = 'time_off'"
        high_watermark = harness.scalar(state)

        second = harness.run(operation, RunType.INCREMENTAL)
        assert second.status is RunStatus.COMPLETED, harness.describe(second.id)
        assert harness.task(second.id, "Process [time_off]").tables == (("time_off", 0),)
        assert harness.counts() == expected_counts(CONFIG)
        assert_no_duplicates(harness)
        assert harness.scalar(state) == high_watermark
