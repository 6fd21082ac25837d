"""table-to-table end to end on the embedded default: a real runtime (SQLite store, worker, scheduler) running SQL
steps in the DuckDB warehouse over the tables a real demo-hr run loaded from the demo HR API on loopback."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from runyard.demo import demo_specs
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.engine.context import TaskContext, TaskIdentity, TaskOutput
from runyard.errors import ConfigError
from runyard.operations.loader import load_text
from runyard.operations.table_to_table.executors import publish
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView
from runyard.warehouse.base import LOADED_AT_COLUMN
from tests.integration.api_harness import ApiHarness, api_harness, wait_for


@pytest.fixture(scope="module")
def hr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """One runtime for the module, with the demo HR tables loaded by a demo-hr run."""
    with api_harness(tmp_path_factory.mktemp("t2t")) as harness:
        run = harness.run(harness.deploy_demo())
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
        yield harness


def operation(name: str, steps: str, *, parameters: str = "", environment: str = "DEV") -> str:
    return (
        f"configuration_type: table-to-table\nconfiguration_id: {name}\nenvironment: {environment}\n"
        f"{parameters}steps:\n{textwrap.indent(textwrap.dedent(steps), '  ')}"
    )


def run_text(hr: ApiHarness, text: str, **launch: object) -> RunView:
    operation_id = hr.deploy_text(text)
    view = hr.runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=RunType.DESTRUCTIVE, **launch))  # type: ignore[arg-type]
    return hr.wait(view.id)


def publish_table(hr: ApiHarness, name: str, sql: str) -> None:
    hr.query(f"CREATE OR REPLACE TABLE main.{name} AS {sql}")


def rows(hr: ApiHarness, table: str) -> list[tuple[object, ...]]:
    """The table's data, without the load time every loaded row carries."""
    return hr.query(f"SELECT COLUMNS(lambda c: c <> '{LOADED_AT_COLUMN}') FROM main.{table} ORDER BY ALL")


def staging_tables(hr: ApiHarness, run_key: str) -> list[str]:
    found = hr.query(
        "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?)", (f"_runyard_staging__{run_key}__",)
    )
    return [str(name) for (name,) in found]


def test_the_demo_summaries_run_their_steps_in_dependency_order_and_publish_every_table(hr: ApiHarness) -> None:
    publish_table(hr, "headcount_by_department", "SELECT 'stale' AS department, 0 AS headcount")
    (spec,) = [s for s in demo_specs(hr.source.base_url) if s.configuration_type == "table-to-table"]
    deployed = deploy(hr.runtime.store, [spec], hr.runtime.registry)
    assert deployed[0].configuration_id == "demo-hr-summaries_DEV"

    run = hr.run(deployed[0].operation_id)

    assert run.status is RunStatus.COMPLETED, hr.describe(run.id)
    tasks = hr.tasks(run.id)
    assert list(tasks) == ["headcount_by_department", "time_off_by_department", "department_summary", "Data Load"]
    summary, load = tasks["department_summary"], tasks["Data Load"]
    for upstream in ("headcount_by_department", "time_off_by_department"):
        assert tasks[upstream].completed_at is not None
        assert summary.started_at is not None
        assert tasks[upstream].completed_at <= summary.started_at
        assert tasks[upstream].metrics_type == "task"
    assert summary.completed_at is not None
    assert load.started_at is not None
    assert summary.completed_at <= load.started_at
    # The summary read this run's headcount table, not the stale published one.
    departments = int(hr.scalar("SELECT count(DISTINCT department__id) FROM employees"))
    assert hr.count("department_summary") == departments
    assert hr.scalar("SELECT sum(headcount) FROM department_summary") == hr.count("employees")
    assert hr.scalar("SELECT count(*) FROM headcount_by_department WHERE department = 'stale'") == 0
    # Tables column: each step its target and row count; the Data Load every table; the Data Loads page.
    assert summary.tables == (("department_summary", departments),)
    assert dict(load.tables) == {
        "headcount_by_department": departments,
        "time_off_by_department": hr.count("time_off_by_department"),
        "department_summary": departments,
    }
    (data_load,) = hr.data_loads(run.id)
    assert [table["name"] for table in data_load["tables"]] == [
        "headcount_by_department",
        "time_off_by_department",
        "department_summary",
    ]
    assert staging_tables(hr, run.run_key) == []
    assert hr.scalar("SELECT DISTINCT as_of FROM department_summary") == run.created_at.strftime("%Y%m%d")


