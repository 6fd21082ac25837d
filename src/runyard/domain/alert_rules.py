"""When runyard raises an alert: each source's own history gives a normal range, and a run far outside it alerts.

Pure functions over plain numbers and times (no I/O); runyard.services.alert_evaluation feeds them from the store.

The normal range of a history (durations, loaded rows, gaps between runs) is its median give or take `spread`
robust deviations. The robust deviation is the median absolute deviation scaled by 1.4826 (so that it estimates
the standard deviation of normally distributed values, while one wild run in the history barely moves it), with
two floors:

- 5% of the median: a perfectly steady history (every run 6 min 0 s) has a deviation of 0, and would otherwise
  alert on a run one second longer. With the default spread of 3, anything within ±15% of the median is normal.
- one unit (1 second, 1 row): a history of zeros (an incremental source that usually finds nothing new) has a
  median of 0 as well, and 3 new rows should not alert.

Below `min_runs` values there is no range, and no alert: a source must have a history before it has a normal.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from runyard.domain.alerts import AlertKind
from runyard.domain.schedules import next_tick, previous_tick
from runyard.domain.statuses import RunStatus

MAD_TO_SIGMA = 1.4826  # the MAD of normally distributed values times this estimates their standard deviation
RELATIVE_FLOOR = 0.05  # the deviation is at least this fraction of the median (see the module's docstring)
SECOND_FLOOR = 1.0  # ... and at least one second (durations, gaps)
ROW_FLOOR = 1.0  # ... and at least one row (loaded rows)


@dataclass(frozen=True)
class AlertSettings:
    """The rules' knobs (RUNYARD_ALERT_*): how much history, how far out is unusual, how late is overdue."""

    min_runs: int = 5  # no normal range (and no alert built on one) from fewer successful runs
    history_runs: int = 20  # the newest successful runs a normal range is taken from
    spread: float = 3.0  # how many robust deviations from the median count as unusual
    overdue_grace: timedelta = timedelta(minutes=10)  # how late past its expected interval a source is overdue

    def __post_init__(self) -> None:
        if self.min_runs < 2:
            raise ValueError("min_runs must be 2 or more: one run makes no range")
        if self.history_runs < self.min_runs:
            raise ValueError("history_runs must be at least min_runs")
        if self.spread <= 0:
            raise ValueError("spread must be positive")


@dataclass(frozen=True)
class NormalRange:
    """A history's median, give or take `spread` robust deviations; `smallest` and `largest` for the evidence."""

    median: float
    deviation: float  # the robust deviation, floored (always > 0)
    spread: float
    count: int
    smallest: float
    largest: float

    @property
    def low(self) -> float:
        return self.median - self.spread * self.deviation

    @property
    def high(self) -> float:
        return self.median + self.spread * self.deviation

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Finding:
    """What an alert says: its kind, one line (`summary`) and why, in numbers (`evidence`)."""

    kind: AlertKind
    summary: str
    evidence: str


@dataclass(frozen=True)
class ExpectedInterval:
    """How often a source should succeed, and where that came from (said in the evidence)."""

    seconds: float
    reason: str  # "its schedule '0 6 * * *' fired 24 h apart"
    changes_at: datetime | None = None  # a schedule's: its next tick, before which the interval stays the same


def normal_range(values: Sequence[float], min_runs: int, spread: float, *, floor: float = 1.0) -> NormalRange | None:
    """The normal range of `values` (None below `min_runs` of them). `floor`: the smallest deviation, in units."""
    if len(values) < max(min_runs, 1):
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(value - median) for value in values)
    deviation = max(mad * MAD_TO_SIGMA, abs(median) * RELATIVE_FLOOR, floor)
    return NormalRange(median, deviation, spread, len(values), min(values), max(values))


def ended_run(run_id: int, status: RunStatus, message: str = "") -> Finding | None:
    """Every Failed run, and every Completed with Errors, is an alert of its own; `message`: the run's own words."""
    if status is RunStatus.FAILED:
        return Finding(AlertKind.FAILED, f"run {run_id} Failed", message.strip() or "the run Failed")
    if status is RunStatus.COMPLETED_WITH_ERRORS:
        evidence = message.strip() or "the run loaded its data, with errors in some of its tasks"
        return Finding(AlertKind.COMPLETED_WITH_ERRORS, f"run {run_id} Completed with Errors", evidence)
    return None


