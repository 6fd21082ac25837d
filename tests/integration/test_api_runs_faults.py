"""api-to-table runs against a faulty source: retried 429s and 500s, a malformed page, then a retry run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from runyard.demo.source_api import DemoSourceConfig, expected_counts
from runyard.domain.statuses import RunStatus, RunType, TaskStatus, Trigger
from tests.integration.api_harness import DEMO_TABLES, api_harness, demo_hr_text


def small_pages_spec(source_url: str) -> str:
    """demo-hr with ten times smaller pages (about 60 in all), so 5 % fault rates pick some of them."""
    text = demo_hr_text(source_url)
    assert text.count("limit: 500") == 2
    assert text.count("page_size: 20") == 1
    text = text.replace("limit: 500", "limit: 50").replace("page_size: 20", "page_size: 5")
    return text.replace("configuration_id: demo-hr", "configuration_id: demo-hr-small-pages")


def test_throttled_and_failing_pages_are_retried_and_the_run_completes(tmp_path: Path) -> None:
    config = DemoSourceConfig(employees=2000, fail_rate=0.05, throttle_rate=0.05, retry_after=0)
    with api_harness(tmp_path, config) as harness:
        run = harness.run(harness.deploy_text(small_pages_spec(harness.source.base_url)), RunType.DESTRUCTIVE)
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
        tasks = harness.tasks(run.id)
        stats = harness.source_stats()

        faulty = {name: s["status_429"] + s["status_500"] for name, s in stats.items()}
        assert sum(faulty.values()) > 0, f"the source served no 429 or 500 (pick other rates): {stats}"
        assert sum(s["status_429"] for s in stats.values()) > 0, stats
        assert sum(s["status_500"] for s in stats.values()) > 0, stats
        for table in DEMO_TABLES:
            warnings = [m.text for m in tasks[f"Process [{table}]"].messages if m.level == "warning"]
            # One warning per retried request, each saying what happened and that it was retried.
            assert len(warnings) == faulty[table], (table, warnings, stats[table])
            for text in warnings:
                assert "retry" in text, text
            if stats[table]["status_429"]:
                assert any("429" in text for text in warnings), warnings
            if stats[table]["status_500"]:
                assert any("500" in text for text in warnings), warnings

        assert harness.counts() == expected_counts(config)
        assert {t: harness.duplicate_ids(t) for t in DEMO_TABLES} == dict.fromkeys(DEMO_TABLES, 0)


def test_malformed_page_fails_the_run_and_the_retry_reuses_the_other_extractions(tmp_path: Path) -> None:
    config = DemoSourceConfig(employees=2000, malformed_pages=(("employees", 3),))
    with api_harness(tmp_path, config) as harness:
        operation = harness.deploy_demo()
        failed = harness.run(operation, RunType.DESTRUCTIVE)
        assert failed.status is RunStatus.FAILED, harness.describe(failed.id)
        tasks = harness.tasks(failed.id)
        process = tasks["Process [employees]"]
        assert process.status is TaskStatus.FAILED
        text = " ".join(m.text for m in process.messages)
        assert "employees" in text, text
        assert "page 3" in text, text
        assert "malformed JSON" in text, text
        assert harness.source_stats()["employees"]["malformed"] >= 1
        for table in ("departments", "time_off"):
            assert tasks[f"Process [{table}]"].status is TaskStatus.COMPLETED, harness.describe(failed.id)
        assert tasks["Data Load"].status is not TaskStatus.COMPLETED
        assert not set(DEMO_TABLES) & harness.table_names()  # nothing reached the warehouse

        harness.admin("DELETE", "faults")
        retry = harness.runtime.runs.retry(failed.id)
        assert retry.retry_of == failed.id
        assert retry.trigger is Trigger.RETRY
        done = harness.wait(retry.id)
        assert done.status is RunStatus.COMPLETED, harness.describe(retry.id)
        retried = harness.tasks(retry.id)
        for table in ("departments", "time_off"):
            task = retried[f"Process [{table}]"]
            original = tasks[f"Process [{table}]"]
            assert task.status is TaskStatus.COMPLETED
            assert task.reused_from == original.id
            assert any(m.text.startswith("Reused the output") for m in task.messages), task.messages
            assert harness.attempts(task.id) == 0  # it was not run again
        assert harness.attempts(retried["Process [employees]"].id) >= 1
        assert retried["Process [employees]"].tables == (("employees", 2000),)

        assert harness.counts() == expected_counts(config)
        assert {t: harness.duplicate_ids(t) for t in DEMO_TABLES} == dict.fromkeys(DEMO_TABLES, 0)
        assert dict(retried["Data Load"].tables) == expected_counts(config)
        assert len(harness.data_loads(retry.id)) == 1
        assert harness.data_loads(failed.id) == []


def test_a_retry_runs_again_what_the_retention_sweep_removed(tmp_path: Path) -> None:
    config = DemoSourceConfig(employees=300, malformed_pages=(("employees", 1),))
    with api_harness(tmp_path, config) as harness:
        first = harness.run(harness.deploy_demo(), RunType.DESTRUCTIVE)
        assert first.status is RunStatus.FAILED, harness.describe(first.id)
        second = harness.wait(harness.runtime.runs.retry(first.id).id)  # the page is still malformed
        assert second.status is RunStatus.FAILED, harness.describe(second.id)
        reused = harness.tasks(second.id)["Process [departments]"]
        assert reused.reused_from == harness.tasks(first.id)["Process [departments]"].id
        harness.admin("DELETE", "faults")

        # The sweep's clock between the two runs' ends: the first run is past the retention, the second is not.
        first_end, second_end = first.completed_at, second.completed_at
        assert first_end is not None
        assert second_end is not None
        assert first_end < second_end
        now = first_end + timedelta(days=harness.settings.staging_retention_days) + (second_end - first_end) / 2
        removed = harness.scheduler.sweep_staged_files(now)
        assert [run.run_key for run in removed] == [first.run_key]

        third = harness.wait(harness.runtime.runs.retry(second.id).id)
        assert third.status is RunStatus.COMPLETED, harness.describe(third.id)
        retried = harness.tasks(third.id)
        for table in DEMO_TABLES:  # the first run's outputs are gone: every extraction ran again
            task = retried[f"Process [{table}]"]
            assert task.reused_from is None, (table, task.messages)
            assert harness.attempts(task.id) >= 1
        assert harness.counts() == expected_counts(config)
        assert {t: harness.duplicate_ids(t) for t in DEMO_TABLES} == dict.fromkeys(DEMO_TABLES, 0)
