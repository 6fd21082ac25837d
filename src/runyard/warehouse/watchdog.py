"""Stopping a statement from another thread, whichever database runs it.

Both DuckDB and PostgreSQL forget a stop that arrives while no statement runs (before the query starts, or between
two statements). So once asked (`interrupt`) or once its timeout passes, a watchdog thread stops the statement again
every `retry_seconds` until the block ends: the query is stopped whenever it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Watchdog:
    """`stop_statement` called again and again from a thread of its own once asked or past `timeout` (None: only
    when asked), until the `with` block ends; `on_first` once before the first call. `stopped`: it was asked;
    `timed_out`: the timeout passed first."""

    def __init__(
        self,
        stop_statement: Callable[[], None],
        *,
        retry_seconds: float,
        timeout: float | None = None,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self._stop_statement = stop_statement
        self._retry_seconds = retry_seconds
        self._timeout = timeout
        self._on_first = on_first
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="runyard-query-watchdog", daemon=True)
        self.stopped = False
        self.timed_out = False

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join()

    def interrupt(self) -> None:
        """Stop the statement (from any thread)."""
        self.stopped = True
        self._wake.set()

    def _watch(self) -> None:
        asked = self._wake.wait(self._timeout)
        if self._done.is_set():
            return
        if not asked:
            self.timed_out = True
        if self._on_first is not None:
            self._on_first()
        while not self._done.is_set():
            self._stop_statement()
            self._done.wait(self._retry_seconds)
