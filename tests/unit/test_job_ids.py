"""Spec 003's job_id forms: each type's, as its answers show them, and reading them back."""

from __future__ import annotations

import pytest

from runyard.operations.job_ids import JobRef, job_id, parse_job_id


@pytest.mark.parametrize(
    ("configuration_type", "spec", "expected"),
    [
        ("table-to-table", {}, "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV"),
        (
            "storage-to-storage",
            {"destination_name": "stores-{{FD_DATE}}-{{FD_TIME}}.csv"},
            "storage-to-storage|000099|000099_iowa_liquor_prepare_pda_DEV|DEV|stores-{{FD_DATE}}-{{FD_TIME}}.csv",
        ),
        ("storage-to-storage", {}, "storage-to-storage|000099|000099_iowa_liquor_prepare_pda_DEV|DEV|{{FD_NAME}}"),
        ("api-to-table", {}, "api-to-table|000099|000099_iowa_liquor_prepare_pda_DEV|DEV"),
        ("tasks", {}, "tasks|000099|000099_iowa_liquor_prepare_pda_DEV|DEV"),
        ("workflow", {}, "workflow|000099|000099_iowa_liquor_prepare_pda_DEV|DEV"),
    ],
)
def test_each_type_has_its_job_id_form(configuration_type: str, spec: dict[str, str], expected: str) -> None:
    made = job_id(
        account="000099",
        environment="DEV",
        configuration_type=configuration_type,
        configuration_id="000099_iowa_liquor_prepare_pda_DEV",
        spec=spec,
    )
    assert made == expected
    parsed = parse_job_id(made)
    assert parsed.configuration_type == configuration_type
    assert parsed.configuration_id == "000099_iowa_liquor_prepare_pda_DEV"


def test_reading_job_ids_back() -> None:
    assert parse_job_id("gbq-to-gbq|x_DEV") == JobRef("table-to-table", "x_DEV")
    assert parse_job_id("table-to-table|x_DEV") == JobRef("table-to-table", "x_DEV")
    assert parse_job_id("storage-to-storage|000099|copy|PROD|a-{{FD_DATE}}.csv") == JobRef(
        "storage-to-storage", "copy", account="000099", environment="PROD"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a job type"),
        ("gcs-to-gbq|x", "not a job type"),
        ("tasks", "not in a known form"),
        ("tasks|", "not in a known form"),
        ("tasks|a|b", "not in a known form"),
        ("tasks|a||DEV", "not in a known form"),
    ],
)
def test_a_job_id_in_no_known_form_says_which_forms_exist(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_job_id(text)
