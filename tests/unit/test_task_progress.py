"""A task's progress: what a heartbeat takes to write, and gives back when the write fails."""

from __future__ import annotations

from runyard.engine.context import TaskContext
from runyard.services.tasks import Claim

CLAIM = Claim(
    task_id=1,
    run_id=1,
    name="Process [employees]",
    executor="sleep",
    params={},
    stage="extraction",
    table=None,
    attempt=1,
    max_attempts=3,
    lease_token="token",
    worker_id="w1",
)


def test_progress_given_back_is_written_with_what_came_since() -> None:
    ctx = TaskContext(CLAIM.identity)
    ctx.add_records(5)
    ctx.record_latency(10.0)
    failed_beat = ctx.take_progress()
    ctx.add_records(2)
    ctx.record_latency(20.0)
    latest = ctx.progress.last_record_at

    ctx.give_back_progress(failed_beat)
    written = ctx.take_progress()

    assert written.records == 7
    assert written.latencies_ms == [10.0, 20.0]  # in the order they were measured
    assert written.last_record_at == latest  # the newest record's time, not the given-back one's
    assert ctx.take_progress().records == 0  # taken once


def test_progress_given_back_alone_keeps_its_time() -> None:
    ctx = TaskContext(CLAIM.identity)
    ctx.add_records(3)
    failed_beat = ctx.take_progress()

    ctx.give_back_progress(failed_beat)

    written = ctx.take_progress()
    assert (written.records, written.last_record_at) == (3, failed_beat.last_record_at)
    assert written.last_record_at is not None