def running_long(run_id: int, run_type: str, elapsed_seconds: float, history: NormalRange | None) -> Finding | None:
    """A run still going past the normal duration of its operation's runs of its type."""
    if history is None or elapsed_seconds <= history.high:
        return None
    return Finding(
        AlertKind.RUNNING_LONG,
        f"run {run_id} is running long ({human_duration(elapsed_seconds)} so far)",
        f"ran {human_duration(elapsed_seconds)} so far; its last {history.count} {run_type} runs took "
        f"{duration_range(history.smallest, history.largest)}",
    )


def unusual_rows(run_id: int, run_type: str, rows: int, history: NormalRange | None) -> Finding | None:
    """A run that loaded far fewer, or far more, rows than its operation's runs of its type usually do."""
    if history is None or history.contains(rows):
        return None
    kind = AlertKind.ROWS_LOW if rows < history.low else AlertKind.ROWS_HIGH
    words = "few" if kind is AlertKind.ROWS_LOW else "many"
    return Finding(
        kind,
        f"run {run_id} loaded unusually {words} rows ({count_rows(rows)})",
        f"loaded {count_rows(rows)}; its last {history.count} {run_type} runs loaded "
        f"{number_range(history.smallest, history.largest)}",
    )


def overdue(
    last_success_at: datetime | None,
    since: datetime,
    now: datetime,
    expected: ExpectedInterval | None,
    grace: timedelta,
) -> Finding | None:
    """No successful run within the expected interval (plus `grace`) of the last one, or of `since` (when the
    source was deployed or activated) if none came after it."""
    if expected is None:
        return None
    reference = since if last_success_at is None else max(last_success_at, since)
    waited = (now - reference).total_seconds()
    if waited <= expected.seconds + grace.total_seconds():
        return None
    last = "no successful run" if last_success_at is None else "last successful run"
    ago = "since it was deployed" if last_success_at is None or last_success_at < since else "ago"
    return Finding(
        AlertKind.OVERDUE,
        f"no successful run for {human_duration(waited)}",
        f"{last} {human_duration(waited)} {ago}; {expected.reason}",
    )


def schedule_interval(cron: str, timezone: str, now: datetime) -> ExpectedInterval:
    """The gap between the schedule's last two ticks at or before `now` (a schedule's gaps may differ: `0 6 * * 1-5`
    waits a weekend on Monday). Raises ValueError for a schedule that never fires or an unknown zone."""
    last = previous_tick(cron, timezone, now)
    before = previous_tick(cron, timezone, last - timedelta(seconds=1))
    seconds = (last - before).total_seconds()
    reason = f"its schedule '{cron}' fired {human_duration(seconds)} apart"
    return ExpectedInterval(seconds, reason, next_tick(cron, timezone, now))


def history_interval(starts: Sequence[datetime], settings: AlertSettings) -> ExpectedInterval | None:
    """From the starts of recent successful runs (at least min_runs): the top of their gaps' normal range."""
    ordered = sorted(starts)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(ordered)]
    found = normal_range(gaps, settings.min_runs - 1, settings.spread, floor=SECOND_FLOOR)
    if found is None:
        return None
    return ExpectedInterval(
        found.high,
        f"its last {len(ordered)} successful runs started {duration_range(found.smallest, found.largest)} apart",
    )


# Human words for the evidence.

DASH = "\u2013"  # an en dash, between the ends of a range
_UNITS = ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min"), (1.0, "s"))


def _unit(seconds: float) -> tuple[float, str]:
    """The largest unit that shows `seconds` as at least 1.5 of it (90 s, not 1.5 min; 2 h, not 120 min)."""
    for size, name in _UNITS:
        if abs(seconds) > 1.5 * size:
            return size, name
    return 1.0, "s"


def _amount(seconds: float, size: float) -> str:
    value = seconds / size
    if value < 10 and round(value, 1) != round(value):
        return f"{value:.1f}"
    return str(round(value))


def human_duration(seconds: float) -> str:
    """42 s, 7 min, 2.5 h, 3 d."""
    size, name = _unit(seconds)
    return f"{_amount(seconds, size)} {name}"


def duration_range(smallest: float, largest: float) -> str:
    """6-9 min (with an en dash): both ends in the unit of the larger; one value when they read the same."""
    size, name = _unit(largest)
    low, high = _amount(smallest, size), _amount(largest, size)
    return f"{high} {name}" if low == high else f"{low}{DASH}{high} {name}"


def count_rows(rows: int) -> str:
    return f"{rows:,} row" if rows == 1 else f"{rows:,} rows"


def number_range(smallest: float, largest: float) -> str:
    """9,800-10,400 (with an en dash; or one number when every run loaded the same)."""
    low, high = round(smallest), round(largest)
    return f"{high:,}" if low == high else f"{low:,}{DASH}{high:,}"
