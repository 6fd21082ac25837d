"""`runyard run --wait` through a running server (RUNYARD_URL) shows each task's records and rate."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.integration.cli_helpers import Runyard, answers_health, free_port, wait_until

PASSWORD = "correct-horse-battery-staple"
COUNTING = """\
configuration_type: tasks
configuration_id: counting
tasks:
  - {name: "Count [employees]", executor: sleep,
     params: {seconds: 2.0, units: 20, records_per_unit: 15, table: employees}}
"""


def test_run_wait_over_http_shows_records_and_rate(tmp_path: Path) -> None:
    server = Runyard(
        tmp_path / "server",
        extra_env={"RUNYARD_ADMIN_PASSWORD": PASSWORD, "RUNYARD_POLL_SECONDS": "0.1", "RUNYARD_METRICS_SECONDS": "0.5"},
    )
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "counting.yaml").write_text(COUNTING)
    server("db", "upgrade")
    server("deploy", str(specs))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = server.spawn("serve", "--port", str(port), log=tmp_path / "serve")
    try:
        wait_until(lambda: answers_health(url, process), timeout=20, what="runyard serve to answer")
        client = Runyard(tmp_path / "client", extra_env={"RUNYARD_URL": url})
        client("login", "--login", "admin", "--password", PASSWORD)
        result = client("run", "counting", "--wait", timeout=30)
    finally:
        process.stop(signal.SIGKILL)

    line = next((line for line in result.stdout.splitlines() if "Count [employees]" in line), "")
    assert re.search(r"Completed\s+300 records\s+\d[\d,.]*/s", line), result.stdout
    assert not (client.home / "runyard.db").exists()  # it went through the server
