from __future__ import annotations

from pathlib import Path

import pytest

from runyard.demo import demo_specs
from runyard.errors import ConfigError
from runyard.operations.loader import load_specs, load_text

VALID = """\
configuration_type: tasks
configuration_id: hr
environment: PROD
tasks:
  - name: "Process [employees]"
    executor: sleep
  - name: Data Load
    executor: noop
    depends_on: ["Process [employees]"]
"""


def test_a_valid_spec_loads_with_its_defaults() -> None:
    (spec,) = load_text(VALID, "hr.yaml")
    assert spec.configuration_id == "hr"
    assert spec.environment == "PROD"
    assert spec.account == "default"
    assert spec.tasks[1].depends_on[0].task == "Process [employees]"


def test_several_documents_in_one_file() -> None:
    text = VALID + "---\n" + VALID.replace("configuration_id: hr", "configuration_id: hr2")
    assert [s.configuration_id for s in load_text(text)] == ["hr", "hr2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("configuration_type: tasks\nconfiguration_id: [unclosed\n", r"ops\.yaml, line 3: not valid YAML"),
        (
            VALID.replace("    executor: noop", "    executor: noop\n    colour: red"),
            r"line 9: field 'tasks\.1\.colour'",
        ),
        (VALID.replace("configuration_id: hr\n", ""), r"line 1: field 'configuration_id': is required"),
        (
            VALID.replace("type: tasks", "type: magic"),
            r"line 1: field 'configuration_type': unknown configuration type",
        ),
        (VALID.replace("PROD", "prod"), r"line 3: field 'environment'"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "holds no operation"),
        (VALID + "schedule: every day\n", r"field 'schedule': 'every day' is not a cron expression"),
    ],
)
def test_mistakes_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        load_text(text, "ops.yaml")
    assert "\n" not in str(caught.value)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_specs(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"no \.yaml, \.yml or \.json files"):
        load_specs(tmp_path)


def test_the_demo_operations_load() -> None:
    specs = demo_specs("http://127.0.0.1:8001")
    assert {s.configuration_id for s in specs} >= {"demo-hr-sleep", "demo-hr"}
