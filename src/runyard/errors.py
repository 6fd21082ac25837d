"""Every error runyard raises on purpose, in one tree.

    RunyardError                     anything runyard reports to a person
    ├── ConfigError                  an operation spec or a setting is wrong (file, line, field)
    ├── NotFound                     an account, operation, run or task does not exist (or is not yours)
    ├── Conflict                     the request is valid but the current state forbids it
    │   ├── RunRejected              a launch found another run of the operation still active
    │   ├── RetryNotAllowed          retry asked for a run that is not the latest, or not Failed/Canceled
    │   └── CancelNotAllowed         cancel asked for a run that already ended
    ├── IllegalTransition            a status change the lifecycle does not allow (a bug if it escapes)
    ├── LeaseLost                    a worker's lease on a task was taken over or expired: stop writing
    └── InvalidInput                 a request parameter is malformed

Each class builds its message from attributes, so callers pass facts, not prose.
"""

from __future__ import annotations


class RunyardError(Exception):
    """Base class: its message is written for a data admin, one line."""


class ConfigError(RunyardError):
    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if source:
            where = source if line is None else f"{source}, line {line}"
        if field:
            where = f"{where}: field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class NotFound(RunyardError):
    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!s} not found")


class InvalidInput(RunyardError):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Conflict(RunyardError):
    """The request is understood, but the state of a run forbids it."""


class RunRejected(Conflict):
    def __init__(self, operation: str, rejected_run_id: int, active_run_id: int | None) -> None:
        self.operation = operation
        self.rejected_run_id = rejected_run_id
        self.active_run_id = active_run_id
        blocker = f" (run {active_run_id} is still active)" if active_run_id is not None else ""
        super().__init__(
            f"Rejected - previous load still running: operation {operation} already has an active run"
            f"{blocker}; recorded as rejected run {rejected_run_id}"
        )


class RetryNotAllowed(Conflict):
    def __init__(self, run_id: int, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} cannot be retried: {reason}")


class CancelNotAllowed(Conflict):
    def __init__(self, run_id: int, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} cannot be canceled: {reason}")


class IllegalTransition(RunyardError):
    def __init__(self, kind: str, current: str, target: str) -> None:
        self.kind = kind
        self.current = current
        self.target = target
        super().__init__(f"a {kind} cannot go from {current} to {target}")


class LeaseLost(RunyardError):
    def __init__(self, task_id: int, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        super().__init__(
            f"task {task_id} attempt {attempt}: this worker no longer holds the task's lease; "
            "another worker has taken it over or the lease expired"
        )
