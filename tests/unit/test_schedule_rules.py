"""The schedule rules of runyard.domain.schedules: ticks in time zones (DST included) and the one tick owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard.domain.schedules import due_tick, local_time, next_tick, previous_tick

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"
MINUTE = timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- examples -----------------------------------------------------------------------------------------------------


def test_a_daily_schedule_follows_its_zone_through_the_year() -> None:
    assert next_tick("0 6 * * *", "UTC", utc(2026, 12, 6, 10, 30)) == utc(2026, 12, 7, 6)
    assert next_tick("0 6 * * *", PARIS, utc(2026, 1, 10)) == utc(2026, 1, 10, 5)  # CET, UTC+1
    assert next_tick("0 6 * * *", PARIS, utc(2026, 7, 10)) == utc(2026, 7, 10, 4)  # CEST, UTC+2
    assert next_tick("0 6 * * *", NEW_YORK, utc(2026, 1, 10)) == utc(2026, 1, 10, 11)  # EST, UTC-5


def test_next_tick_is_strictly_after_and_previous_tick_at_or_before() -> None:
    tick = utc(2026, 12, 7, 6)
    assert next_tick("0 6 * * *", "UTC", tick) == utc(2026, 12, 8, 6)
    assert previous_tick("0 6 * * *", "UTC", tick) == tick
    assert previous_tick("0 6 * * *", "UTC", tick - timedelta(microseconds=1)) == utc(2026, 12, 6, 6)
    assert next_tick("* * * * *", "UTC", utc(2026, 12, 7, 6, 0, 30)) == utc(2026, 12, 7, 6, 1)


def test_a_time_the_clocks_skip_fires_when_they_jump() -> None:
    # Paris, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never shows.
    assert next_tick("30 2 * * *", PARIS, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    assert previous_tick("30 2 * * *", PARIS, utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 1)
    assert previous_tick("30 2 * * *", PARIS, utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 28, 1, 30)
    # An hourly schedule fires once for the jump, not twice at 03:00 CEST.
    hourly = _ticks("0 * * * *", PARIS, utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    assert hourly == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2), utc(2026, 3, 29, 3)]


def test_a_time_the_clocks_show_twice_fires_once() -> None:
    # Paris, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 shows twice.
    assert next_tick("30 2 * * *", PARIS, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert next_tick("30 2 * * *", PARIS, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)
    # During the second 02:xx, the last tick is still the first 02:30.
    assert previous_tick("30 2 * * *", PARIS, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 0, 30)
    assert previous_tick("30 2 * * *", PARIS, utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 0, 30)
    hourly = _ticks("0 * * * *", PARIS, utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert hourly == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]  # no second 02:00


def test_new_york_switches_on_its_own_dates() -> None:
    assert next_tick("0 9 * * *", NEW_YORK, utc(2026, 3, 7, 15)) == utc(2026, 3, 8, 13)  # EDT from 8 March
    assert next_tick("0 9 * * *", NEW_YORK, utc(2026, 10, 31, 15)) == utc(2026, 11, 1, 14)  # EST from 1 November


def test_the_execution_date_is_the_ticks_date_on_the_schedules_clock() -> None:
    tick = utc(2026, 12, 6, 23, 30)
    assert local_time(tick, "UTC").date().isoformat() == "2026-12-06"
    assert local_time(tick, PARIS).date().isoformat() == "2026-12-07"
    assert local_time(tick, NEW_YORK).date().isoformat() == "2026-12-06"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        next_tick("0 6 * * *", "UTC", datetime(2026, 12, 6, 10))  # naive: the point of the test


def test_missed_ticks_collapse_into_one_catch_up_for_the_latest() -> None:
    last = utc(2026, 12, 3, 6)
    assert due_tick("0 6 * * *", "UTC", last, last, utc(2026, 12, 6, 10)) == utc(2026, 12, 6, 6)
    every_minute = due_tick("* * * * *", "UTC", last, last, utc(2026, 12, 6, 10, 0, 42))
    assert every_minute == utc(2026, 12, 6, 10)


def test_nothing_is_owed_once_the_latest_tick_is_handled() -> None:
    last = utc(2026, 12, 6, 6)
    assert due_tick("0 6 * * *", "UTC", last, last, utc(2026, 12, 6, 6)) is None
    assert due_tick("0 6 * * *", "UTC", last, last, utc(2026, 12, 7, 5, 59, 59)) is None
    assert due_tick("0 6 * * *", "UTC", last, last, utc(2026, 12, 7, 6)) == utc(2026, 12, 7, 6)


def test_a_schedule_owes_nothing_from_before_it_started_to_count() -> None:
    deployed = utc(2026, 12, 6, 10, 30)  # this morning's 06:00 is before the deploy
    assert due_tick("0 6 * * *", "UTC", None, deployed, utc(2026, 12, 6, 10, 31)) is None
    assert due_tick("0 6 * * *", "UTC", None, deployed, utc(2026, 12, 7, 6)) == utc(2026, 12, 7, 6)
    # A change after the last tick (e.g. activated again) moves the start: the ticks in between are not owed.
    assert due_tick("0 6 * * *", "UTC", utc(2026, 12, 1, 6), deployed, utc(2026, 12, 6, 11)) is None
    assert due_tick("0 6 * * *", "UTC", None, utc(2026, 12, 7, 6), utc(2026, 12, 7, 6)) is None  # strictly after


def _ticks(cron: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    found, moment = [], start
    while (moment := next_tick(cron, tz, moment)) <= end:
        found.append(moment)
    return found


# --- properties, against a minute-by-minute reading of the zone's clocks --------------------------------------------

ZONES = [
    "UTC",
    PARIS,
    NEW_YORK,
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # southern hemisphere, midnight switches
    "Asia/Kathmandu",  # +05:45, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/St_Johns",  # -03:30 / -02:30
]


def _transitions(tz: str) -> list[datetime]:
    """The moments (to 30 minutes) the zone's UTC offset changes in 2025-2027."""
    zone, found = ZoneInfo(tz), []
    moment = utc(2025, 1, 1)
    previous = moment.astimezone(zone).utcoffset()
    while moment < utc(2028, 1, 1):
        moment += timedelta(minutes=30)
        offset = moment.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(moment)
        previous = offset
    return found


