"""Smoke test of bench/export.py: a small table paged through a real `runyard serve`, beside DuckDB's COPY."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "export.py"
ROWS = 20_000


def test_export_bench_pages_every_row_in_time_order(tmp_path: Path) -> None:
    out = tmp_path / "export.json"

    done = subprocess.run(
        [sys.executable, str(BENCH), "--rows", str(ROWS), "--repeat", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    report = json.loads(out.read_text())
    assert report["rows"] == ROWS
    assert report["runyard"]["rows_per_second"] > 0
    assert report["duckdb_copy"]["rows_per_second"] > 0
    assert report["ratio"] > 0
    assert report["check_passed"] is True
    (export,) = report["runyard"]["exports"]
    assert export["check"] == {
        "rows": ROWS,
        "expected_rows": ROWS,
        "pages": 2,
        "ordered": True,
        "passed": True,
        "problems": [],
    }
    assert "row check: passed" in done.stdout


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))  # as `python bench/export.py` has it: benchlib beside it
    sys.modules[spec.name] = module  # dataclasses look modules up by name
    spec.loader.exec_module(module)
    return module


COLUMNS = ("id", "customer", "region", "reference", "note", "amount", "order_date", "_runyard_loaded_at")


def _page(ids: range) -> bytes:
    header = ",".join(f'"{name}"' for name in COLUMNS)
    lines = [f'{i},"customer",north,"ref","ok",1.5,2024-01-01,2026-01-01 00:00:00.{i:03d}' for i in ids]
    return ("\n".join([header, *lines]) + "\n").encode()


@pytest.mark.parametrize(
    ("pages", "problem"),
    [
        ([range(1, 4), range(4, 7), range(7, 9)], None),
        ([range(4, 7), range(1, 4), range(7, 9)], "do not come out 1, 2, ... N"),
        ([range(1, 4), range(4, 7)], "6 rows paged, the table holds 8"),
        ([range(1, 4), range(4, 6), range(6, 9)], "page 2: 2 rows, not 3"),
    ],
    ids=["right", "pages-swapped", "page-missing", "short-page"],
)
def test_the_row_check_fails_on_wrong_data(bench: ModuleType, pages: list[range], problem: str | None) -> None:
    assert tuple(bench.COLUMNS) == COLUMNS
    export = bench.Export(
        seconds=1.0,
        first_page_seconds=0.1,
        pages=[_page(ids) for ids in pages],
        requests=len(pages),
        not_cached=0,
        total_pages=None,
        total_rows=None,
        server_cpu_seconds=0.0,
        client_cpu_seconds=0.0,
        token="t",
    )

    check = bench.check_export(export, 8, 3, "csv")

    assert check.passed is (problem is None), check.problems
    if problem is not None:
        assert any(problem in each for each in check.problems), check.problems
