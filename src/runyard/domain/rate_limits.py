"""Sliding-window rate limits: at most `limit` events in any `window`, decided from the events' times alone.

The store keeps the events (failed sign-ins, Rejected runs); these rules say whether one more is allowed and, when
it is not, how long until it is: until the oldest event that still counts against the limit leaves the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SlidingWindow:
    """At most `limit` events in any span of `window`."""

    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a sliding window allows at least one event")
        if self.window <= timedelta(0):
            raise ValueError("a sliding window has a positive length")

    def cutoff(self, now: datetime) -> datetime:
        """Events at or before this moment no longer count."""
        return now - self.window

    def wait(self, times: Iterable[datetime], now: datetime) -> timedelta | None:
        """None when one more event is allowed now; else how long until it is (more than zero).

        `times` are the events' moments; those outside the window are ignored, so a caller may pass the newest
        `limit` events of any age.
        """
        cutoff = self.cutoff(now)
        counted = sorted(moment for moment in times if moment > cutoff)
        if len(counted) < self.limit:
            return None
        # Once the oldest of the newest `limit` events leaves the window, one fewer than the limit remain.
        frees_at = counted[len(counted) - self.limit] + self.window
        return max(frees_at - now, timedelta(microseconds=1))


def whole_seconds(wait: timedelta) -> int:
    """A wait as Retry-After says it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait.total_seconds()))
