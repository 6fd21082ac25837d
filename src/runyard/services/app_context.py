"""What the HTTP app needs from the process that serves it: the settings, the store, the run services.

The API and the UI read and steer through these and nothing else: they never import the wiring
(runyard.runtime) or the worker. runyard.runtime.Runtime is one; the run services carry the process's
way to wake its workers when a launch adds work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from runyard.services.runs import RunService
from runyard.settings import Settings
from runyard.store.database import Store

if TYPE_CHECKING:
    from runyard.services.exports import ExportService
    from runyard.staging import Staging
    from runyard.warehouse.base import WarehouseProvider


class AppContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def runs(self) -> RunService: ...

    @property
    def warehouses(self) -> WarehouseProvider | None:
        """The accounts' warehouses, in the process that holds them (None in a process that only answers HTTP)."""
        ...

    @property
    def exports(self) -> ExportService:
        """The process's export sessions (spec 004): one service, shared with its scheduler."""
        ...

    @property
    def staging(self) -> Staging:
        """Where exports cache their pages (every process reaches it)."""
        ...
