"""api-to-table's `mode: stream`: the demo source's growing badge-swipe feed polled into DuckDB, micro-batch by
micro-batch, each loaded exactly once with its watermark, until the run is canceled; a later run resumes."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, first_swipe_id
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.store.tables import tasks
from tests.integration.api_harness import ApiHarness, api_harness, wait_for

POLL_SECONDS = 0.4
INTERVAL_MS = 20  # 50 swipes a second
STREAM = "Stream [badge_swipes]"
BATCH = re.compile(
    r"^Batch (\d+): (\d+) records loaded into badge_swipes (\d+) ms after .*\((?:polled (\d+) ms after the previous "
    r"poll, )?the batch took (\d+) ms\)"
)


def stream_yaml(source_url: str, *, initial: str | None = None) -> str:
    start = f", initial_value: '{initial}'" if initial else ""
    return f"""
configuration_type: api-to-table
configuration_id: swipes-stream
base_url: "{source_url}"
endpoints:
  - name: badge_swipes
    path: /badge_swipes
    records: data
    pagination: {{style: cursor, limit: 40}}
    primary_key: id
    incremental: {{cursor_field: swiped_at, param: updated_since{start}}}
    mode: stream
    poll_seconds: {POLL_SECONDS}
"""


def task_metrics(harness: ApiHarness, task_id: int) -> tuple[int, float | None, float | None]:
    """The stored records, last latency and highest latency of a task."""
    query = sa.select(tasks.c.records_processed, tasks.c.latency_ms_last, tasks.c.latency_ms_max)
    with harness.runtime.store.read() as conn:
        records, last, highest = conn.execute(query.where(tasks.c.id == task_id)).one()
    return int(records), last, highest


def loads(harness: ApiHarness) -> int:
    return int(harness.scalar("SELECT count(*) FROM _runyard.loads"))


def assert_exactly_once(harness: ApiHarness, config: DemoSourceConfig) -> int:
    """Every swipe from the feed's first to the highest loaded is in the table once; the stored watermark is the
    newest swipe's time; each micro-batch has its load record and its own load time. Returns the rows."""
    assert config.feed_start is not None
    first_id = first_swipe_id(int(1000 * config.feed_start), config.feed_interval_ms)
    rows, distinct, low, high = harness.query(
        "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM badge_swipes"
    )[0]
    assert (rows, distinct, low) == (high - first_id + 1, high - first_id + 1, first_id)
    newest_ms = harness.scalar("SELECT epoch_ms(max(swiped_at)) FROM badge_swipes")
    stored = harness.warehouse.high_watermark(1, "badge_swipes")
    assert stored is not None
    assert round(datetime.fromisoformat(stored).timestamp() * 1000) == newest_ms
    batches = harness.scalar("SELECT count(DISTINCT _runyard_loaded_at) FROM badge_swipes")
    assert batches == loads(harness)
    return int(rows)


def cancel_and_wait(harness: ApiHarness, run_id: int) -> None:
    harness.runtime.runs.cancel(run_id)
    run = harness.wait(run_id)
    assert run.status is RunStatus.CANCELED, harness.describe(run_id)
    task = harness.task(run_id, STREAM)
    assert task.status is TaskStatus.CANCELED
    assert any(m.text.startswith("Stream of badge_swipes stopped after") for m in task.messages), harness.describe(
        run_id
    )


def test_a_stream_loads_each_micro_batch_once_until_canceled_and_a_new_run_resumes(tmp_path: Path) -> None:
    config = DemoSourceConfig(employees=50, feed_interval_ms=INTERVAL_MS, feed_start=time.time() - 1)
    with api_harness(tmp_path, config) as harness:
        operation = harness.deploy_text(stream_yaml(harness.source.base_url))
        run = harness.launch(operation, RunType.INCREMENTAL)
        tasks = harness.tasks(run.id)
        assert list(tasks) == [STREAM]  # one long task, no Data Load
        wait_for(lambda: loads(harness) >= 4 or None, timeout=60, what="four micro-batches")
        assert harness.task(run.id, STREAM).status is TaskStatus.RUNNING
        cancel_and_wait(harness, run.id)
        first = assert_exactly_once(harness, config)
        assert first > 50  # the backlog of the first second, then the feed's growth

        resumed = harness.launch(operation, RunType.INCREMENTAL)
        wait_for(lambda: harness.count("badge_swipes") > first + 20 or None, timeout=60, what="the stream to resume")
        cancel_and_wait(harness, resumed.id)
        messages = [m.text for m in harness.task(resumed.id, STREAM).messages]
        assert "(the watermark of the last batch loaded)" in messages[0], messages
        assert assert_exactly_once(harness, config) > first


def test_a_streams_latency_stays_within_its_poll_interval_plus_its_batch_time(tmp_path: Path) -> None:
    """Batch k's oldest swipe happened after the previous poll began (it would have been in that poll's answer
    otherwise), so its delay to the load is at most the time between the two polls plus batch k's own time. The
    polls start a poll interval apart at least, more when a batch takes longer or the machine is busy: the bound
    uses the gap the stream measured, so a busy machine cannot break it."""
    config = DemoSourceConfig(employees=50, feed_interval_ms=INTERVAL_MS)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with api_harness(tmp_path, config) as harness:
        operation = harness.deploy_text(stream_yaml(harness.source.base_url, initial=now))
        run = harness.launch(operation, RunType.INCREMENTAL)
        wait_for(lambda: loads(harness) >= 6 or None, timeout=60, what="six micro-batches")
        stream_id = harness.task(run.id, STREAM).id
        wait_for(lambda: task_metrics(harness, stream_id)[1] is not None or None, timeout=30, what="a latency")
        cancel_and_wait(harness, run.id)
        batches = [BATCH.match(m.text) for m in harness.task(run.id, STREAM).messages]
        found = [(int(m[1]), int(m[3]), None if m[4] is None else int(m[4]), int(m[5])) for m in batches if m]
        assert [number for number, _, _, _ in found] == list(range(1, len(found) + 1))
        assert len(found) >= 6
        poll_ms = POLL_SECONDS * 1000
        assert found[0][2] is None  # the first batch has no previous poll
        for number, latency, gap, took in found[1:]:
            assert gap is not None, number  # every later batch says how long after the previous poll it polled
            assert gap >= poll_ms - 2, (number, gap)  # polls start an interval apart at least
            # +2 ms: the messages round to the millisecond, and the feed's times are whole milliseconds.
            assert latency <= gap + took + 2, (number, latency, gap, took)
        records, _, highest = task_metrics(harness, stream_id)
        assert records == harness.count("badge_swipes")
        assert highest is not None
        assert highest <= max(latency for _, latency, _, _ in found) + 1
