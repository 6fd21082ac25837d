"""bi-view without a store: the configuration, each deploy-time refusal with its field, the empty plan, the registry."""

from __future__ import annotations

from datetime import date

import pytest

from runyard.domain.statuses import RunType
from runyard.errors import ConfigError
from runyard.operations import registry
from runyard.operations.bi_view.definition import BI_VIEW
from runyard.operations.bi_view.query import query_problem
from runyard.operations.bi_view.spec import BiViewOperation
from runyard.operations.definition import PlanRequest
from runyard.operations.loader import load_text

VALID = """\
configuration_type: bi-view
configuration_id: employees-by-hire-date
account: "000099"
environment: DEV
view_name: EMPLOYEES_V
sql: |
  SELECT id, first_name, hire_date FROM employees
time_column: hire_date
description: optional text
"""


def with_field(name: str, value: str) -> str:
    """VALID with field `name` set to `value` (a YAML value on one line) on its line, or added at the end."""
    lines = [line for line in VALID.splitlines() if not (name == "sql" and line.startswith("  "))]
    replaced = [f"{name}: {value}" if line.startswith(f"{name}:") else line for line in lines]
    if replaced == lines:
        replaced.append(f"{name}: {value}")
    return "\n".join(replaced) + "\n"


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load_text(text, "views.yaml")
    return raised.value


def test_a_valid_bi_view_loads() -> None:
    (spec,) = load_text(VALID, "views.yaml")
    assert isinstance(spec, BiViewOperation)
    assert (spec.account, spec.environment, spec.configuration_id) == ("000099", "DEV", "employees-by-hire-date")
    assert (spec.view_name, spec.time_column, spec.description) == ("EMPLOYEES_V", "hire_date", "optional text")
    assert spec.sql == "SELECT id, first_name, hire_date FROM employees\n"


def test_time_column_is_optional() -> None:
    text = "\n".join(line for line in VALID.splitlines() if not line.startswith("time_column")) + "\n"
    (spec,) = load_text(text, "views.yaml")
    assert isinstance(spec, BiViewOperation)
    assert spec.time_column is None


@pytest.mark.parametrize(
    "sql",
    [
        '"SELECT 1"',
        '"select * from employees;"',
        '"SELECT 1; -- the end"',
        '"(SELECT a FROM t) UNION (SELECT a FROM u)"',
        '"WITH recent AS (SELECT * FROM events) SELECT * FROM recent"',
        '"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r"',
        '"WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b"',
        "\"-- a comment first\\n/* and a block */ SELECT 'DELETE FROM t; DROP TABLE u' AS text\"",
        '"SELECT \\"delete\\", \\"insert\\" FROM t"',
    ],
)
def test_queries_that_read_are_accepted(sql: str) -> None:
    (spec,) = load_text(with_field("sql", sql), "views.yaml")
    assert isinstance(spec, BiViewOperation)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ('""', "the SQL is empty"),
        ('"   "', "the SQL is empty"),
        ('"-- only a comment"', "the SQL is empty"),
        ('";"', "the SQL is empty"),
        ('"SELECT 1; SELECT 2"', "the SQL holds 2 statements"),
        ('"SELECT 1; DROP TABLE employees"', "the SQL holds 2 statements"),
        ('"DELETE FROM employees"', "the SQL starts with DELETE"),
        ('"CREATE TABLE x AS SELECT 1"', "the SQL starts with CREATE"),
        ('"INSERT INTO t SELECT * FROM u"', "the SQL starts with INSERT"),
        ('"EXPLAIN SELECT 1"', "the SQL starts with EXPLAIN"),
        ('"VALUES (1), (2)"', "the SQL starts with VALUES"),
        ("\"'SELECT 1'\"", "the SQL starts with \"'SELECT 1'\""),
        ('"WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a"', "the SQL has INSERT after its WITH clause"),
        ('"WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a"', "the SQL has a WITH clause that changes data"),
        ('"WITH a AS (SELECT 1)"', "the SQL has a WITH clause but no query after it"),
        ('"WITH a SELECT 1"', "the SQL has a WITH clause that is not complete"),
    ],
)
def test_sql_that_is_not_one_query_is_refused_naming_the_field(sql: str, reason: str) -> None:
    error = refusal(with_field("sql", sql))
    assert error.field == "sql"
    assert error.source == "views.yaml"
    assert error.line == 6  # where sql: is
    assert error.reason.startswith(reason), error.reason
    assert error.reason.endswith("a view is one SELECT (or WITH ... SELECT) query")


def test_the_sql_is_required() -> None:
    text = "\n".join(line for line in VALID.splitlines() if not line.startswith(("sql", "  "))) + "\n"
    assert refusal(text).field == "sql"


@pytest.mark.parametrize(
    "name",
    ["1VIEW", "_VIEW", "EMPLOYEES-V", "EMPLOYEES V", "EMPLOYÉS", "V" * 129, '""', "V.W", "'a;b'"],
)
def test_a_bad_view_name_is_refused_naming_the_field(name: str) -> None:
    error = refusal(with_field("view_name", name))
    assert error.field == "view_name"
    assert error.line == 5


def test_view_names_of_the_allowed_form_are_accepted() -> None:
    for name in ("V", "employees_v", "A1_b2_C3", "V" * 128):
        (spec,) = load_text(with_field("view_name", name), "views.yaml")
        assert isinstance(spec, BiViewOperation)
        assert spec.view_name == name


def test_a_view_name_is_required() -> None:
    text = "\n".join(line for line in VALID.splitlines() if not line.startswith("view_name")) + "\n"
    assert refusal(text).field == "view_name"


@pytest.mark.parametrize("column", ['""', '" hire_date"', '"hire\\tdate"'])
def test_a_bad_time_column_is_refused_naming_the_field(column: str) -> None:
    assert refusal(with_field("time_column", column)).field == "time_column"


def test_a_schedule_is_refused_naming_the_field() -> None:
    error = refusal(with_field("schedule", '"0 6 * * *"'))
    assert error.field == "schedule"
    assert "not run on a schedule" in error.reason


def test_an_unknown_field_is_refused() -> None:
    assert refusal(with_field("steps", "[]")).field == "steps"


def test_the_plan_is_empty_and_the_type_is_registered_as_never_launched() -> None:
    definition = registry.operation_type(BI_VIEW)
    assert "bi_view" in registry.TYPE_PACKAGES
    assert BI_VIEW in registry.configuration_types()
    assert definition.spec is BiViewOperation
    assert not definition.launchable
    assert definition.executor_names == frozenset()
    assert list(definition.executors(None)) == []  # type: ignore[arg-type]  # no resources needed
    assert not definition.environment_suffix
    assert definition.deployed_id("employees-by-hire-date", "PROD") == "employees-by-hire-date"
    (spec,) = load_text(VALID, "views.yaml")
    request = PlanRequest(RunType.INCREMENTAL, date(2026, 1, 1))
    assert registry.plan(BI_VIEW, spec.model_dump(mode="json"), request) == []


def test_query_problem_is_none_for_a_query() -> None:
    assert query_problem("SELECT 1") is None
    assert query_problem("with x as (select 1) select * from x") is None
