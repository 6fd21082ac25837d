"""Named crash points for the reliability tests: `RUNYARD_CRASH_AT=<name>` kills the process there, and
`RUNYARD_PAUSE_AT=<name>` holds it there: the process writes `<RUNYARD_PAUSE_FILE>.reached` and waits until
`RUNYARD_PAUSE_FILE` exists, so a test can act (cancel the run, say) at exactly that point.

Dagster's debug crash flags work the same way. Unset (always, outside tests), a crash point costs a dict lookup.

The points: `claim.after_commit` (worker), `extract.page_<n>` (before api-to-table fetches page n),
`stage.after_rename` (a manifest written), `load.before_commit` (DuckDB), `load.after_commit_before_meta`,
`cancel.after_signal` (a heartbeat reported the cancel), `storage.copy_mid_file`, `transform.mid_step`
(table-to-table), `cdc.mid_batch`, `cdc.after_commit_before_confirm`, `stream.before_commit`,
`launch.before_commit` (RunService.launch: the run and its tasks inserted, the transaction not committed) and
`launch.after_commit` (committed, before the answer).
tests/reliability/test_crash_matrix.py kills a worker at most of them; tests/reliability/test_cancel_at_commit.py
pauses one at the load's commit; tests/reliability/test_launch_crash.py kills `runyard serve` at the launch's two.

`RUNYARD_LOSE_ACK=<name>[:<count>]` makes a write commit and then fail, as when the connection drops between
the database's commit and its answer (a lost acknowledgement): after the named write's transaction has
committed, `lost_ack(name)` raises the OperationalError a dropped connection raises, the first <count> times
in the process (default 1). The names: the worker's `claim` (only a claim that took a task), `heartbeat`,
`finish` and `release` (`TaskLeases`). tests/reliability/test_lost_ack.py sets them.
"""

from __future__ import annotations

import os
import signal
import threading
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


_lost_acks: dict[str, int] = {}  # how many acknowledgements of each write this process has lost so far
_lost_acks_lock = threading.Lock()


def lost_ack(name: str) -> None:
    """Call right after the write `name` committed: with `RUNYARD_LOSE_ACK=<name>[:<count>]`, raise as a dropped
    connection would, the first <count> times (default 1). The write stays committed; the caller sees an error."""
    setting = os.environ.get("RUNYARD_LOSE_ACK")
    if setting is None:
        return
    target, _, count = setting.partition(":")
    if target != name:
        return
    with _lost_acks_lock:
        lost = _lost_acks.get(name, 0)
        if lost >= int(count or 1):
            return
        _lost_acks[name] = lost + 1
    import sqlalchemy as sa  # only here: a process that loses no acknowledgement never pays for it

    raise sa.exc.OperationalError(
        f"COMMIT -- {name}",
        None,
        ConnectionError(f"server closed the connection unexpectedly (RUNYARD_LOSE_ACK: {name} was committed)"),
        connection_invalidated=True,
    )
