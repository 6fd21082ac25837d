"""The alert rules (runyard.domain.alert_rules): normal ranges from a source's own history, and the findings."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.domain.alert_rules import (
    AlertSettings,
    ExpectedInterval,
    duration_range,
    ended_run,
    history_interval,
    human_duration,
    normal_range,
    overdue,
    running_long,
    schedule_interval,
    unusual_rows,
)
from runyard.domain.alerts import AlertKind
from runyard.domain.statuses import RunStatus

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
values = st.lists(st.floats(min_value=1, max_value=1e6, allow_nan=False), min_size=5, max_size=40)


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=4), st.floats(min_value=0, max_value=1e9))
def test_no_alert_below_min_runs(history: list[float], value: float) -> None:
    assert normal_range(history, 5, 3.0) is None
    assert running_long(1, "incremental", value, normal_range(history, 5, 3.0)) is None
    assert unusual_rows(1, "incremental", int(value), normal_range(history, 5, 3.0)) is None


@given(values, st.floats(min_value=0, max_value=1))
def test_a_value_inside_the_range_never_alerts(history: list[float], where: float) -> None:
    found = normal_range(history, 5, 3.0)
    assert found is not None
    value = found.median + (found.high - found.median) * where
    assert running_long(1, "incremental", value, found) is None
    assert unusual_rows(1, "incremental", round(min(max(value, found.low), found.high - 0.5)), found) is None


@given(values, st.floats(min_value=0, max_value=1e7), st.sampled_from([10.0, 60.0, 1000.0]))
def test_scaling_history_and_value_together_keeps_the_verdict(history: list[float], value: float, k: float) -> None:
    """Robust ranges are scale-free, floors aside: keep the values away from the 1-unit floor."""
    history = [h + 100 for h in history]
    value += 100
    before = normal_range(history, 5, 3.0, floor=0.0)
    after = normal_range([h * k for h in history], 5, 3.0, floor=0.0)
    assert before is not None
    assert after is not None
    assert after.contains(value * k) == before.contains(value) or abs(value - before.high) < 1e-6 * value


@given(values, st.floats(min_value=0, max_value=1))
def test_running_long_never_fires_before_the_median(history: list[float], fraction: float) -> None:
    found = normal_range(history, 5, 3.0)
    assert found is not None
    assert running_long(7, "incremental", found.median * fraction, found) is None


@given(st.integers(min_value=5, max_value=40), st.floats(min_value=2, max_value=1e4))
def test_a_steady_history_tolerates_small_differences(count: int, value: float) -> None:
    """A history of identical runs (MAD 0) has a floor: 5% of the median and at least one unit."""
    found = normal_range([value] * count, 5, 3.0)
    assert found is not None
    assert found.contains(value + 1)
    assert found.contains(value * 1.1)
    assert running_long(1, "incremental", value * 1.2 + 3, found) is not None


def test_evidence_says_how_long_and_from_how_many_runs() -> None:
    history = normal_range([360.0, 420.0, 480.0, 540.0, 400.0] * 4, 5, 3.0)
    finding = running_long(42, "incremental", 42 * 60, history)
    assert finding is not None
    assert finding.kind is AlertKind.RUNNING_LONG
    assert finding.evidence == "ran 42 min so far; its last 20 incremental runs took 6\u20139 min"
    assert "run 42" in finding.summary


def test_evidence_of_rows_low_and_high() -> None:
    history = normal_range([9_800.0, 10_000.0, 10_400.0, 10_100.0, 9_900.0] * 4, 5, 3.0)
    low = unusual_rows(5, "destructive", 12, history)
    assert low is not None
    assert low.kind is AlertKind.ROWS_LOW
    assert low.evidence == "loaded 12 rows; its last 20 destructive runs loaded 9,800\u201310,400"
    high = unusual_rows(5, "destructive", 90_000, history)
    assert high is not None
    assert high.kind is AlertKind.ROWS_HIGH
    assert unusual_rows(5, "destructive", 10_050, history) is None


def test_a_history_of_zero_rows_does_not_alert_on_a_few() -> None:
    history = normal_range([0.0] * 10, 5, 3.0)
    assert unusual_rows(1, "incremental", 3, history) is None
    assert unusual_rows(1, "incremental", 500, history) is not None


def test_ended_runs() -> None:
    failed = ended_run(3, RunStatus.FAILED, "Extract [users] failed: 500 from the source")
    assert failed is not None
    assert failed.kind is AlertKind.FAILED
    assert failed.evidence == "Extract [users] failed: 500 from the source"
    assert ended_run(3, RunStatus.COMPLETED_WITH_ERRORS) is not None
    assert ended_run(3, RunStatus.COMPLETED) is None
    assert ended_run(3, RunStatus.CANCELED) is None


def test_overdue_from_a_schedule() -> None:
    expected = schedule_interval("0 6 * * *", "Europe/Paris", T0)
    assert expected.seconds == 86_400
    grace = timedelta(minutes=10)
    last = T0 - timedelta(hours=1)
    assert overdue(last, T0 - timedelta(days=30), last + timedelta(hours=24), expected, grace) is None
    late = overdue(last, T0 - timedelta(days=30), last + timedelta(hours=25), expected, grace)
    assert late is not None
    assert late.kind is AlertKind.OVERDUE
    assert late.evidence == "last successful run 25 h ago; its schedule '0 6 * * *' fired 24 h apart"


def test_overdue_counts_from_the_deploy_without_a_success() -> None:
    expected = ExpectedInterval(3600, "hourly")
    assert overdue(None, T0, T0 + timedelta(minutes=65), expected, timedelta(minutes=10)) is None
    found = overdue(None, T0, T0 + timedelta(minutes=75), expected, timedelta(minutes=10))
    assert found is not None
    assert "since it was deployed" in found.evidence
    assert overdue(None, T0, T0 + timedelta(days=9), None, timedelta(0)) is None


@given(st.lists(st.integers(min_value=3000, max_value=4000), min_size=1, max_size=30))
def test_overdue_from_history_needs_min_runs(gaps: list[int]) -> None:
    starts = [T0]
    for gap in gaps:
        starts.append(starts[-1] + timedelta(seconds=gap))
    settings = AlertSettings(min_runs=5)
    expected = history_interval(starts, settings)
    if len(starts) < 5:
        assert expected is None
        return
    assert expected is not None
    assert expected.seconds >= max(gaps) - 1e-6 or expected.seconds >= sorted(gaps)[len(gaps) // 2]
    within = starts[-1] + timedelta(seconds=expected.seconds - 1)
    assert overdue(starts[-1], T0, within, expected, timedelta(0)) is None
    assert overdue(starts[-1], T0, within + timedelta(seconds=2), expected, timedelta(0)) is not None


def test_human_words() -> None:
    assert human_duration(42) == "42 s"
    assert human_duration(90) == "90 s"
    assert human_duration(42 * 60) == "42 min"
    assert human_duration(2.5 * 3600) == "2.5 h"
    assert human_duration(3 * 86_400) == "3 d"
    assert duration_range(360, 540) == "6\u20139 min"
    assert duration_range(420, 421) == "7 min"
    assert duration_range(420, 430) == "7\u20137.2 min"


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="min_runs"):
        AlertSettings(min_runs=1)
    with pytest.raises(ValueError, match="history_runs"):
        AlertSettings(min_runs=10, history_runs=5)


def test_the_rules_load_no_io_library() -> None:
    heavy = ("sqlalchemy", "httpx", "pyarrow", "duckdb", "fastapi", "pydantic")
    code = f"import sys, runyard.domain.alert_rules; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
