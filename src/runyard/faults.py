"""Named crash points for the reliability tests: `RUNYARD_CRASH_AT=<name>` kills the process there.

Dagster's debug crash flags work the same way. Unset (always, outside tests), a crash point costs a dict lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("RUNYARD_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
