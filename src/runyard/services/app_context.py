"""What the HTTP app needs from the process that serves it: the settings, the store, the run services.

The API and the UI read and steer through these and nothing else: they never import the wiring
(runyard.runtime) or the worker. runyard.runtime.Runtime is one; the run services carry the process's
way to wake its workers when a launch adds work.
"""

from __future__ import annotations

from typing import Protocol

from runyard.services.runs import RunService
from runyard.settings import Settings
from runyard.store.database import Store


class AppContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def runs(self) -> RunService: ...
