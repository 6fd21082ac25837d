"""Get High Watermark checks the stored watermark against the warehouse table, and reports it in its metrics."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig
from runyard.domain.statuses import RunStatus, RunType
from runyard.store.tables import tasks
from tests.integration.api_harness import api_harness

CONFIG = DemoSourceConfig(employees=200)
HWM = "Get High Watermark [time_off]"
STATE = "SELECT high_watermark FROM _runyard.state WHERE table_name = 'time_off'"


def test_a_table_edited_by_hand_is_reported_and_the_stored_watermark_is_still_used(tmp_path: Path) -> None:
    with api_harness(tmp_path, CONFIG) as harness:
        operation = harness.deploy_demo()
        first = harness.run(operation, RunType.DESTRUCTIVE)
        assert first.status is RunStatus.COMPLETED, harness.describe(first.id)
        stored = str(harness.scalar(STATE))

        agreeing = harness.run(operation, RunType.INCREMENTAL)
        assert agreeing.status is RunStatus.COMPLETED, harness.describe(agreeing.id)
        assert [m.level for m in harness.task(agreeing.id, HWM).messages] == ["info"]

        harness.query('DELETE FROM main."time_off" WHERE updated_at = (SELECT max(updated_at) FROM main."time_off")')

        checked = harness.run(operation, RunType.INCREMENTAL)
        assert checked.status is RunStatus.COMPLETED, harness.describe(checked.id)
        task = harness.task(checked.id, HWM)
        (warning,) = [m.text for m in task.messages if m.level == "warning"]
        assert f"the stored watermark is {stored}" in warning, warning
        largest = warning.split("the largest updated_at in table time_off is ")[1].split(". Using")[0]
        assert datetime.fromisoformat(largest) < datetime.fromisoformat(stored), warning
        assert f"Using the stored value {stored}" in warning, warning
        assert harness.task(checked.id, "Process [time_off]").tables == (("time_off", 0),)  # nothing after stored
        with harness.runtime.store.read() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.id == task.id)).one()
        assert row.metrics_note == f"updated_at = {stored} (stored)"
        assert row.records_processed == 0  # it reads no data: a job's record total stays the rows it moved
        assert row.latency_count == 1  # the time the reads took
        assert row.latency_ms_last is not None
