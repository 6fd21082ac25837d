"""The queues of a paged-export session (runyard.domain.exports): every move, its exact boundary, and clock skew."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard.domain import exports
from runyard.domain.exports import (
    QUEUES,
    ExportStatus,
    Queue,
    QueueTimers,
    SessionState,
    accepts_pages,
    advance,
    canceled,
    elapsed,
    failed,
    finished,
    page_cached,
    page_requested,
    stamp,
    started,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
DEFAULT = QueueTimers()
SHRUNK = QueueTimers(completed_seconds=0.2, draining_seconds=0.05, stale_after_seconds=0.1, stale_seconds=0.15)
BOTH = pytest.mark.parametrize("timers", [DEFAULT, SHRUNK], ids=["default", "shrunk"])


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(queue: Queue, status: ExportStatus = ExportStatus.IN_PROGRESS, since: float = 0.0) -> SessionState:
    """A session that entered `queue` at `since` seconds, its last activity then."""
    return SessionState(queue=queue, status=status, last_activity=at(since), queue_since=at(since))


def stale_session(timers: QueueTimers) -> SessionState:
    """A session started at T0 and left alone until it went stale."""
    session = advance(page_cached(started(T0), T0), at(timers.stale_after_seconds) + TICK, timers)
    assert session is not None
    assert session.queue == Queue.STALE
    return session


def completed_session() -> SessionState:
    """A session whose every page was cached at T0."""
    return finished(page_cached(started(T0), T0), T0)


# --- names and values -------------------------------------------------------------------------------------------


def test_the_vendor_names_and_order() -> None:
    assert [str(queue) for queue in QUEUES] == ["active", "completed", "draining", "stale"]
    assert [str(status) for status in ExportStatus] == [
        "ADDED-TO-QUEUE",
        "IN-PROGRESS",
        "COMPLETED",
        "CANCELED",
        "FAILED",
    ]
    assert (DEFAULT.completed_seconds, DEFAULT.draining_seconds, DEFAULT.stale_after_seconds) == (300.0, 5.0, 240.0)
    assert DEFAULT.stale_seconds == 300.0


@pytest.mark.parametrize("field", ["completed_seconds", "draining_seconds", "stale_after_seconds", "stale_seconds"])
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_timers_are_numbers_of_seconds(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        QueueTimers(**{field: value})


def test_times_must_carry_a_zone() -> None:
    naive = datetime(2026, 3, 2, 9, 0)  # the mistake under test
    with pytest.raises(ValueError, match="no time zone"):
        started(naive)
    with pytest.raises(ValueError, match="no time zone"):
        stamp(naive)
    with pytest.raises(ValueError, match="no time zone"):
        SessionState(Queue.ACTIVE, ExportStatus.ADDED, last_activity=naive, queue_since=T0)


def test_the_module_imports_the_standard_library_only() -> None:
    tree = ast.parse(Path(exports.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "datetime", "enum"}


# --- active and stale -------------------------------------------------------------------------------------------


def test_a_new_session_is_active_and_added() -> None:
    assert started(T0) == SessionState(Queue.ACTIVE, ExportStatus.ADDED, last_activity=T0, queue_since=T0)


def test_a_cached_page_keeps_an_active_session_in_progress() -> None:
    session = page_cached(started(T0), at(3))
    assert session == SessionState(Queue.ACTIVE, ExportStatus.IN_PROGRESS, last_activity=at(3), queue_since=T0)


@BOTH
def test_an_active_session_goes_stale_when_idle_for_more_than_stale_after(timers: QueueTimers) -> None:
    session = page_cached(started(T0), T0)
    boundary = at(timers.stale_after_seconds)
    assert advance(session, boundary, timers) == session  # exactly stale_after idle: still active
    assert advance(session, boundary + TICK, timers) == SessionState(
        Queue.STALE, ExportStatus.IN_PROGRESS, last_activity=T0, queue_since=boundary
    )


@BOTH
def test_a_stale_session_keeps_its_status(timers: QueueTimers) -> None:
    session = advance(started(T0), at(timers.stale_after_seconds) + TICK, timers)
    assert session is not None
    assert (session.queue, session.status) == (Queue.STALE, ExportStatus.ADDED)


@BOTH
def test_activity_keeps_a_session_active(timers: QueueTimers) -> None:
    session: SessionState | None = started(T0)
    step = timers.stale_after_seconds * 0.9
    for index in range(1, 20):
        assert session is not None
        session = (
            page_requested(session, at(step * index), timers) if index % 2 else page_cached(session, at(step * index))
        )
    assert session is not None
    assert session.queue == Queue.ACTIVE
    assert session.queue_since == T0


@BOTH
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0], ids=["at-once", "midway", "at-the-limit"])
def test_a_request_brings_a_stale_session_back_within_stale_seconds(timers: QueueTimers, fraction: float) -> None:
    stale = stale_session(timers)
    now = stale.queue_since + timedelta(seconds=timers.stale_seconds * fraction)
    assert page_requested(stale, now, timers) == SessionState(
        Queue.ACTIVE, ExportStatus.IN_PROGRESS, last_activity=now, queue_since=now
    )


@BOTH
def test_a_cached_page_brings_a_stale_session_back(timers: QueueTimers) -> None:
    stale = advance(started(T0), at(timers.stale_after_seconds) + TICK, timers)
    assert stale is not None
    now = stale.queue_since + timedelta(seconds=timers.stale_seconds / 2)
    assert page_cached(stale, now) == SessionState(
        Queue.ACTIVE, ExportStatus.IN_PROGRESS, last_activity=now, queue_since=now
    )


@BOTH
def test_a_reactivated_session_counts_its_idle_time_afresh(timers: QueueTimers) -> None:
    back = page_requested(stale_session(timers), at(timers.stale_after_seconds * 2), timers)
    assert back is not None
    assert back.queue == Queue.ACTIVE
    limit = back.last_activity + timedelta(seconds=timers.stale_after_seconds)
    assert advance(back, limit, timers) == back
    again = advance(back, limit + TICK, timers)
    assert again is not None
    assert (again.queue, again.queue_since) == (Queue.STALE, limit)


@BOTH
def test_a_stale_session_drains_after_stale_seconds(timers: QueueTimers) -> None:
    stale = stale_session(timers)
    boundary = stale.queue_since + timedelta(seconds=timers.stale_seconds)
    assert advance(stale, boundary, timers) == stale
    drained = advance(stale, boundary + TICK, timers)
    assert drained == SessionState(Queue.DRAINING, ExportStatus.IN_PROGRESS, last_activity=T0, queue_since=boundary)
    assert page_requested(stale, boundary + TICK, timers) == drained  # too late: the caller answers 404


# --- completed and failed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("queue", [Queue.ACTIVE, Queue.STALE, Queue.COMPLETED])
def test_finished_completes_the_session(queue: Queue) -> None:
    assert finished(state(queue), at(7)) == SessionState(
        Queue.COMPLETED, ExportStatus.COMPLETED, last_activity=at(7), queue_since=at(7)
    )


@pytest.mark.parametrize("queue", [Queue.ACTIVE, Queue.STALE])
def test_failed_completes_the_session_so_the_client_can_read_the_message(queue: Queue) -> None:
    assert failed(state(queue), at(7)) == SessionState(
        Queue.COMPLETED, ExportStatus.FAILED, last_activity=T0, queue_since=at(7)
    )


@BOTH
def test_a_completed_session_drains_after_completed_seconds(timers: QueueTimers) -> None:
    done = completed_session()
    boundary = at(timers.completed_seconds)
    assert advance(done, boundary, timers) == done
    assert advance(done, boundary + TICK, timers) == SessionState(
        Queue.DRAINING, ExportStatus.COMPLETED, last_activity=T0, queue_since=boundary
    )


@BOTH
def test_a_failed_session_drains_after_completed_seconds(timers: QueueTimers) -> None:
    broken = failed(started(T0), at(1))
    boundary = at(1 + timers.completed_seconds)
    assert advance(broken, boundary, timers) == broken
    drained = advance(broken, boundary + TICK, timers)
    assert drained is not None
    assert (drained.queue, drained.status, drained.queue_since) == (Queue.DRAINING, ExportStatus.FAILED, boundary)


@BOTH
def test_a_client_paging_through_a_completed_export_keeps_it(timers: QueueTimers) -> None:
    session: SessionState | None = completed_session()
    step = timers.completed_seconds * 0.9
    for index in range(1, 20):
        assert session is not None
        session = page_requested(session, at(step * index), timers)
    assert session is not None
    assert (session.queue, session.queue_since, session.last_activity) == (Queue.COMPLETED, T0, at(step * 19))
    boundary = session.last_activity + timedelta(seconds=timers.completed_seconds)
    assert advance(session, boundary, timers) == session
    drained = advance(session, boundary + TICK, timers)
    assert drained is not None
    assert (drained.queue, drained.queue_since) == (Queue.DRAINING, boundary)


@pytest.mark.parametrize("queue", [Queue.COMPLETED, Queue.DRAINING])
def test_late_progress_is_ignored(queue: Queue) -> None:
    session = state(queue, ExportStatus.COMPLETED)
    assert page_cached(session, at(1)) == session


# --- draining, canceled and removed -----------------------------------------------------------------------------


@BOTH
def test_a_draining_session_is_removed_after_draining_seconds(timers: QueueTimers) -> None:
    draining = state(Queue.DRAINING, ExportStatus.COMPLETED)
    boundary = at(timers.draining_seconds)
    assert advance(draining, boundary, timers) == draining
    assert advance(draining, boundary + TICK, timers) is None


@pytest.mark.parametrize("queue", [Queue.ACTIVE, Queue.COMPLETED, Queue.STALE])
def test_cancel_drains_the_session_from_any_queue(queue: Queue) -> None:
    assert canceled(state(queue), at(9)) == SessionState(
        Queue.DRAINING, ExportStatus.CANCELED, last_activity=T0, queue_since=at(9)
    )


@pytest.mark.parametrize("event", [finished, failed, canceled, page_cached])
def test_a_draining_session_stays_as_it_is(event: Callable[[SessionState, datetime], SessionState]) -> None:
    draining = state(Queue.DRAINING, ExportStatus.CANCELED)
    assert event(draining, at(1)) == draining


@BOTH
def test_a_request_to_a_draining_or_removed_session_finds_nothing(timers: QueueTimers) -> None:
    draining = canceled(started(T0), at(0))
    assert page_requested(draining, at(timers.draining_seconds), timers) == draining  # unchanged: the caller's 404
    assert page_requested(draining, at(timers.draining_seconds) + TICK, timers) is None


@pytest.mark.parametrize(
    ("queue", "accepts"),
    [(Queue.ACTIVE, True), (Queue.COMPLETED, True), (Queue.STALE, True), (Queue.DRAINING, False)],
)
def test_which_queues_serve_pages(queue: Queue, accepts: bool) -> None:
    assert accepts_pages(state(queue)) is accepts


# --- many moves at once -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "queue", "since"),
    [
        (240, Queue.ACTIVE, 0),
        (240.000001, Queue.STALE, 240),
        (500, Queue.STALE, 240),
        (540, Queue.STALE, 240),
        (540.000001, Queue.DRAINING, 540),
        (545, Queue.DRAINING, 540),
        (545.000001, None, None),
        (2000, None, None),
    ],
)
def test_an_abandoned_active_session_moves_through_the_queues_at_their_boundaries(
    idle: float, queue: Queue | None, since: float | None
) -> None:
    session = advance(started(T0), at(idle), DEFAULT)
    if queue is None:
        assert session is None
    else:
        assert session is not None
        assert (session.queue, session.queue_since, session.last_activity) == (queue, at(since or 0), T0)


@pytest.mark.parametrize(
    ("idle", "queue", "since"),
    [(300, Queue.COMPLETED, 0), (301, Queue.DRAINING, 300), (305, Queue.DRAINING, 300), (306, None, None)],
)
def test_an_abandoned_completed_session_moves_through_the_queues_at_their_boundaries(
    idle: float, queue: Queue | None, since: float | None
) -> None:
    session = advance(completed_session(), at(idle), DEFAULT)
    if queue is None:
        assert session is None
    else:
        assert session is not None
        assert (session.queue, session.queue_since) == (queue, at(since or 0))


def test_shrunk_timers_jump_the_same_way() -> None:
    session = started(T0)
    assert advance(session, at(0.1 + 0.15 + 0.05), SHRUNK) is not None  # draining since 0.25 s, at its limit
    assert advance(session, at(0.3) + TICK, SHRUNK) is None
    stale = advance(session, at(0.2), SHRUNK)
    assert stale is not None
    assert (stale.queue, stale.queue_since) == (Queue.STALE, at(0.1))


@st.composite
def sessions(draw: st.DrawFn) -> SessionState:
    """A session after a few events at increasing times, each event applied to the timers' view of the session."""
    session: SessionState | None = started(T0)
    now = T0
    for event in draw(st.lists(st.sampled_from(["request", "cached", "finished", "failed", "canceled"]), max_size=6)):
        now += timedelta(milliseconds=draw(st.integers(min_value=0, max_value=400)))
        assert session is not None
        current = advance(session, now, SHRUNK)
        if current is None:
            break
        if event == "request":
            current = page_requested(current, now, SHRUNK)
        elif event == "cached":
            current = page_cached(current, now)
        elif event == "finished":
            current = finished(current, now)
        elif event == "failed":
            current = failed(current, now)
        else:
            current = canceled(current, now)
        if current is None:
            break
        session = current
    assert session is not None
    return session


