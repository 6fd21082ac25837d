"""docs/reliability.md cannot rot: every test it names exists, and every row of the reliability matrix (R1-R23,
S1-S18, I1-I7) has its row, with a status, and names a test unless it says **not yet**.

The checks are scripts/reliability_matrix.py's own, imported from the file (scripts/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reliability_matrix.py"


@pytest.fixture(scope="module")
def matrix() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_matrix", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_every_matrix_row_is_in_the_doc(matrix: ModuleType) -> None:
    expected = [f"R{n}" for n in range(1, 24)] + [f"S{n}" for n in range(1, 19)] + [f"I{n}" for n in range(1, 8)]
    assert list(matrix.MATRIX_IDS) == expected
    rows = matrix.load_rows()
    assert sorted(set(expected) - set(rows)) == []
    assert sorted(set(rows) - set(expected)) == []


def test_every_test_the_doc_names_exists_and_every_row_has_a_status(matrix: ModuleType) -> None:
    rows = matrix.load_rows()
    assert matrix.problems(rows) == []
    assert sum(len(row.refs) for row in rows.values()) > len(rows)  # the parser found the references


def test_the_check_catches_a_missing_test_a_missing_row_and_a_missing_status(matrix: ModuleType) -> None:
    doc = textwrap.dedent(
        """
        | # | promise | tests | status | last |
        |---|---|---|---|---|
        | R1 | x | `tests/unit/test_reliability_doc.py::test_every_matrix_row_is_in_the_doc[a-b]` | **tested** | ok |
        | R2 | x | `tests/unit/test_reliability_doc.py::test_that_is_not_there` | **partly**: y | ok |
        | R3 | x | `tests/unit/no_such_file.py::test_x` | **tested** | ok |
        | R4 | x | — | **tested** | ok |
        | R5 | x | — | **not yet**: nothing | — |
        | R6 | x | `tests/unit/test_reliability_doc.py::test_every_matrix_row_is_in_the_doc` | fine | ok |
        """
    )
    rows = matrix.parse_rows(doc)
    here = "tests/unit/test_reliability_doc.py"
    assert [str(ref) for ref in rows["R1"].refs] == [f"{here}::test_every_matrix_row_is_in_the_doc"]
    found = matrix.problems(rows, ROOT)
    assert not [p for p in found if p.startswith(("R1:", "R5:"))], found  # a parametrized id; a not-yet row
    assert any(p.startswith("R2:") and "defines no test_that_is_not_there" in p for p in found), found
    assert any(p.startswith("R3:") and "no file tests/unit/no_such_file.py" in p for p in found), found
    assert any(p.startswith("R4:") and "names no test" in p for p in found), found
    assert any(p.startswith("R6:") and "status" in p for p in found), found
    assert "R7: no row in docs/reliability.md" in found
    with pytest.raises(ValueError, match="R1 has two rows"):
        matrix.parse_rows(doc + doc)


def test_junit_results_become_row_results(matrix: ModuleType, tmp_path: Path) -> None:
    junit = tmp_path / "r.xml"
    junit.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.test_reliability_doc" name="test_every_matrix_row_is_in_the_doc" />'
        '<testcase classname="tests.unit.test_reliability_doc" name="test_junit_results_become_row_results[a]" />'
        '<testcase classname="tests.unit.test_reliability_doc" name="test_junit_results_become_row_results[b]">'
        '<failure message="boom" /></testcase>'
        '<testcase classname="tests.unit.test_reliability_doc" name="test_the_check_catches_a_missing_test_a_missing_'
        'row_and_a_missing_status"><skipped message="no" /></testcase>'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    results = matrix.read_junit(junit, ROOT)
    here = "tests/unit/test_reliability_doc.py"
    passed = matrix.Ref(here, "test_every_matrix_row_is_in_the_doc")
    failed = matrix.Ref(here, "test_junit_results_become_row_results")
    skipped = matrix.Ref(here, "test_the_check_catches_a_missing_test_a_missing_row_and_a_missing_status")
    missing = matrix.Ref(here, "test_every_test_the_doc_names_exists_and_every_row_has_a_status")
    assert [matrix.ref_result(ref, results) for ref in (passed, failed, skipped, missing)] == [
        "passed",
        "failed",
        "skipped",
        "missing",
    ]
    assert matrix.worst(["passed", "skipped"]) == "skipped"
    assert matrix.worst(["passed", "missing", "failed"]) == "failed"

    rows = {"R1": matrix.Row("R1", [], refs=[passed], status="tested")}
    lines, any_failed = matrix.report(rows, results)
    assert lines[:2] == ["R1 [tested]: passed", f"    passed   {passed}"]
    assert not any_failed
    rows["R2"] = matrix.Row("R2", [], refs=[passed, failed], status="partly")
    _, any_failed = matrix.report(rows, results)
    assert any_failed


def test_the_script_names_only_test_files(matrix: ModuleType) -> None:
    files = matrix.test_files(matrix.load_rows())
    assert files
    assert all(path.startswith("tests/") and Path(path).name.startswith("test_") for path in files), files
    assert all((ROOT / path).is_file() for path in files)