def test_a_failing_middle_step_fails_the_run_with_the_database_message_and_publishes_nothing(hr: ApiHarness) -> None:
    for table in ("chain_a", "chain_b", "chain_c"):
        publish_table(hr, table, f"SELECT '{table} before' AS state")
    before = {table: rows(hr, table) for table in ("chain_a", "chain_b", "chain_c")}
    text = operation(
        "chain",
        """\
        - target: chain_a
          sql: SELECT 'a after' AS state, id FROM employees
        - target: chain_b
          sql: |
            SELECT state,
                   id
            FROM chain_a WHERE no_such_column > 0
        - target: chain_c
          sql: SELECT state FROM chain_b
        """,
    )

    run = run_text(hr, text)

    assert run.status is RunStatus.FAILED
    tasks = hr.tasks(run.id)
    assert tasks["chain_a"].status is TaskStatus.COMPLETED
    assert tasks["chain_b"].status is TaskStatus.FAILED
    (message,) = [m.text for m in tasks["chain_b"].messages if m.level == "error"]
    assert "line 3 of its SQL: FROM chain_a WHERE no_such_column > 0" in message
    assert 'Referenced column "no_such_column" not found' in message
    assert tasks["chain_c"].status is TaskStatus.SKIPPED
    assert tasks["Data Load"].status is TaskStatus.SKIPPED
    assert {table: rows(hr, table) for table in before} == before
    assert hr.data_loads(run.id) == []
    # chain_a was built, never published: the scheduler drops what the ended run staged.
    wait_for(lambda: staging_tables(hr, run.run_key) == [] or None, timeout=30, what="the run's staging to go")


def test_a_cancel_stops_the_running_statement_and_publishes_nothing(hr: ApiHarness) -> None:
    publish_table(hr, "slow_sum", "SELECT -1 AS total")
    text = operation(
        "slow",
        """\
        - target: slow_sum
          sql: SELECT sum(a.range * b.range) AS total FROM range(200000) AS a, range(200000) AS b
        """,
    )
    operation_id = hr.deploy_text(text)
    run = hr.launch(operation_id)
    hr.wait_task(run.id, "slow_sum", TaskStatus.RUNNING)

    hr.runtime.runs.cancel(run.id)
    ended = hr.wait(run.id, timeout=20)

    assert ended.status is RunStatus.CANCELED
    assert hr.task(run.id, "slow_sum").status is TaskStatus.CANCELED
    assert hr.task(run.id, "Data Load").status in (TaskStatus.CANCELED, TaskStatus.SKIPPED)
    assert rows(hr, "slow_sum") == [(-1,)]
    wait_for(lambda: staging_tables(hr, run.run_key) == [] or None, timeout=30, what="the run's staging to go")


def test_the_environment_suffix_is_added_once_per_environment(hr: ApiHarness) -> None:
    steps = "- target: suffix_check\n  sql: SELECT 1 AS one\n"
    store, registry = hr.runtime.store, hr.runtime.registry

    dev = deploy(store, load_text(operation("iowa_prepare", steps)), registry)
    prod = deploy(store, load_text(operation("iowa_prepare", steps, environment="PROD")), registry)
    again = deploy(store, load_text(operation("iowa_prepare_DEV", steps)), registry)

    assert [d.configuration_id for d in (*dev, *prod)] == ["iowa_prepare_DEV", "iowa_prepare_PROD"]
    assert again[0].operation_id == dev[0].operation_id


