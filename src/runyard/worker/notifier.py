"""The notifier loop: sends the notification deliveries that are due, every `notify_seconds`.

It runs in every process that runs workers: `deliver_due` claims each delivery before sending it, so two notifiers
never send the same one, and a notifier that dies leaves its claims to expire and be taken by another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from runyard.domain.notifications import Backoff
from runyard.services.notifications import DEFAULT_BACKOFF, DeliveryReport, Sender, deliver_due
from runyard.store.database import Store

log = logging.getLogger("runyard.notifier")

BATCH = 20  # deliveries claimed per pass; a pass repeats at once while it finds a full batch


class Notifier:
    def __init__(
        self,
        store: Store,
        send: Sender,
        *,
        notify_seconds: float,
        public_url: str | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], datetime] | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.notify_seconds = notify_seconds
        self.public_url = public_url
        self.backoff = backoff
        self.clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self._close = close
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runyard-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops at once between sends; a send under way finishes first (its timeouts bound the wait)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.notify_seconds + 60)
            self._thread = None
        if self._close is not None:
            self._close()

    def deliver_once(self) -> DeliveryReport:
        return deliver_due(
            self.store, self.send, self.clock(), limit=BATCH, public_url=self.public_url, backoff=self.backoff
        )

    def _loop(self) -> None:
        wait = 0.0
        while not self._stopping.wait(wait):
            wait = self.notify_seconds
            try:
                report = self.deliver_once()
            except Exception:  # a database hiccup must not end the loop: log, try again at the next pass
                log.exception("notifier: pass failed; trying again in %s s", self.notify_seconds)
                continue
            if report.claimed:
                log.info("notifier: %s sent, %s to retry, %s failed", report.sent, report.retrying, report.failed)
            if report.claimed >= BATCH:
                wait = 0.0
