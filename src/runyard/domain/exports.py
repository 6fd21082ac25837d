"""The lifecycle of a paged-export session (a continuation token) through its four queues (spec 004, BI Views v2).

- active: the export is being processed or paged through;
- completed: every page is cached (or the export failed); kept `completed_seconds`, then draining;
- draining: completed, canceled or stale sessions; kept `draining_seconds`, then removed (the caller deletes the
  cache);
- stale: an active session idle for more than `stale_after_seconds`; activity within `stale_seconds` brings it back
  to active, otherwise it drains.

Pure: states in, states out; the caller passes `now` (UTC-aware) and stores the result. Every limit is strict (a
session idle exactly `stale_after_seconds` is still active). Timestamps never go backwards: an event whose `now` is
earlier than the session's timestamps (clocks of different processes) keeps the later one, and `advance` moves no
session on such a `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Queue(StrEnum):
    ACTIVE = "active"  # being processed, or paged through by a client
    COMPLETED = "completed"  # every page cached (or the export failed): kept for the client to read
    DRAINING = "draining"  # on its way out: completed, canceled or stale for too long
    STALE = "stale"  # active but idle: activity brings it back


#: The queues in the order responses list them.
QUEUES: tuple[Queue, ...] = (Queue.ACTIVE, Queue.COMPLETED, Queue.DRAINING, Queue.STALE)


class ExportStatus(StrEnum):
    ADDED = "ADDED-TO-QUEUE"  # accepted, no page cached yet
    IN_PROGRESS = "IN-PROGRESS"  # pages are being cached
    COMPLETED = "COMPLETED"  # every page is cached
    CANCELED = "CANCELED"  # deleted by a client
    FAILED = "FAILED"  # the export stopped on an error


@dataclass(frozen=True)
class QueueTimers:
    """How long a session stays in each queue, in seconds (the vendor's defaults)."""

    completed_seconds: float = 300.0  # completed -> draining
    draining_seconds: float = 5.0  # draining -> removed
    stale_after_seconds: float = 240.0  # active and idle this long -> stale
    stale_seconds: float = 300.0  # stale -> draining

    def __post_init__(self) -> None:
        for name in ("completed_seconds", "draining_seconds", "stale_after_seconds", "stale_seconds"):
            value = getattr(self, name)
            if not value >= 0:  # NaN fails too
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


@dataclass(frozen=True)
class SessionState:
    """Where a session is: its queue, its status and the two moments its timers count from (UTC-aware)."""

    queue: Queue
    status: ExportStatus
    last_activity: datetime  # last page request by a client, or last page cached by the exporter
    queue_since: datetime  # when the session entered its current queue

    def __post_init__(self) -> None:
        _aware(self.last_activity)
        _aware(self.queue_since)


def started(now: datetime) -> SessionState:
    """A new session: active, added to the queue, nothing cached yet."""
    _aware(now)
    return SessionState(queue=Queue.ACTIVE, status=ExportStatus.ADDED, last_activity=now, queue_since=now)


def page_requested(state: SessionState, now: datetime, timers: QueueTimers) -> SessionState | None:
    """A client asked for a page: activity. None or a draining state means the session is gone (the caller's 404)."""
    current = advance(state, now, timers)
    if current is None or current.queue == Queue.DRAINING:
        return current
    if current.queue == Queue.STALE:
        return _reactivated(current, now)
    return replace(current, last_activity=_later(current.last_activity, now))  # active or completed


def page_cached(state: SessionState, now: datetime) -> SessionState:
    """The exporter cached a page: activity of an active or stale session; a completed, canceled or draining
    session ignores late progress."""
    _aware(now)
    if state.queue == Queue.ACTIVE:
        return replace(state, status=ExportStatus.IN_PROGRESS, last_activity=_later(state.last_activity, now))
    if state.queue == Queue.STALE:
        return replace(_reactivated(state, now), status=ExportStatus.IN_PROGRESS)
    return state


def finished(state: SessionState, now: datetime) -> SessionState:
    """Every page is cached: the session is completed (a draining one stays as it is)."""
    _aware(now)
    if state.queue == Queue.DRAINING:
        return state
    return SessionState(
        queue=Queue.COMPLETED,
        status=ExportStatus.COMPLETED,
        last_activity=_later(state.last_activity, now),
        queue_since=_later(state.queue_since, now),
    )


def failed(state: SessionState, now: datetime) -> SessionState:
    """The export failed: processing is over, so the session is completed, kept for the client to read the message
    (a draining one stays as it is)."""
    _aware(now)
    if state.queue == Queue.DRAINING:
        return state
    return replace(state, queue=Queue.COMPLETED, status=ExportStatus.FAILED, queue_since=_later(state.queue_since, now))


def canceled(state: SessionState, now: datetime) -> SessionState:
    """A client deleted the session: it drains, canceled (a draining one stays as it is)."""
    _aware(now)
    if state.queue == Queue.DRAINING:
        return state
    return replace(
        state, queue=Queue.DRAINING, status=ExportStatus.CANCELED, queue_since=_later(state.queue_since, now)
    )


def advance(state: SessionState, now: datetime, timers: QueueTimers) -> SessionState | None:
    """The session at `now` once its timers have run: None when it has been removed.

    Every move happens at its own boundary, so a session left alone for long passes through several queues at once
    and its `queue_since` is the boundary of the last move, not `now`.
    """
    _aware(now)
    current: SessionState | None = state
    while current is not None:
        following = _next_move(current, now, timers)
        if following is current:
            return current
        current = following
    return None


def accepts_pages(state: SessionState) -> bool:
    """Whether clients may still ask the session for pages (active, completed or stale)."""
    return state.queue != Queue.DRAINING


def elapsed(initiated: datetime, now: datetime) -> str:
    """The vendor's `elapsed_time`: the time since `initiated` as str(timedelta) writes it ("0:00:04.259198"),
    never negative."""
    return str(max(_aware(now) - _aware(initiated), timedelta(0)))


def stamp(moment: datetime) -> str:
    """A moment as the vendor writes it: naive UTC text with microseconds ("2019-05-02 10:39:36.560855")."""
    return _aware(moment).astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _next_move(state: SessionState, now: datetime, timers: QueueTimers) -> SessionState | None:
    """The one move the timers owe at `now` (the state itself when none)."""
    if state.queue == Queue.ACTIVE:
        # Entering active is activity too (a request or a cached page brought the session there).
        boundary = _later(state.last_activity, state.queue_since) + _seconds(timers.stale_after_seconds)
        return replace(state, queue=Queue.STALE, queue_since=boundary) if now > boundary else state
    if state.queue == Queue.STALE:
        boundary = state.queue_since + _seconds(timers.stale_seconds)
        return replace(state, queue=Queue.DRAINING, queue_since=boundary) if now > boundary else state
    if state.queue == Queue.COMPLETED:
        # Counted from the later of entering the queue and the last request: a client still paging through a
        # completed export keeps it until it has been left alone for `completed_seconds`.
        boundary = _later(state.last_activity, state.queue_since) + _seconds(timers.completed_seconds)
        return replace(state, queue=Queue.DRAINING, queue_since=boundary) if now > boundary else state
    return None if now > state.queue_since + _seconds(timers.draining_seconds) else state


def _reactivated(state: SessionState, now: datetime) -> SessionState:
    """A stale session back to active on activity at `now`."""
    return replace(
        state,
        queue=Queue.ACTIVE,
        last_activity=_later(state.last_activity, now),
        queue_since=_later(state.queue_since, now),
    )


def _later(first: datetime, second: datetime) -> datetime:
    return max(first, second)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: export session times are UTC-aware")
    return moment
