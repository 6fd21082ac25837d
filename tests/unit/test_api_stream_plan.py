"""api-to-table's `mode: stream`: what the spec accepts and refuses, and the one long task it plans."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from runyard.domain.statuses import RunType
from runyard.operations.api_to_table.plan import DEFAULT_POLL_SECONDS, STREAM, STREAM_ATTEMPTS, plan_api_run
from runyard.operations.api_to_table.spec import ApiToTableSpec
from tests.unit.test_api_to_table_spec import minimal, only_error

INCREMENTAL = {"cursor_field": "updated_at", "param": "updated_since"}


def planned(spec: dict[str, Any], run_type: RunType = RunType.INCREMENTAL) -> dict[str, Any]:
    dumped = ApiToTableSpec.model_validate(spec).model_dump(mode="json")
    return {task.name: task for task in plan_api_run(dumped, run_type, date(2026, 1, 1))}


def test_a_stream_is_one_long_stream_task_with_no_data_load() -> None:
    tasks = planned(minimal(mode="stream", incremental=INCREMENTAL, primary_key="id", poll_seconds=2))
    assert list(tasks) == ["Stream [users]"]
    task = tasks["Stream [users]"]
    assert (task.executor, task.stage, task.metrics_type, task.table) == (STREAM, "stream", "stream", "users")
    assert task.max_attempts == STREAM_ATTEMPTS  # a lost worker is taken over, again and again
    assert task.params["poll_seconds"] == 2.0
    assert task.params["load"] == {
        "name": "users",
        "mode": "merge",
        "primary_key": ["id"],
        "cursor_field": "updated_at",
        "required": True,
    }


def test_the_poll_interval_has_a_default() -> None:
    tasks = planned(minimal(mode="stream", incremental=INCREMENTAL))
    assert tasks["Stream [users]"].params["poll_seconds"] == DEFAULT_POLL_SECONDS


def test_batch_endpoints_beside_a_stream_keep_their_chain_and_data_load() -> None:
    spec = minimal()
    spec["endpoints"].append({"name": "events", "path": "/events", "mode": "stream", "incremental": INCREMENTAL})
    tasks = planned(spec, RunType.DESTRUCTIVE)
    assert "Stream [events]" in tasks
    assert "Process [users]" in tasks
    load = tasks["Data Load"]
    assert [table["name"] for table in load.params["tables"]] == ["users"]
    assert all(dependency.upstream != "Stream [events]" for dependency in load.depends_on)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ({"mode": "stream"}, "mode: stream needs incremental"),
        (
            {
                "mode": "stream",
                "incremental": INCREMENTAL,
                "slicing": {
                    "by": "date_window",
                    "param_from": "a",
                    "param_to": "b",
                    "start": "2026-01-01",
                    "window_days": 7,
                },
            },
            "cannot be sliced",
        ),
        ({"poll_seconds": 5}, "poll_seconds applies to mode: stream only"),
    ],
)
def test_a_stream_needs_a_watermark_and_no_slicing(endpoint: dict[str, Any], expected: str) -> None:
    path, _, message = only_error(minimal(**endpoint))
    assert path[:2] == ("endpoints", 0)
    assert expected in message


@pytest.mark.parametrize(("field", "value"), [("mode", "live"), ("poll_seconds", 0)])
def test_mode_and_poll_seconds_are_checked(field: str, value: object) -> None:
    path, _, _ = only_error(minimal(**{field: value}, incremental=INCREMENTAL))
    assert path == ("endpoints", 0, field)
