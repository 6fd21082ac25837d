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

    def wait(self, timeout: float) -> bool:
        """Block until notified or `timeout` passes; True if notified."""
        with self._condition:
            seen = self._generation
            return self._condition.wait_for(lambda: self._generation != seen, timeout=timeout)


class NoWakeup(Wakeup):
    """For processes with no local workers (the CLI)."""

    def notify(self) -> None:
        return None
