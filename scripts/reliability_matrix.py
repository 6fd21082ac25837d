#!/usr/bin/env python3
"""Check docs/reliability.md against the test suite, and read a pytest run's results back into its rows.

docs/reliability.md has one table row per line of the reliability matrix (R1-R23 faults, S1-S18 attacks,
I1-I7 invariants). Each row names the tests that check it as `path::test_name` (a parametrized id, as in
`path::test_name[sqlite]`, is allowed and ignored for the existence check) and starts its status cell with
**tested**, **partly** or **not yet**.

    python scripts/reliability_matrix.py                 # every named test exists? (exit 1 if not)
    python scripts/reliability_matrix.py --files         # the test files the doc names, one a line
    python scripts/reliability_matrix.py --junit r.xml   # each row's result in that pytest run

Refresh the doc's "Last result" column with:

    .venv/bin/pytest -p no:cacheprovider --junitxml=/tmp/r.xml $(.venv/bin/python scripts/reliability_matrix.py --files)
    .venv/bin/python scripts/reliability_matrix.py --junit /tmp/r.xml

(`make test` needs the test PostgreSQL server for the tests' PostgreSQL halves; without it they are skipped.)
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"

#: Every row of /work/shared/RELIABILITY.md's matrix, in its order: the doc must have a row for each.
MATRIX_IDS: tuple[str, ...] = (
    *(f"R{n}" for n in range(1, 24)),
    *(f"S{n}" for n in range(1, 19)),
    *(f"I{n}" for n in range(1, 8)),
)
STATUSES = ("tested", "partly", "not yet")

_ROW = re.compile(r"^\|\s*([RSI]\d+)\s*\|(.*)\|\s*$")
_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^\]`]*\])?`")
_STATUS = re.compile(r"\*\*(tested|partly|not yet)\*\*")
# Results, worst first: a row takes the worst result of its tests.
_ORDER = ("failed", "missing", "skipped", "passed")


@dataclass(frozen=True)
class Ref:
    """One `path::test_name` of a row (without its parametrized id)."""

    path: str
    name: str

    def __str__(self) -> str:
        return f"{self.path}::{self.name}"


@dataclass
class Row:
    id: str
    cells: list[str]
    refs: list[Ref] = field(default_factory=list)
    status: str | None = None


def parse_rows(text: str) -> dict[str, Row]:
    """The table rows of the doc whose first cell is a matrix id, by id (a second row of one id is an error)."""
    rows: dict[str, Row] = {}
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match is None:
            continue
        row_id = match.group(1)
        if row_id in rows:
            raise ValueError(f"{row_id} has two rows in the doc")
        cells = [cell.strip() for cell in match.group(2).split("|")]
        row = Row(row_id, cells)
        seen: set[Ref] = set()
        for path, name, _ in _REF.findall(line):
            ref = Ref(path, name)
            if ref not in seen:
                seen.add(ref)
                row.refs.append(ref)
        found = _STATUS.search(line)
        row.status = found.group(1) if found else None
        rows[row_id] = row
    return rows


def load_rows(doc: Path = DOC) -> dict[str, Row]:
    return parse_rows(doc.read_text(encoding="utf-8"))


def ref_problem(ref: Ref, root: Path = ROOT) -> str | None:
    """Why `ref` does not name a test of the repository, or None when it does."""
    path = root / ref.path
    if not path.is_file():
        return f"{ref}: no file {ref.path}"
    source = path.read_text(encoding="utf-8")
    if re.search(rf"^\s*(?:async\s+)?def {re.escape(ref.name)}\(", source, re.MULTILINE) is None:
        return f"{ref}: {ref.path} defines no {ref.name}"
    return None


def problems(rows: dict[str, Row], root: Path = ROOT) -> list[str]:
    """Everything wrong with the doc's rows: a matrix id without a row, a row without a status, a tested or
    partly row naming no test, a named test that does not exist."""
    found = [f"{row_id}: no row in docs/reliability.md" for row_id in MATRIX_IDS if row_id not in rows]
    for row in rows.values():
        if row.status is None:
            found.append(f"{row.id}: its status is none of {', '.join(f'**{s}**' for s in STATUSES)}")
        elif row.status != "not yet" and not row.refs:
            found.append(f"{row.id}: **{row.status}** but it names no test")
        found += [f"{row.id}: {problem}" for ref in row.refs if (problem := ref_problem(ref, root)) is not None]
    return found


def test_files(rows: dict[str, Row]) -> list[str]:
    return sorted({ref.path for row in rows.values() for ref in row.refs})


# --- junit results -------------------------------------------------------------------------------------


def _case_result(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def _case_path(classname: str, root: Path) -> str | None:
    """`tests.unit.test_x` or `tests.unit.test_x.TestClass` as the file's path `tests/unit/test_x.py`."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (root / candidate).is_file():
            return candidate
    return None


