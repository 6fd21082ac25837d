"""Ending a request that is blocked on a socket: the page deadline and the stop of a task.

httpx's read timeout applies to each read, so a source that trickles one byte a second never trips it, and
a worker thread blocked in `recv` sees no checkpoint. :class:`Interrupter` knows every connection its
:class:`~runyard.operations.api_to_table.http.SourceClient` has open (the client's network backend wraps
each one in a :class:`TrackedStream`) and shuts them down from any thread: a read blocked in `recv` then
returns at once (`shutdown`, unlike `close`, wakes it on every platform we run on). It does so for two
reasons: its watchdog, when one attempt outlasts its deadline, and :meth:`Interrupter.stop`, which a task's
on-stop hook calls when the run is canceled, the lease is lost or the worker stops.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Any

import httpcore

__all__ = ["Interrupter", "TrackedStream"]


class TrackedStream(httpcore.NetworkStream):
    """A connection of one client, registered with its Interrupter while it is open."""

    def __init__(self, inner: httpcore.NetworkStream, interrupter: Interrupter) -> None:
        self._inner = inner
        self._interrupter = interrupter
        interrupter.track(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._interrupter.untrack(self)
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._interrupter.untrack(self)  # the TLS stream wraps the same socket and is tracked in its place
        return TrackedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._interrupter)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shut_down(self) -> None:
        """Make a read blocked on this connection, now or later, return at once (from any thread)."""
        sock = self._inner.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError, ValueError):  # already closed, or never connected
                sock.shutdown(socket.SHUT_RDWR)


class Interrupter:
    """The open connections of one client, and the two ways to cut them: a deadline, and a stop.

    `arm(seconds)` starts the clock of one attempt; if it is still armed when the time is up, the watchdog
    thread (started on the first `arm`) shuts every connection down and marks the attempt `expired`.
    `stop()` is for good: every connection is shut down, and any opened later is shut down at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._streams: set[TrackedStream] = set()
        self._due: float | None = None
        self._expired = False
        self._stopped = threading.Event()
        self._closed = False
        self._watchdog: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def expired(self) -> bool:
        """Whether the watchdog cut the attempt under way (until the next `arm`)."""
        with self._cond:
            return self._expired

    def track(self, stream: TrackedStream) -> None:
        with self._cond:
            self._streams.add(stream)
            cut = self._expired or self.stopped
        if cut:
            stream.shut_down()

    def untrack(self, stream: TrackedStream) -> None:
        with self._cond:
            self._streams.discard(stream)

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._due = time.monotonic() + seconds
            self._expired = False
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="runyard-request-deadline", daemon=True)
                self._watchdog.start()
            self._cond.notify_all()

    def disarm(self) -> None:
        with self._cond:
            self._due = None

    def stop(self) -> None:
        """Cut every connection now and from now on (any thread); `pause` returns at once."""
        self._stopped.set()
        self._cut()

    def pause(self, seconds: float) -> None:
        """Sleep between attempts, or less when the client is stopped meanwhile."""
        self._stopped.wait(seconds)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _cut(self) -> None:
        with self._cond:
            streams = list(self._streams)
        for stream in streams:
            stream.shut_down()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._due is None:
                    self._cond.wait()
                    continue
                remaining = self._due - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._due = None
                self._expired = True
                streams = list(self._streams)
                for stream in streams:  # shutdown() does not block: fine under the lock
                    stream.shut_down()
