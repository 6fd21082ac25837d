"""What a redeploy reports as changed, the `_<ENV>` suffix rule, the --env override of the loader, and the states."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runyard.errors import ConfigError
from runyard.operations import registry
from runyard.operations.definition import OperationType
from runyard.operations.loader import check_environment, load_text
from runyard.services.deploy_changes import ABSENT, FieldChange, diff, show
from runyard.services.operations import OperationState

ENDPOINT = {"name": "employees", "path": "/a", "pagination": {"style": "none"}}
API_SPEC = {"base_url": "https://api.example.com/v1", "endpoints": [ENDPOINT], "schedule": None}

TASKS = """\
configuration_type: tasks
configuration_id: hr
environment: PROD
tasks:
  - {name: "Process [employees]", executor: sleep}
  - {name: Data Load, executor: noop, depends_on: ["Process [employees]"]}
"""


def changes(before: object, after: object) -> list[str]:
    return [str(change) for change in diff(before, after)]


# --- the changed fields -------------------------------------------------------------------------------------------


def test_a_change_deep_in_a_list_names_its_place_and_both_values() -> None:
    after = {**API_SPEC, "schedule": "0 6 * * *", "endpoints": [{**ENDPOINT, "path": "/b"}]}

    assert changes(API_SPEC, after) == ["endpoints.0.path: /a -> /b", "schedule: None -> '0 6 * * *'"]


def test_equal_configurations_have_no_change() -> None:
    assert changes(API_SPEC, {**API_SPEC}) == []
    assert changes({"seconds": 2}, {"seconds": 2.0}) == []  # the same number, as JSON stores it


def test_added_and_removed_items_and_keys_show_as_absent() -> None:
    before = {"tasks": [{"name": "a"}], "old": 1}
    after = {"tasks": [{"name": "a"}, {"name": "b"}], "new": True}

    assert changes(before, after) == [
        'tasks.1: (absent) -> {"name":"b"}',
        "new: (absent) -> True",
        "old: 1 -> (absent)",
    ]


def test_a_flag_that_becomes_a_number_is_a_change_though_python_finds_them_equal() -> None:
    assert changes({"required": True}, {"required": 1}) == ["required: True -> 1"]


def test_values_show_plain_words_bare_and_other_text_quoted_and_long_ones_cut() -> None:
    assert show("/employees") == "/employees"
    assert show("two words") == "'two words'"
    assert show("") == "''"
    assert show(None) == "None"
    assert show(ABSENT) == "(absent)"
    assert show(["a", 1]) == '["a",1]'
    long = show("x " * 100)
    assert len(long) == 80
    assert long.endswith("…")
    assert str(FieldChange("description", "", "HR")) == "description: '' -> HR"


def test_a_whole_value_of_another_kind_is_one_change() -> None:
    assert changes({"params": {"a": 1}}, {"params": [1]}) == ['params: {"a":1} -> [1]']


# --- the _<ENV> suffix (spec 003's table-to-table) ----------------------------------------------------------------


def suffixed_types() -> list[OperationType]:
    """Every registered type with the suffix (table-to-table once it exists), and `tasks` given it, so that the rule
    is checked whatever the registry holds today."""
    found = [each for each in registry.operation_types().values() if each.environment_suffix]
    return [*found, replace(registry.operation_type("tasks"), environment_suffix=True)]


@pytest.mark.parametrize("definition", suffixed_types(), ids=lambda each: each.name)
def test_a_suffixed_type_adds_the_environment_once(definition: OperationType) -> None:
    assert definition.deployed_id("000099_iowa_liquor_prepare_pda", "DEV") == "000099_iowa_liquor_prepare_pda_DEV"
    assert definition.deployed_id("000099_iowa_liquor_prepare_pda_DEV", "DEV") == "000099_iowa_liquor_prepare_pda_DEV"
    assert definition.deployed_id("load", "PROD") == "load_PROD"


def test_types_without_the_suffix_keep_their_id() -> None:
    for each in registry.operation_types().values():
        if not each.environment_suffix:
            assert each.deployed_id("hr", "DEV") == "hr"


# --- --env ----------------------------------------------------------------------------------------------------------


def test_the_environment_override_replaces_every_documents_own() -> None:
    text = TASKS + "---\n" + TASKS.replace("configuration_id: hr", "configuration_id: hr2").replace("PROD", "QA")

    specs = load_text(text, "hr.yaml", environment="DEV")

    assert [(spec.configuration_id, spec.environment) for spec in specs] == [("hr", "DEV"), ("hr2", "DEV")]
    assert [spec.environment for spec in load_text(text, "hr.yaml")] == ["PROD", "QA"]


def test_the_override_applies_before_validation_and_mistakes_still_name_their_line() -> None:
    wrong_environment = TASKS.replace("environment: PROD", "environment: prod")
    assert load_text(wrong_environment, "hr.yaml", environment="DEV")[0].environment == "DEV"

    typo = TASKS.replace("tasks:\n", "retries: 3\ntasks:\n")
    with pytest.raises(ConfigError) as raised:
        load_text(typo, "hr.yaml", environment="DEV")
    assert str(raised.value) == "hr.yaml, line 4: field 'retries': is not a known field (check its spelling)"


@pytest.mark.parametrize("name", ["dev", "", "1DEV", "DEV-1", "D" * 51])
def test_an_environment_name_is_checked_as_a_files_is(name: str) -> None:
    with pytest.raises(ConfigError, match="is not an environment name"):
        check_environment(name)
    with pytest.raises(ConfigError, match="is not an environment name"):
        load_text(TASKS, "hr.yaml", environment=name)


def test_environment_names_that_are_fine() -> None:
    assert [check_environment(name) for name in ("DEV", "PROD", "QA_2")] == ["DEV", "PROD", "QA_2"]


# --- states ---------------------------------------------------------------------------------------------------------


def test_the_state_of_the_two_flags() -> None:
    assert OperationState.of(activated=True, archived=False) is OperationState.ACTIVE
    assert OperationState.of(activated=False, archived=False) is OperationState.INACTIVE
    assert OperationState.of(activated=False, archived=True) is OperationState.ARCHIVED
    assert [state.label for state in OperationState] == ["Active", "Inactive", "Archived"]
