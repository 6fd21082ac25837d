"""table-to-table without a warehouse: reading SQL, binding values, the plan, and every deploy-time refusal."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from runyard.domain.statuses import RunType
from runyard.errors import ConfigError
from runyard.operations import registry
from runyard.operations.definition import PlanRequest
from runyard.operations.loader import load_specs_with_sources, load_text
from runyard.operations.table_to_table.render import render_step, sql_variables
from runyard.operations.table_to_table.sql import (
    SqlTextError,
    bind,
    mark,
    strip_template,
    table_references,
    without_trailing_semicolon,
)
from runyard.sqltext import statement_count, tokens

# --- reading SQL --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM a", ["a"]),
        ("select * from A join b on A.id = b.id left join c using (id)", ["a", "b", "c"]),
        ("SELECT * FROM a AS x, b y, main.c", ["a", "b", "c"]),
        ('SELECT * FROM "Mixed ""Case"""', ['mixed "case"']),
        ("SELECT * FROM other_schema.t, memory.main.t2", []),
        ("SELECT * FROM range(10), read_parquet('x') AS p", []),
        ("SELECT * FROM (SELECT * FROM inner_t) AS sub", ["inner_t"]),
        ("WITH recent AS (SELECT * FROM events) SELECT * FROM recent JOIN users USING (id)", ["events", "users"]),
        ("WITH r(a, b) AS MATERIALIZED (SELECT 1, 2) SELECT * FROM r", []),
        ("SELECT extract(year FROM hired_at), substring(name FROM 2) FROM employees", ["employees"]),
        ("SELECT 'FROM fake' AS s, \"from\" FROM t -- FROM comment\n/* JOIN x /* nested */ JOIN y */", ["t"]),
        ("SELECT $$ FROM dollar $$, $tag$ JOIN q $tag$ FROM real_one", ["real_one"]),
        ("SELECT E'it\\'s FROM esc' FROM t2", ["t2"]),
        ("SELECT * FROM a WHERE id IN (SELECT id FROM b) AND EXISTS (SELECT 1 FROM c)", ["a", "b", "c"]),
        ("SELECT * FROM t(x, y)", []),
        ("SELECT CASE WHEN x THEN (SELECT max(y) FROM a) ELSE (FROM c SELECT 1) END FROM b", ["a", "c", "b"]),
        ("SELECT DISTINCT (SELECT 1 FROM a), ARRAY(SELECT y FROM c), coalesce((SELECT 2 FROM d), 0)", ["a", "c", "d"]),
        ("SELECT * FROM a AS t(x, y), b", ["a", "b"]),
    ],
)
def test_table_references(sql: str, expected: list[str]) -> None:
    assert table_references(sql) == expected


def test_tokens_cover_every_character_once() -> None:
    sql = "SELECT 'a''b', \"q\"\"x\", $t$ $ $t$ -- c\n/* x */ FROM t WHERE a <> 1;"
    assert "".join(token.text for token in tokens(sql)) == sql
    assert [t.kind for t in tokens(sql) if t.kind in ("string", "name", "comment")] == [
        "string",
        "name",
        "string",
        "comment",
        "comment",
    ]


def test_template_blocks_are_blanked_line_for_line() -> None:
    template = "SELECT {{ a }}\n{% if x %}FROM t{% endif %}\n{# FROM hidden #}FROM real"
    stripped = strip_template(template)
    assert stripped.count("\n") == template.count("\n")
    # SQL inside {% if %} may run, so its tables count; the blocks themselves and comments do not.
    assert table_references(stripped) == ["t", "real"]


@pytest.mark.parametrize(
    ("sql", "count"),
    [("SELECT 1", 1), ("SELECT 1;", 1), ("SELECT 1; DROP TABLE t", 2), ("SELECT ';' -- ;\n", 1), (";;", 0)],
)
def test_statement_count(sql: str, count: int) -> None:
    assert statement_count(sql) == count


def test_a_trailing_semicolon_and_comment_are_dropped_for_the_create() -> None:
    assert without_trailing_semicolon("SELECT ';' ;  -- done\n") == "SELECT ';' "
    assert without_trailing_semicolon("SELECT 1 -- no semicolon") == "SELECT 1 -- no semicolon"


# --- binding values -----------------------------------------------------------------------------------


def test_values_become_parameters_in_text_order() -> None:
    bound = bind(f"SELECT {mark(1)} AS b, {mark(0)} AS a WHERE x = {mark(1)} -- {mark(2)}", ["A", "B", "C"])
    assert bound.sql == "SELECT ? AS b, ? AS a WHERE x = ? -- "
    assert bound.params == ("B", "A", "B")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"SELECT '{mark(0)}'", "inside quotes"),
        (f'SELECT 1 AS "{mark(0)}"', "inside quotes"),
        (f"SELECT $$ {mark(0)} $$", "inside quotes"),
        (f"SELECT * FROM sales_{mark(0)}", "glued to a name"),
        (f"SELECT * FROM main.{mark(0)}", "glued to a name"),
    ],
)
def test_a_value_that_would_become_sql_text_is_refused(text: str, problem: str) -> None:
    with pytest.raises(SqlTextError, match=problem):
        bind(text, ["v"])


