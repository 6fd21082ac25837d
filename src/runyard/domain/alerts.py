"""Alerts: the kinds runyard raises about an operation's runs, and the events notifications carry. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AlertKind(StrEnum):
    FAILED = "failed"  # a run Failed
    COMPLETED_WITH_ERRORS = "completed_with_errors"  # a run Completed with Errors
    RUNNING_LONG = "running_long"  # a run still going past its normal duration (raised while it runs)
    ROWS_LOW = "rows_low"  # a run loaded far fewer rows than usual
    ROWS_HIGH = "rows_high"  # a run loaded far more rows than usual
    OVERDUE = "overdue"  # no successful run within the expected interval

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    AlertKind.FAILED: "Failed run",
    AlertKind.COMPLETED_WITH_ERRORS: "Completed with errors",
    AlertKind.RUNNING_LONG: "Running long",
    AlertKind.ROWS_LOW: "Few rows",
    AlertKind.ROWS_HIGH: "Many rows",
    AlertKind.OVERDUE: "Overdue",
}


class AlertState(StrEnum):
    """What the API and the Alerts page filter on: open (and not silenced), silenced (open, silenced until a time
    still to come) and resolved."""

    OPEN = "open"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class AlertEvent(StrEnum):
    """What a notification announces."""

    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert as the API, the UI and notifications see it. `state` is worked out at `now` (a silence ends)."""

    id: int
    account_id: int
    operation_id: int
    configuration_id: str
    run_id: int | None
    run_type: str | None
    kind: AlertKind
    state: AlertState
    summary: str  # one line: "demo-hr: run 42 Failed"
    evidence: str  # why, in numbers: "ran 42 min; its last 20 incremental runs took 6 to 9 min"
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    silenced_until: datetime | None


def alert_state(resolved_at: datetime | None, silenced_until: datetime | None, now: datetime) -> AlertState:
    if resolved_at is not None:
        return AlertState.RESOLVED
    if silenced_until is not None and silenced_until > now:
        return AlertState.SILENCED
    return AlertState.OPEN