@settings(max_examples=300, deadline=None)
@given(sessions(), st.integers(min_value=0, max_value=2_000_000), st.integers(min_value=0, max_value=2_000_000))
def test_advancing_in_steps_is_advancing_at_once(session: SessionState, first: int, second: int) -> None:
    start = max(session.last_activity, session.queue_since)
    middle = start + timedelta(microseconds=first)
    end = middle + timedelta(microseconds=second)
    halfway = advance(session, middle, SHRUNK)
    stepped = None if halfway is None else advance(halfway, end, SHRUNK)
    assert stepped == advance(session, end, SHRUNK)
    if stepped is not None:
        assert stepped.queue_since >= session.queue_since
        assert stepped.queue_since <= end


# --- clock skew -------------------------------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("queue", QUEUES)
def test_an_earlier_now_moves_no_session(timers: QueueTimers, queue: Queue) -> None:
    session = state(queue, since=100)
    assert advance(session, at(40), timers) == session
    assert advance(session, at(99.999), timers) == session


@BOTH
def test_events_with_an_earlier_now_never_move_times_backwards(timers: QueueTimers) -> None:
    active = page_cached(started(at(100)), at(100))
    assert page_requested(active, at(90), timers) == active
    assert page_cached(active, at(90)) == active
    assert finished(active, at(90)) == SessionState(
        Queue.COMPLETED, ExportStatus.COMPLETED, last_activity=at(100), queue_since=at(100)
    )
    assert failed(active, at(90)).queue_since == at(100)
    assert canceled(active, at(90)).queue_since == at(100)
    stale = state(Queue.STALE, since=100)
    assert page_requested(stale, at(90), timers) == SessionState(
        Queue.ACTIVE, ExportStatus.IN_PROGRESS, last_activity=at(100), queue_since=at(100)
    )


