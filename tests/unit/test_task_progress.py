"""A task's progress: what a heartbeat takes to write, and gives back when the write fails; the attempt's running
totals, which make a write idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from runyard.engine.context import Progress, TaskContext
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
AT = datetime(2026, 12, 6, tzinfo=UTC)


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


def test_a_take_resets_the_deltas_and_carries_the_running_totals() -> None:
    progress = Progress()
    progress.add_records(5, AT)
    progress.add_latency(2.0)
    first = progress.take()
    progress.add_records(3, AT)
    progress.add_bytes(10)
    progress.add_latency(4.0)
    second = progress.take()

    assert (first.records, first.records_total, first.latency_count_total) == (5, 5, 1)
    assert (second.records, second.records_total, second.bytes_total) == (3, 8, 10)
    assert (second.latency_ms_total, second.latency_count_total) == (6.0, 2)
    assert progress.empty
    assert progress.records_total == 8  # the totals outlive every take


def test_progress_given_back_is_sent_again_within_the_next_totals_not_on_top_of_them() -> None:
    progress = Progress()
    progress.add_records(5, AT)
    lost = progress.take()  # its write committed, but the worker never heard so: it gives it back
    progress.give_back(lost)
    progress.add_records(2, AT)
    again = progress.take()

    assert again.records == 7  # the deltas add up, as for a write that really failed
    assert again.records_total == 7  # the total the store keeps the larger of: 5 written twice counts once


def test_a_progress_built_with_counts_alone_has_totals_at_least_as_large() -> None:
    progress = Progress(records=7, bytes=3, latencies_ms=[1.0, 2.0])

    assert (progress.records_total, progress.bytes_total) == (7, 3)
    assert (progress.latency_ms_total, progress.latency_count_total) == (3.0, 2)