def test_a_value_that_looks_like_sql_stays_a_value(hr: ApiHarness) -> None:
    hostile = "x' OR '1'='1'; DROP TABLE employees; --"
    text = operation(
        "injection",
        """\
        - target: injection_check
          sql: |
            SELECT count(*) AS matches, {{ who }} AS asked, {{ FD_DATE }} AS day
            FROM employees WHERE last_name = {{ who }} OR email = {{ who }}
        """,
        parameters=f'parameters:\n  who: "{hostile}"\n',
    )
    employees = hr.count("employees")

    run = run_text(hr, text, execution_date=date(2024, 2, 29))

    assert run.status is RunStatus.COMPLETED, hr.describe(run.id)
    assert rows(hr, "injection_check") == [(0, hostile, "20240229")]
    assert hr.count("employees") == employees


def test_a_value_inside_quotes_is_refused_at_deploy_with_its_line() -> None:
    text = operation("quoted", "- target: quoted\n  sql: |\n    SELECT 1\n    WHERE day = '{{ FD_DATE }}'\n")

    with pytest.raises(ConfigError) as refused:
        load_text(text, source="quoted.yaml")

    assert refused.value.source == "quoted.yaml"
    assert refused.value.field == "steps.0.sql"
    assert refused.value.line == 6
    assert "inside quotes" in refused.value.reason


def test_a_repeated_data_load_is_a_no_op(hr: ApiHarness) -> None:
    text = operation("twice", "- target: twice_loaded\n  sql: SELECT 42 AS answer\n")
    run = run_text(hr, text)
    assert run.status is RunStatus.COMPLETED, hr.describe(run.id)
    publish_table(hr, "twice_loaded", "SELECT 7 AS answer")  # changed since: a second load must not undo it
    assert hr.runtime.resources is not None
    identity = TaskIdentity("default", run.operation_id, run.run_key, "destructive", "Data Load", 2, None)
    ctx = TaskContext(
        identity,
        params={"tables": ["twice_loaded"]},
        inputs=(TaskOutput("twice_loaded", run.run_key, 1, True, "twice_loaded"),),
    )

    publish(ctx, hr.runtime.resources)

    assert rows(hr, "twice_loaded") == [(7,)]
    assert ("info", "This run's data had already been loaded by an earlier attempt; nothing was loaded twice") in (
        ctx.messages
    )
    assert ctx.tables == [("twice_loaded", 1)]  # the first load's result, repeated


def test_sql_files_beside_the_configuration_are_read_at_deploy(hr: ApiHarness, tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "active.sql").write_text("SELECT count(*) AS active FROM employees WHERE active\n")
    path = tmp_path / "from-file.yaml"
    path.write_text(operation("from_file", "- target: active_count\n  sql_file: steps/active.sql\n"))
    (spec,) = load_text(path.read_text(), source=str(path))
    (deployed,) = deploy(hr.runtime.store, [spec], hr.runtime.registry)
    (tmp_path / "steps" / "active.sql").unlink()  # deployed: the run does not need the file

    run = hr.run(deployed.operation_id)

    assert run.status is RunStatus.COMPLETED, hr.describe(run.id)
    assert rows(hr, "active_count") == [(hr.scalar("SELECT count(*) FROM employees WHERE active"),)]


def test_the_scheduler_drops_what_ended_runs_staged_and_nothing_else(hr: ApiHarness) -> None:
    ended = run_text(hr, operation("ended", "- target: ended_step\n  sql: SELECT 1 AS one\n"))
    assert ended.status is RunStatus.COMPLETED, hr.describe(ended.id)
    foreign = "20240101-000000-not-a-run-of-this-store"
    for run_key in (ended.run_key, foreign):
        hr.query(f'CREATE TABLE main."_runyard_staging__{run_key}__left_behind" AS SELECT 1 AS one')

    wait_for(lambda: staging_tables(hr, ended.run_key) == [] or None, timeout=30, what="the ended run's staging to go")

    assert staging_tables(hr, foreign) == [f"_runyard_staging__{foreign}__left_behind"]
    hr.query(f'DROP TABLE main."_runyard_staging__{foreign}__left_behind"')
