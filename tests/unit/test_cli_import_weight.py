"""The CLI's short commands (`runyard runs`, `login`, `sql`, `export`...) start without loading the data engine:
pyarrow and duckdb are imported only by the processes that move data (`serve`, `worker`, `run`)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_neither_pyarrow_nor_duckdb() -> None:
    code = "import sys, runyard.cli; print(','.join(m for m in ('pyarrow', 'duckdb') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
