"""Spec 001's `code`: one line per metrics type, in a data admin's words (runyard.services.metrics.summary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runyard.services.metrics import RunningTask, code_summary, format_latency, format_rate, summary


@pytest.mark.parametrize(
    ("metrics_type", "records", "rate", "latency", "note", "expected"),
    [
        ("extract", 12345, 2310.4, 42.0, None, "Extracting: 12,345 records, 2,310/s, page latency 42 ms"),
        ("extract", 0, 0.0, None, None, "Extracting: 0 records, 0/s"),
        ("extract", 100, 50.0, 0.0, None, "Extracting: 100 records, 50/s, page latency 0 ms"),
        ("load", 0, 0.0, 180.0, "committed 3 tables", "Loading: committed 3 tables in 180 ms"),
        ("load", 0, 0.0, None, "committed 1 table", "Loading: committed 1 table"),
        ("load", 5000, 1000.0, 2500.0, None, "Loading: 5,000 records, 1,000/s, load latency 2.5 s"),
        ("stream", 5200, 310.0, 800.0, None, "Streaming: 5,200 changes, 310/s, latency 0.8 s"),
        (
            "hwm",
            0,
            0.0,
            3.0,
            "updated_at = 2026-01-01T00:00:00 (stored)",
            "High watermark: updated_at = 2026-01-01T00:00:00 (stored)",
        ),
        ("hwm", 0, 0.0, None, None, "High watermark: reading the stored value"),
        ("task", 30, 2.5, 100.0, None, "Running: 30 records, 2.5/s, latency 100 ms"),
        ("something-new", 1, 1.0, None, None, "Running: 1 records, 1.0/s"),
    ],
)
def test_summary(
    metrics_type: str, records: int, rate: float, latency: float | None, note: str | None, expected: str
) -> None:
    assert summary(metrics_type, records, rate, latency, note) == expected


def test_latency_and_rate_formats() -> None:
    assert format_latency(999.4) == "999 ms"
    assert format_latency(1000.0) == "1.0 s"
    assert format_latency(50.0, seconds=True) == "0.1 s"
    assert format_rate(0.0) == "0/s"
    assert format_rate(9.96) == "10.0/s"
    assert format_rate(12.6) == "13/s"


def test_code_summary_rates_records_over_the_time_since_the_task_started() -> None:
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    task = RunningTask(
        task_id=1,
        run_id=1,
        run_key="k",
        name="Process [employees]",
        metrics_type="extract",
        account="default",
        owner="admin",
        started_at=now - timedelta(seconds=4),
        records=1000,
        last_record_at=now,
        latency_last=42.0,
        latency_min=40.0,
        latency_max=44.0,
        latency_avg=42.0,
        note=None,
    )
    assert code_summary(task, now) == "Extracting: 1,000 records, 250/s, page latency 42 ms"
