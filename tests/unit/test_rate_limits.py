"""The sliding window alone: when one more event is allowed, and how long to wait when it is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runyard.domain.rate_limits import SlidingWindow, whole_seconds

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_fewer_events_than_the_limit_allow_one_more() -> None:
    window = SlidingWindow(3, MINUTE)
    assert window.wait([], NOW) is None
    assert window.wait([NOW - timedelta(seconds=1)] * 2, NOW) is None


def test_at_the_limit_the_wait_lasts_until_the_oldest_counted_event_leaves_the_window() -> None:
    window = SlidingWindow(3, MINUTE)
    times = [NOW - timedelta(seconds=s) for s in (50, 20, 10)]
    assert window.wait(times, NOW) == timedelta(seconds=10)


def test_only_the_newest_limit_events_decide() -> None:
    window = SlidingWindow(2, MINUTE)
    times = [NOW - timedelta(seconds=s) for s in (55, 40, 5)]  # three in the window, two allowed
    assert window.wait(times, NOW) == timedelta(seconds=20)  # the second newest (40 s ago) frees the slot


def test_events_outside_the_window_do_not_count() -> None:
    window = SlidingWindow(2, MINUTE)
    assert window.wait([NOW - MINUTE, NOW - timedelta(hours=1), NOW], NOW) is None


def test_whole_seconds_round_up_and_are_at_least_one() -> None:
    assert whole_seconds(timedelta(microseconds=1)) == 1
    assert whole_seconds(timedelta(seconds=10, milliseconds=1)) == 11
    assert whole_seconds(timedelta(seconds=900)) == 900


@pytest.mark.parametrize(("limit", "window"), [(0, MINUTE), (1, timedelta(0))])
def test_a_window_must_allow_something(limit: int, window: timedelta) -> None:
    with pytest.raises(ValueError, match="sliding window"):
        SlidingWindow(limit, window)
