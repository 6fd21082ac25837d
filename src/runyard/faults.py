"""Named crash points for the reliability tests: `RUNYARD_CRASH_AT=<name>` kills the process there.

Dagster's debug crash flags work the same way. Unset (always, outside tests), a crash point costs a dict lookup.

The points: `claim.after_commit` (worker), `extract.page_<n>` (before api-to-table fetches page n),
`stage.after_rename` (a manifest written), `load.before_commit` (DuckDB), `load.after_commit_before_meta`,
`cancel.after_signal` (a heartbeat reported the cancel), `storage.copy_mid_file`, `transform.mid_step`
(table-to-table), `cdc.mid_batch`, `cdc.after_commit_before_confirm`, `stream.before_commit`.
tests/reliability/test_crash_matrix.py kills a worker at most of them.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("RUNYARD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
