"""The domain and every operation type's plan import the standard library, the domain and runyard.errors only."""

from __future__ import annotations

import subprocess
import sys

from runyard.operations.registry import TYPE_PACKAGES

HEAVY = ("sqlalchemy", "httpx", "pyarrow", "duckdb", "fastapi", "pydantic", "yaml", "jinja2", "fsspec")
DOMAIN = (
    "statuses",
    "transitions",
    "graph",
    "runs",
    "search",
    "schedules",
    "exports",
    "alerts",
    "alert_rules",
    "notifications",
    "rate_limits",
)


def test_domain_and_plans_load_no_io_library() -> None:
    modules = [f"runyard.domain.{name}" for name in DOMAIN] + [
        f"runyard.operations.{package}.plan" for package in TYPE_PACKAGES
    ]
    code = f"import sys, {', '.join(modules)}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_every_type_package_has_a_plan_module() -> None:
    assert set(TYPE_PACKAGES) >= {"tasks", "api_to_table"}
