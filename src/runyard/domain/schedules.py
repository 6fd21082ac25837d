"""When a cron schedule fires: its ticks in a time zone, and the one tick a scheduler owes at a given moment.

A tick is an instant (UTC-aware). The cron expression is read as wall-clock time in the schedule's zone, and the
tick of a wall-clock time `c` is the first instant at which the zone's clocks show `c` or later. So, through
daylight saving time changes:

- a time the clocks show twice (the repeated hour when they go back) fires once, at its first occurrence;
- a time the clocks skip (the hour lost when they go forward) fires when they jump, e.g. 02:30 fires at 03:00;
- a daily `0 6 * * *` fires at 06:00 local time every day, whatever the UTC offset that day.

That mapping from wall-clock times to instants never goes backwards, which is what lets `next_tick` and
`previous_tick` walk croniter's wall-clock matches in order. No I/O: croniter and zoneinfo only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

_SECOND = timedelta(seconds=1)


def next_tick(cron: str, tz: str, after: datetime) -> datetime:
    """The first tick strictly after `after` (UTC-aware in and out)."""
    zone = ZoneInfo(tz)
    local = _aware(after).astimezone(zone)
    matches = croniter(cron, local.replace(tzinfo=None, fold=0))
    while True:  # at most the matches of one repeated hour are passed over (after its second pass began)
        tick = _tick(_match(matches, forward=True, cron=cron), zone)
        if tick > after:
            return tick


def previous_tick(cron: str, tz: str, at_or_before: datetime) -> datetime:
    """The last tick at or before `at_or_before` (UTC-aware in and out)."""
    zone = ZoneInfo(tz)
    local = _aware(at_or_before).astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:  # in the second pass of a repeated hour, later wall times of that hour have fired already
        wall += _offset(local.replace(fold=0)) - _offset(local)
    matches = croniter(cron, wall + _SECOND)  # strictly before this start: `wall` itself is a candidate
    while True:
        tick = _tick(_match(matches, forward=False, cron=cron), zone)
        if tick <= at_or_before:
            return tick


def due_tick(cron: str, tz: str, last_tick: datetime | None, since: datetime, now: datetime) -> datetime | None:
    """The tick a scheduler owes at `now`: the latest tick t with max(last_tick, since) < t <= now, or None.

    Ticks missed while nothing ran collapse into this one (at most one catch-up run, for the latest missed tick);
    `since` keeps a schedule from owing the ticks before it started to count (e.g. its deploy).
    """
    floor = since if last_tick is None else max(last_tick, since)
    if now <= floor:
        return None
    tick = previous_tick(cron, tz, now)
    return tick if tick > floor else None


def local_time(tick: datetime, tz: str) -> datetime:
    """The tick on the schedule's clock (aware, in its zone): its date is the execution date of the tick's run."""
    return _aware(tick).astimezone(ZoneInfo(tz))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: schedule times are UTC-aware")
    return moment


def _match(matches: croniter, *, forward: bool, cron: str) -> datetime:
    try:
        found = matches.get_next(datetime) if forward else matches.get_prev(datetime)
    except CroniterBadDateError:
        raise ValueError(f"the schedule '{cron}' matches no date (such as 30 February): it never fires") from None
    assert isinstance(found, datetime)
    return found


def _tick(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant at which the clocks of `zone` show `wall` (naive) or later, in UTC."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _shown(first, zone) == wall:
        return first  # it exists; fold=0 is its first occurrence when the hour repeats
    # `wall` is in a gap: fold=1 reads it with the offset after the jump (an instant before the jump), fold=0 with
    # the one before (an instant after it). Find the jump between them, to the second: zones jump on whole seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _shown(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _shown(instant: datetime, zone: ZoneInfo) -> datetime:
    """What the clocks of `zone` show at `instant` (naive)."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None
    return offset