TRANSITIONS = [moment for tz in ZONES for moment in _transitions(tz)]

minutes = st.one_of(
    st.just("*"),
    st.sampled_from(["*/15", "*/20", "0", "30", "45"]),
    st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True).map(lambda xs: ",".join(map(str, sorted(xs)))),
)
hours = st.one_of(
    st.just("*"),
    st.sampled_from(["*/6", "0", "1", "2", "3", "23"]),
    st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True).map(lambda xs: ",".join(map(str, sorted(xs)))),
)
crons = st.tuples(minutes, hours).map(lambda parts: f"{parts[0]} {parts[1]} * * *")
anywhere = st.datetimes(min_value=datetime(2025, 1, 2), max_value=datetime(2027, 12, 30), timezones=st.just(UTC))
near_a_transition = st.tuples(st.sampled_from(TRANSITIONS), st.integers(-240 * 60, 240 * 60)).map(
    lambda pair: pair[0] + timedelta(seconds=pair[1])
)
moments = st.one_of(anywhere, near_a_transition)


def _matches(cron: str, wall: datetime) -> bool:
    minute_field, hour_field = cron.split()[:2]
    return _in(minute_field, wall.minute) and _in(hour_field, wall.hour)


def _in(field: str, value: int) -> bool:
    if field == "*":
        return True
    if field.startswith("*/"):
        return value % int(field[2:]) == 0
    return value in {int(part) for part in field.split(",")}


def _shown(moment: datetime, tz: str) -> datetime:
    return moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None, fold=0)


