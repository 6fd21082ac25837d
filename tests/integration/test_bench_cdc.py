"""Smoke test of bench/cdc.py: a small burst of changes streamed through a real runyard, every row accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import postgres_admin_url

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cdc.py"
CHANGES = 500


def test_cdc_bench_streams_every_change_and_reports_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "cdc.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNYARD_")}

    done = subprocess.run(
        [sys.executable, str(BENCH), "--postgres", postgres_admin_url(), "--changes", str(CHANGES), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )

    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    report = json.loads(out.read_text())["cdc"]
    assert report["rows_loaded"] == report["changes"] == CHANGES
    assert report["changes_per_second"] > 0
    assert 0 < report["latency_ms"]["median"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["run_status"] == "canceled"
    assert "rows loaded: 500 of 500" in done.stdout