def read_junit(xml_path: Path, root: Path = ROOT) -> dict[Ref, list[str]]:
    """Every test case of a pytest junit file as (file, test name) -> the results of its parametrized cases."""
    tree = ET.parse(xml_path)  # noqa: S314 - pytest's own output
    results: dict[Ref, list[str]] = {}
    for case in tree.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "").split("[", 1)[0]
        path = case.get("file") or _case_path(classname, root)
        if path is None or not name:
            continue
        results.setdefault(Ref(path, name), []).append(_case_result(case))
    return results


def ref_result(ref: Ref, results: dict[Ref, list[str]]) -> str:
    """passed (every case passed, or some skipped and the rest passed), failed, skipped (all), or missing."""
    cases = results.get(ref)
    if not cases:
        return "missing"
    if "failed" in cases:
        return "failed"
    if "passed" in cases:
        return "passed"
    return "skipped"


def worst(results: Iterable[str]) -> str:
    given = list(results)
    return min(given, key=_ORDER.index) if given else "no tests"


def report(rows: dict[str, Row], results: dict[Ref, list[str]]) -> tuple[list[str], bool]:
    """One line per row (and one per test under it); whether any test failed."""
    lines: list[str] = []
    failed = False
    for row_id in MATRIX_IDS:
        row = rows.get(row_id)
        if row is None:
            lines.append(f"{row_id}: no row")
            continue
        per_ref = [(ref, ref_result(ref, results)) for ref in row.refs]
        failed = failed or any(result == "failed" for _, result in per_ref)
        lines.append(f"{row_id} [{row.status}]: {worst(result for _, result in per_ref)}")
        for ref, result in per_ref:
            skipped = results.get(ref, []).count("skipped")
            note = f" ({skipped} case(s) skipped)" if result == "passed" and skipped else ""
            lines.append(f"    {result:8} {ref}{note}")
    return lines, failed


def summary(rows: dict[str, Row]) -> str:
    counts = {status: sum(row.status == status for row in rows.values()) for status in STATUSES}
    return ", ".join(f"{counts[status]} {status}" for status in STATUSES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", type=Path, default=DOC, help="the doc to read (default docs/reliability.md)")
    parser.add_argument("--junit", type=Path, help="a pytest --junitxml file: print each row's result in it")
    parser.add_argument("--files", action="store_true", help="print the test files the doc names, one a line")
    args = parser.parse_args(argv)
    out = sys.stdout

    rows = load_rows(args.doc)
    if args.files:
        out.write("".join(f"{path}\n" for path in test_files(rows)))
        return 0
    found = problems(rows)
    if found:
        out.write("".join(f"{problem}\n" for problem in found))
        out.write(f"{len(found)} problem(s) in {args.doc}\n")
        return 1
    refs = sum(len(row.refs) for row in rows.values())
    out.write(f"{len(rows)} rows ({summary(rows)}); all {refs} named tests exist\n")
    if args.junit is None:
        return 0
    lines, failed = report(rows, read_junit(args.junit))
    out.write("".join(f"{line}\n" for line in lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