def _exact(tz: str, approximate: datetime) -> datetime:
    """The second the zone's offset changes, within the 30 minutes before `approximate`."""
    zone = ZoneInfo(tz)
    low, high = approximate - timedelta(minutes=30), approximate
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high


def _clocks_went_back(tz: str) -> list[tuple[datetime, datetime]]:
    """(when, the latest time shown just before) for each moment the zone's clocks went back."""
    zone, found = ZoneInfo(tz), []
    for approximate in _transitions(tz):
        moment = _exact(tz, approximate)
        before, after = (moment - timedelta(seconds=1)).astimezone(zone), moment.astimezone(zone)
        if after.replace(tzinfo=None) < before.replace(tzinfo=None):
            found.append((moment, _shown(moment - timedelta(microseconds=1), tz)))
    return found


WENT_BACK = {tz: _clocks_went_back(tz) for tz in ZONES}


def _highest_shown(moment: datetime, tz: str) -> datetime:
    """The latest time the clocks have shown up to `moment`: more than they show in a repeated hour."""
    highest = _shown(moment, tz)
    for when, shown_before in WENT_BACK[tz]:
        if when <= moment:
            highest = max(highest, shown_before)
    return highest


def _is_tick(cron: str, tz: str, moment: datetime) -> bool:
    """A whole UTC minute is a tick when the clocks reach a matching time for the first time at it: some matching
    time in (the latest they showed until a minute before, what they show now]."""
    reached, now = _highest_shown(moment - MINUTE, tz), _shown(moment, tz)
    wall = reached.replace(second=0, microsecond=0) + MINUTE
    while wall <= now:
        if _matches(cron, wall):
            return True
        wall += MINUTE
    return False


def _reference_next(cron: str, tz: str, after: datetime) -> datetime:
    moment = after.replace(second=0, microsecond=0) + MINUTE
    while not _is_tick(cron, tz, moment):
        moment += MINUTE
    return moment


def _reference_previous(cron: str, tz: str, at_or_before: datetime) -> datetime:
    moment = at_or_before.replace(second=0, microsecond=0)
    while not _is_tick(cron, tz, moment):
        moment -= MINUTE
    return moment


@settings(max_examples=300, deadline=None)
@given(crons, st.sampled_from(ZONES), moments)
def test_next_tick_is_the_first_moment_the_clocks_reach_a_matching_time(cron: str, tz: str, after: datetime) -> None:
    assert next_tick(cron, tz, after) == _reference_next(cron, tz, after)


@settings(max_examples=300, deadline=None)
@given(crons, st.sampled_from(ZONES), moments)
def test_previous_tick_is_the_last_such_moment(cron: str, tz: str, at_or_before: datetime) -> None:
    tick = previous_tick(cron, tz, at_or_before)
    assert tick == _reference_previous(cron, tz, at_or_before)
    assert next_tick(cron, tz, tick) > at_or_before
    assert previous_tick(cron, tz, next_tick(cron, tz, at_or_before)) == next_tick(cron, tz, at_or_before)


@settings(max_examples=200, deadline=None)
@given(
    crons,
    st.sampled_from(ZONES),
    moments,
    st.integers(0, 4 * 24 * 60),
    st.integers(0, 4 * 24 * 60),
    st.booleans(),
)
def test_due_tick_is_at_most_one_the_latest_missed(
    cron: str, tz: str, since: datetime, handled_after: int, waited: int, fired_before: bool
) -> None:
    last = previous_tick(cron, tz, since + timedelta(minutes=handled_after)) if fired_before else None
    now = since + timedelta(minutes=handled_after + waited)
    owed = due_tick(cron, tz, last, since, now)
    floor = since if last is None else max(last, since)
    latest = _reference_previous(cron, tz, now)  # however many ticks were missed, only the latest is owed
    assert owed == (latest if latest > floor else None)
    if owed is not None:  # handled, nothing more is owed until the next tick
        assert due_tick(cron, tz, owed, since, now) is None
        assert due_tick(cron, tz, owed, since, next_tick(cron, tz, owed)) == next_tick(cron, tz, owed)
