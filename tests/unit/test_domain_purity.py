"""The domain imports the standard library and runyard.errors only."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "httpx", "pyarrow", "duckdb", "fastapi", "pydantic", "yaml")


def test_domain_loads_no_io_library() -> None:
    code = (
        "import sys, runyard.domain.statuses, runyard.domain.transitions, runyard.domain.graph, "
        "runyard.domain.runs, runyard.domain.plans; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