def test_rendering_binds_every_value_and_keeps_its_type() -> None:
    variables = sql_variables(date(2024, 2, 29), datetime(2024, 3, 1, 8, 5, 9), {"who": "O'Brien'; --", "n": 3})
    bound = render_step(
        "SELECT {{ who }}, {{ n + 1 }}, {{ execution_date }}, {{ FD_DATE }}, {{ FD_TIME }};", variables, what="t"
    )
    assert bound.sql == "SELECT ?, ?, ?, ?, ?"
    assert bound.params == ("O'Brien'; --", 4, date(2024, 2, 29), "20240229", "080509")


def test_the_sandbox_refuses_attribute_tricks_and_unknown_names() -> None:
    variables = sql_variables(date(2024, 1, 1), datetime(2024, 1, 1), {})
    with pytest.raises(ConfigError, match="unsafe"):
        render_step("SELECT {{ ''.__class__.__mro__ }}", variables, what="step x")
    with pytest.raises(ConfigError, match="'nope' is undefined"):
        render_step("SELECT {{ nope }}", variables, what="step x")


# --- the plan -----------------------------------------------------------------------------------------

STEPS = """\
configuration_type: table-to-table
configuration_id: plan_check
steps:
  - target: summary
    sql: SELECT * FROM Left_Side JOIN right_side USING (id) JOIN employees USING (id)
  - target: left_side
    sql: SELECT * FROM employees
  - target: right_side
    sql: SELECT * FROM right_side   # its own target: the published table, no dependency
    depends_on: [LEFT_SIDE]
"""


def test_the_plan_has_one_task_per_step_in_dependency_order_then_the_data_load() -> None:
    (spec,) = load_text(STEPS)
    planned = registry.plan(
        "table-to-table", spec.model_dump(mode="json"), PlanRequest(RunType.DESTRUCTIVE, date(2024, 5, 1))
    )

    edges = {task.name: [d.upstream for d in task.depends_on] for task in planned}
    assert edges == {
        "summary": ["left_side", "right_side"],
        "left_side": [],
        "right_side": ["left_side"],
        "Data Load": ["summary", "left_side", "right_side"],
    }
    assert [t.metrics_type for t in planned] == ["task", "task", "task", "load"]
    assert planned[0].params["inputs"] == ["left_side", "right_side"]
    assert planned[0].params["execution_date"] == "2024-05-01"
    assert planned[0].table == "summary"


# --- refused at deploy, with the file, the line and the field ------------------------------------------


def _refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        load_text(text, source="ops.yaml")
    return refused.value


@pytest.mark.parametrize(
    ("steps", "line", "field", "reason"),
    [
        (
            "  - target: a\n    sql: SELECT 1\n    depends_on: [a_typo]\n",
            7,
            "steps.0.depends_on.0",
            "depends on 'a_typo', which is no step's target",
        ),
        (
            "  - target: a\n    sql: SELECT * FROM b\n  - target: b\n    sql: SELECT * FROM a\n",
            6,
            "steps.0.sql",
            "cycle: a -> b -> a",
        ),
        (
            "  - target: a\n    sql: SELECT 1\n  - target: B\n    sql: SELECT 1\n  - target: b\n    sql: SELECT 2\n",
            9,
            "steps.2.target",
            "two steps build the table 'B'",
        ),
        ("  - target: a\n    sql: SELECT 1; DROP TABLE employees\n", 6, "steps.0.sql", "holds 2 statements"),
        ("  - target: a\n    sql: SELECT {{ nope }}\n", 6, "steps.0.sql", "unknown variable(s) nope"),
        ("  - target: a\n    sql: SELECT 1 FROM t_{{ FD_DATE }}\n", 6, "steps.0.sql", "glued to a name"),
        ("  - target: _runyard_x\n    sql: SELECT 1\n", 5, "steps.0.target", "runyard's own"),
        ("  - target: a\n", 5, "steps.0", "needs its SELECT"),
        ("  - target: a\n    sql_file: missing.sql\n", 6, "steps.0.sql_file", "no such file"),
    ],
)
def test_a_wrong_configuration_names_its_line_and_field(steps: str, line: int, field: str, reason: str) -> None:
    text = f"configuration_type: table-to-table\nconfiguration_id: wrong\nenvironment: DEV\nsteps:\n{steps}"

    error = _refusal(text)

    assert (error.source, error.line, error.field) == ("ops.yaml", line, field), error
    assert reason in error.reason


def test_a_parameter_may_not_hide_a_builtin_variable() -> None:
    error = _refusal(
        "configuration_type: table-to-table\nconfiguration_id: p\nparameters:\n  FD_DATE: x\n"
        "steps:\n  - target: a\n    sql: SELECT 1\n"
    )
    assert error.field == "parameters"
    assert "would hide" in error.reason


def test_a_folder_with_one_wrong_file_names_it_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(
        "configuration_type: table-to-table\nconfiguration_id: g\nsteps:\n  - target: g\n    sql: SELECT 1\n"
    )
    (tmp_path / "wrong.yaml").write_text(
        "configuration_type: table-to-table\nconfiguration_id: w\nsteps:\n  - target: w\n    sql: SELECT 1\n"
        "    depends_on: [nowhere]\n"
    )

    with pytest.raises(ConfigError) as refused:
        load_specs_with_sources(tmp_path)

    assert refused.value.source == str(tmp_path / "wrong.yaml")
    assert (refused.value.line, refused.value.field) == (6, "steps.0.depends_on.0")
