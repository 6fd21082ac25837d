"""The entry point of each extra HTTP process of `runyard serve` (RUNYARD_HTTP_PROCESSES > 1).

It is a module of its own, importing nothing heavy, because a spawned process imports its target's module before it
runs anything: from here the process watches its parent within a fraction of a second of starting, and a process
whose `runyard serve` was killed while it was still importing the app (seconds on a busy machine) exits then,
instead of starting to serve for nobody. Once it serves, runyard.serve stops it gracefully instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket
    from multiprocessing.synchronize import Event

    from runyard.settings import Settings

PARENT_POLL_SECONDS = 0.1


class ParentWatch:
    """A daemon thread that ends this process when `parent` is no longer its parent: at once (os._exit) while
    nothing is served yet, through `stop` once runyard.serve has set one."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.stop: Callable[[], None] | None = None
        threading.Thread(target=self._watch, name="watch-parent", daemon=True).start()

    def _watch(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(PARENT_POLL_SECONDS)
        if self.stop is None:
            os._exit(0)  # nothing started yet: nothing to finish or close
        self.stop()


def serve_http(
    settings: Settings, sock: socket.socket, parent: int, ready: Event, forward_to: str | None = None
) -> None:
    """Watch the parent first, then import and run the app (runyard.serve.serve_http_process)."""
    watch = ParentWatch(parent)
    from runyard.serve import serve_http_process

    serve_http_process(settings, sock, watch, ready, forward_to)
