"""The run time history chart, computed as plain geometry the template draws as inline SVG."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from runyard.domain.statuses import RunType
from runyard.services.durations import RunDuration

WIDTH = 720
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 32


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    run_id: int
    seconds: float
    run_type: RunType


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class TypeSummary:
    run_type: RunType
    count: int
    median_seconds: float | None
    p90_seconds: float | None
    last_seconds: float | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom_y: float
    right_x: float
    points: tuple[Point, ...]
    ticks: tuple[Tick, ...]
    summaries: tuple[TypeSummary, ...]


def format_seconds(seconds: float | None) -> str:
    """1.2 s, 42 s, 3 min 05 s, 2 h 10 min: how long, in words a person reads at a glance."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + " s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if step * power >= value:
            return step * power
    return 10.0 * power


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def summarize(durations: Sequence[RunDuration]) -> tuple[TypeSummary, ...]:
    summaries = []
    for run_type in (RunType.INCREMENTAL, RunType.DESTRUCTIVE):
        seconds = [item.seconds for item in durations if item.run_type is run_type]
        summaries.append(
            TypeSummary(
                run_type=run_type,
                count=len(seconds),
                median_seconds=statistics.median(seconds) if seconds else None,
                p90_seconds=_percentile(seconds, 0.9) if seconds else None,
                last_seconds=seconds[-1] if seconds else None,
            )
        )
    return tuple(summaries)


def duration_chart(durations: Sequence[RunDuration]) -> Chart:
    """Durations in run order (oldest left), y from 0 to a round maximum, with four gridlines."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    top_value = _nice_ceiling(max((item.seconds for item in durations), default=1.0))
    count = len(durations)

    def x_of(index: int) -> float:
        return LEFT + (plot_width / 2 if count == 1 else plot_width * index / max(count - 1, 1))

    def y_of(seconds: float) -> float:
        return TOP + plot_height * (1 - seconds / top_value)

    points = tuple(
        Point(round(x_of(i), 1), round(y_of(item.seconds), 1), item.run_id, item.seconds, item.run_type)
        for i, item in enumerate(durations)
    )
    ticks = tuple(Tick(round(y_of(top_value * k / 4), 1), format_seconds(top_value * k / 4)) for k in range(5))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        bottom_y=TOP + plot_height,
        right_x=WIDTH - RIGHT,
        points=points,
        ticks=ticks,
        summaries=summarize(durations),
    )
