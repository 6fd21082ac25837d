"""api-to-table runs against sources that answer the wrong thing: each failure says what it found."""

from __future__ import annotations

import json
from pathlib import Path

from runyard.demo.source_api import DemoSourceConfig, expected_counts
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from tests.integration.api_harness import DEMO_TABLES, ApiHarness, StaticJsonServer, api_harness, demo_hr_text

INJECTION_KEY = 'a"; DROP TABLE x; --'


def messages(harness: ApiHarness, run_id: int, task: str) -> str:
    return " | ".join(m.text for m in harness.task(run_id, task).messages)


def custom_spec(configuration_id: str, base_url: str, endpoints: str) -> str:
    return (
        "configuration_type: api-to-table\n"
        f"configuration_id: {configuration_id}\n"
        "environment: DEV\n"
        f'base_url: "{base_url}"\n'
        "endpoints:\n" + endpoints
    )


def test_an_html_answer_fails_the_run_saying_it_was_html(tmp_path: Path) -> None:
    with api_harness(tmp_path, DemoSourceConfig(html_endpoints=("departments",))) as harness:
        run = harness.run(harness.deploy_demo(), RunType.DESTRUCTIVE)
        assert run.status is RunStatus.FAILED, harness.describe(run.id)
        process = harness.task(run.id, "Process [departments]")
        assert process.status is TaskStatus.FAILED
        text = messages(harness, run.id, "Process [departments]")
        assert "answered HTML" in text, text
        assert "departments" in text, text
        assert harness.task(run.id, "Process [employees]").status is TaskStatus.COMPLETED
        assert not set(DEMO_TABLES) & harness.table_names()


def test_a_record_selector_that_matches_nothing_says_what_the_body_holds(tmp_path: Path) -> None:
    with api_harness(tmp_path) as harness:
        endpoints = "  - {name: departments, path: /departments, records: nope}\n"
        operation = harness.deploy_text(custom_spec("bad-selector", harness.source.base_url, endpoints))
        run = harness.run(operation, RunType.DESTRUCTIVE)
        assert run.status is RunStatus.FAILED, harness.describe(run.id)
        text = messages(harness, run.id, "Process [departments]")
        assert "'nope'" in text, text
        # Without page parameters the demo answers cursor style: {"data": [...], "next_cursor": ...}.
        assert "an object with keys ['data', 'next_cursor']" in text, text
        assert "departments" not in harness.table_names()


def test_non_object_records_fail_and_odd_keys_become_plain_columns(tmp_path: Path) -> None:
    bodies = {
        "/numbers": b"[1, 2, 3]",
        "/weird": json.dumps([{"id": 1, INJECTION_KEY: "kept"}, {"id": 2, INJECTION_KEY: None}]).encode(),
        "/x": json.dumps([{"id": 7}]).encode(),
    }
    with api_harness(tmp_path) as harness, StaticJsonServer(bodies) as static:
        demo = harness.run(harness.deploy_demo(), RunType.DESTRUCTIVE)
        assert demo.status is RunStatus.COMPLETED, harness.describe(demo.id)

        numbers = harness.deploy_text(custom_spec("numbers", static.base_url, "  - {name: numbers, path: /numbers}\n"))
        run = harness.run(numbers, RunType.DESTRUCTIVE)
        assert run.status is RunStatus.FAILED, harness.describe(run.id)
        text = messages(harness, run.id, "Process [numbers]")
        assert "not JSON objects" in text, text
        assert "int" in text, text
        assert "numbers" not in harness.table_names()

        # A table named x first, so that a key which escaped its quoting would have something to drop.
        endpoints = "  - {name: x, path: /x}\n  - {name: weird, path: /weird}\n"
        weird = harness.run(harness.deploy_text(custom_spec("weird", static.base_url, endpoints)), RunType.DESTRUCTIVE)
        assert weird.status is RunStatus.COMPLETED, harness.describe(weird.id)
        assert INJECTION_KEY in harness.column_types("weird")
        assert harness.query('SELECT id, "a""; DROP TABLE x; --" FROM weird ORDER BY id') == [(1, "kept"), (2, None)]
        assert harness.query("SELECT id FROM x") == [(7,)]
        assert harness.counts() == expected_counts(DemoSourceConfig())
        assert harness.table_names() == {*DEMO_TABLES, "x", "weird"}


def test_an_optional_endpoint_that_fails_completes_the_run_with_errors(tmp_path: Path) -> None:
    with api_harness(tmp_path, DemoSourceConfig(html_endpoints=("departments",))) as harness:
        text = demo_hr_text(harness.source.base_url).replace("configuration_id: demo-hr", "configuration_id: optional")
        marker = "    records: items\n"
        assert text.count(marker) == 1
        text = text.replace(marker, marker + "    required: false\n")
        run = harness.run(harness.deploy_text(text), RunType.DESTRUCTIVE)
        assert run.status is RunStatus.COMPLETED_WITH_ERRORS, harness.describe(run.id)
        tasks = harness.tasks(run.id)
        assert tasks["Process [departments]"].status is TaskStatus.FAILED
        assert tasks["Data Load"].status in (TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_ERRORS)
        load_text = " | ".join(m.text for m in tasks["Data Load"].messages)
        assert "departments was not loaded" in load_text, load_text

        expected = expected_counts(DemoSourceConfig())
        assert harness.table_names() == {"employees", "time_off"}
        assert harness.counts(("employees", "time_off")) == {t: expected[t] for t in ("employees", "time_off")}
        assert dict(tasks["Data Load"].tables) == {t: expected[t] for t in ("employees", "time_off")}
        loads = harness.data_loads(run.id)
        assert len(loads) == 1
        assert {t["name"] for t in loads[0]["tables"]} == {"employees", "time_off"}
