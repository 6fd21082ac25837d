"""Wakes idle workers in this process when work appears, instead of waiting for their next poll."""

from __future__ import annotations

import threading


class Wakeup:
    """A broadcast signal: `notify()` wakes every thread blocked in `wait()`."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    @property
    def generation(self) -> int:
        """Read this before looking for work, and pass it to wait(): a notify in between is not lost."""
        with self._condition:
            return self._generation

    def wait(self, timeout: float, since: int | None = None) -> bool:
        """Block until notified (after `since`, if given) or `timeout` passes; True if notified."""
        with self._condition:
            seen = self._generation if since is None else since
            return self._condition.wait_for(lambda: self._generation != seen, timeout=timeout)
