"""The house's import rules, read from the source: the API and the UI never reach the wiring, the worker or the
engine, and never each other; the domain never reaches anything but the standard library and runyard.errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import runyard

SOURCE = Path(runyard.__file__).parent


def imported_modules(package: str) -> dict[str, set[str]]:
    """file -> the runyard modules it imports (module level, inside functions and under TYPE_CHECKING alike)."""
    found: dict[str, set[str]] = {}
    for path in sorted((SOURCE / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(SOURCE))] = {name for name in names if name.startswith("runyard")}
    return found


FORBIDDEN = {
    "api": ("runyard.ui", "runyard.runtime", "runyard.serve", "runyard.worker", "runyard.engine", "runyard.cli"),
    "ui": ("runyard.api", "runyard.runtime", "runyard.serve", "runyard.worker", "runyard.engine", "runyard.cli"),
    "services": ("runyard.api", "runyard.ui", "runyard.runtime", "runyard.serve", "runyard.worker", "runyard.cli"),
    "domain": tuple(
        f"runyard.{name}"
        for name in ("api", "ui", "services", "store", "engine", "worker", "operations", "staging", "warehouse")
    ),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_its_import_rules(package: str) -> None:
    broken = {
        file: sorted(name for name in names if name.startswith(FORBIDDEN[package]))
        for file, names in imported_modules(package).items()
    }
    assert {file: names for file, names in broken.items() if names} == {}


def test_the_rules_see_the_imports() -> None:
    """Guards the guard: the reader does find what the app factory composes."""
    app_imports = imported_modules(".")["app.py"]
    assert {"runyard.api", "runyard.ui"} <= app_imports
