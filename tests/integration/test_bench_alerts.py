"""Smoke test of bench/alerts.py: a small store filled, evaluated, and the passes and page reads reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import postgres_admin_url

BENCH = Path(__file__).resolve().parents[2] / "bench" / "alerts.py"


def test_alerts_bench_fills_the_store_and_reports_both_backends(tmp_path: Path) -> None:
    out = tmp_path / "alerts.json"

    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--operations",
            "10",
            "--runs-per-operation",
            "60",
            "--passes",
            "3",
            "--postgres",
            postgres_admin_url(),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    report = json.loads(out.read_text())
    assert [result["backend"] for result in report["results"]] == ["sqlite", "postgresql"]
    for result in report["results"]:
        assert result["runs"] == 600
        # The newest run of source-0 is still Running an hour after its start, where its history took a minute.
        assert result["alerts_opened"] >= 1
        assert result["steady_pass_ms"]["median"] > 0
        assert result["runs_page_ms"]["median"] > 0
    assert "| sqlite | 600 |" in done.stdout
    assert "| postgresql | 600 |" in done.stdout
