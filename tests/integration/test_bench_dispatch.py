"""Smoke test of bench/dispatch.py: the measuring function runs and returns well-formed samples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dispatch.py"


@pytest.fixture(scope="module")
def dispatch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dispatch", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))  # as `python bench/dispatch.py` has it: benchlib beside it
    sys.modules[spec.name] = module  # dataclasses and typing look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


@pytest.mark.parametrize("wakeup", [True, False], ids=["wakeup", "polling"])
def test_measure_returns_ordered_samples(dispatch: ModuleType, tmp_path: Path, wakeup: bool) -> None:
    result = dispatch.measure(
        f"sqlite:///{tmp_path / 'bench.db'}", 5, wakeup, poll_seconds=0.05, warmup=1, timeout=10.0
    )

    assert result["runs"] == 5
    assert result["wakeup"] is wakeup
    for clock in ("wall_ms", "store_ms", "launch_ms"):
        samples = result["samples"][clock]
        assert len(samples) == 5
        assert all(value >= 0 for value in samples)
        stats = result["summary"][clock]
        assert stats["median"] <= stats["p90"] <= stats["p99"] <= stats["max"]
        assert stats["max"] == max(samples)


def test_markdown_table_has_a_row_per_clock(dispatch: ModuleType, tmp_path: Path) -> None:
    result = dispatch.measure(f"sqlite:///{tmp_path / 'bench.db'}", 2, True, warmup=0)

    table = dispatch.markdown_table([result]).splitlines()

    assert table[0].startswith("| Database | Dispatch | Clock |")
    assert len(table) == 2 + len(dispatch.CLOCKS)


def test_workflow_and_schedule_triggers_give_samples_per_run(dispatch: ModuleType, tmp_path: Path) -> None:
    workflow = dispatch.measure_workflow(f"sqlite:///{tmp_path / 'workflow.db'}", 3, warmup=1)
    schedule = dispatch.measure_schedule(f"sqlite:///{tmp_path / 'schedule.db'}", 2, warmup=1)

    for result in (workflow, schedule):
        for clock in ("wall_ms", "store_ms"):
            samples = result["samples"][clock]
            assert len(samples) == result["runs"]
            assert all(value >= 0 for value in samples)
    table = dispatch.trigger_table([workflow, schedule]).splitlines()
    assert table[0].startswith("| Database | Trigger | Clock |")
    assert len(table) == 2 + 2 * 2