# --- the vendor's text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=4, microseconds=259198), "0:00:04.259198"),
        (timedelta(seconds=4), "0:00:04"),  # as str(timedelta): no fraction when there is none
        (timedelta(hours=26, minutes=3, seconds=1), "1 day, 2:03:01"),
        (timedelta(0), "0:00:00"),
        (timedelta(seconds=-3), "0:00:00"),  # clock skew: never negative
    ],
)
def test_elapsed_is_written_as_a_timedelta(delta: timedelta, text: str) -> None:
    assert elapsed(T0, T0 + delta) == text


def test_elapsed_across_zones() -> None:
    paris = timezone(timedelta(hours=2))
    assert elapsed(T0, datetime(2026, 3, 2, 11, 0, 1, tzinfo=paris)) == "0:00:01"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2019, 5, 2, 10, 39, 36, 560855, tzinfo=UTC), "2019-05-02 10:39:36.560855"),
        (datetime(2019, 5, 2, 10, 39, 36, tzinfo=UTC), "2019-05-02 10:39:36.000000"),
        (datetime(2019, 5, 2, 12, 39, 36, 5, tzinfo=timezone(timedelta(hours=2))), "2019-05-02 10:39:36.000005"),
    ],
)
def test_stamp_is_naive_utc_text_with_microseconds(moment: datetime, text: str) -> None:
    assert stamp(moment) == text
