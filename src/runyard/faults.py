"""Named crash points for the reliability tests: `RUNYARD_CRASH_AT=<name>` kills the process there, and
`RUNYARD_PAUSE_AT=<name>` holds it there: the process writes `<RUNYARD_PAUSE_FILE>.reached` and waits until
`RUNYARD_PAUSE_FILE` exists, so a test can act (cancel the run, say) at exactly that point.

Dagster's debug crash flags work the same way. Unset (always, outside tests), a crash point costs a dict lookup.

The points: `claim.after_commit` (worker), `extract.page_<n>` (before api-to-table fetches page n),
`stage.after_rename` (a manifest written), `load.before_commit` (DuckDB), `load.after_commit_before_meta`,
`cancel.after_signal` (a heartbeat reported the cancel), `storage.copy_mid_file`, `transform.mid_step`
(table-to-table), `cdc.mid_batch`, `cdc.after_commit_before_confirm`, `stream.before_commit`.
tests/reliability/test_crash_matrix.py kills a worker at most of them; tests/reliability/test_cancel_at_commit.py
pauses one at the load's commit.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PAUSE_POLL_SECONDS = 0.02


def crash_point(name: str) -> None:
    if os.environ.get("RUNYARD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("RUNYARD_PAUSE_AT") == name:
        _pause(Path(os.environ["RUNYARD_PAUSE_FILE"]), name)


def _pause(gate: Path, name: str) -> None:
    gate.with_name(gate.name + ".reached").write_text(name)
    while not gate.exists():  # a test-only hold: the test creates the gate when it has done what it wanted here
        time.sleep(PAUSE_POLL_SECONDS)
