"""The run time history: durations in words, summaries per run type, and the chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runyard.domain.statuses import RunStatus, RunType
from runyard.services.durations import RunDuration
from runyard.ui.charts import HEIGHT, duration_chart, format_seconds, summarize

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def run(run_id: int, seconds: float, run_type: RunType = RunType.INCREMENTAL) -> RunDuration:
    started = T0 + timedelta(hours=run_id)
    return RunDuration(run_id, run_type, RunStatus.COMPLETED, started, started + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (0.25, "0.25 s"),
        (0.5, "0.5 s"),
        (3.14159, "3.1 s"),
        (42.4, "42 s"),
        (185, "3 min 05 s"),
        (7800, "2 h 10 min"),
    ],
)
def test_durations_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_summaries_keep_incremental_and_destructive_apart() -> None:
    history = [run(1, 10), run(2, 600, RunType.DESTRUCTIVE), run(3, 30), run(4, 20), run(5, 900, RunType.DESTRUCTIVE)]

    incremental, destructive = summarize(history)

    assert (incremental.run_type, incremental.count, incremental.median_seconds) == (RunType.INCREMENTAL, 3, 20)
    assert (incremental.p90_seconds, incremental.last_seconds) == (30, 20)
    assert (destructive.count, destructive.median_seconds, destructive.last_seconds) == (2, 750, 900)


def test_the_chart_puts_the_longest_run_highest_and_runs_in_order() -> None:
    chart = duration_chart([run(1, 10), run(2, 95, RunType.DESTRUCTIVE), run(3, 0)])

    xs = [point.x for point in chart.points]
    ys = {point.run_id: point.y for point in chart.points}
    assert xs == sorted(xs)
    assert ys[2] < ys[1] < ys[3] == chart.bottom_y  # SVG y grows downwards
    assert chart.ticks[-1].label == "1 min 40 s"  # 95 s rounds up to a 100 s axis
    assert all(0 <= point.y <= HEIGHT for point in chart.points)


def test_an_empty_or_single_run_history_still_draws() -> None:
    assert duration_chart([]).points == ()
    (point,) = duration_chart([run(1, 5)]).points
    assert point.x > 0
