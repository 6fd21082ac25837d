"""Every error runyard raises on purpose, in one tree.

    RunyardError                     anything runyard reports to a person
    ├── ConfigError                  an operation spec or a setting is wrong (file, line, field)
    ├── NotFound                     an account, operation, run or task does not exist (or is not yours)
    ├── Conflict                     the request is valid but the current state forbids it
    │   ├── RunRejected              a launch found another run of the operation still active
    │   ├── RetryNotAllowed          retry asked for a run that is not the latest, or not Failed/Canceled
    │   └── CancelNotAllowed         cancel asked for a run that already ended
    ├── TooManyRequests              over a rate limit: try again after `retry_after_seconds` (429)
    │   ├── LaunchThrottled          too many Rejected launches of one operation in the last minute
    │   └── SignInThrottled          too many failed sign-ins for a login or from an address
    ├── IllegalTransition            a status change the lifecycle does not allow (a bug if it escapes)
    ├── LeaseLost                    a worker's lease on a task was taken over or expired: stop writing
    ├── TransientError               not now, but the same work may succeed later (a file another process holds)
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


class IdempotencyKeyReused(Conflict):
    """An Idempotency-Key sent again with another request than the one it was first sent with: nothing was done.
    (The IETF draft answers 422; 409 is what this API answers for every request the state refuses.)"""

    def __init__(self, first: str) -> None:
        self.first = first
        super().__init__(
            f"this Idempotency-Key was already sent with another request (the {first}); "
            "send a new key for a new request"
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


class TooManyRequests(RunyardError):
    """Over a rate limit: nothing was done; the same request may succeed after `retry_after_seconds`."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__(message)


def _in_seconds(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{-(-seconds // 60)} min"


class LaunchThrottled(TooManyRequests):
    """A launch that would be Rejected, past the operation's limit of Rejected runs per minute: nothing recorded."""

    def __init__(
        self,
        operation: str,
        active_run_id: int | None,
        limit: int,
        retry_after_seconds: int,
        *,
        active_run_key: str | None = None,
    ) -> None:
        self.operation = operation
        self.active_run_id = active_run_id
        self.active_run_key = active_run_key
        self.limit = limit
        if active_run_key is not None:
            active = f"run_id {active_run_key}"
        else:
            active = f"run {active_run_id}" if active_run_id is not None else "another run"
        super().__init__(
            f"Too many launches: operation {operation} cannot start while {active} is still active, and {limit} "
            f"launches of it were already rejected in the last minute; this one was not recorded. "
            f"Try again in {_in_seconds(max(1, retry_after_seconds))}",
            retry_after_seconds,
        )


class SignInThrottled(TooManyRequests):
    """Too many failed sign-ins for this login or from this address. Says neither which nor whether the login
    exists, and the password was not checked."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"Too many failed sign-in attempts; try again in {_in_seconds(max(1, retry_after_seconds))}",
            retry_after_seconds,
        )


class IllegalTransition(RunyardError):
    def __init__(self, kind: str, current: str, target: str) -> None:
        self.kind = kind
        self.current = current
        self.target = target
        super().__init__(f"a {kind} cannot go from {current} to {target}")


class TransientError(RunyardError):
    """The work cannot be done now because of something outside it that should pass, such as the warehouse file
    held by another process: nothing was done, and the same work may succeed later. A task that raises it is not
    failed at once: it waits and tries again, for at most RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS
    (runyard.engine.executors). `advice` is what a data admin can do when the wait runs out."""

    advice = "Try again once the cause has passed"


class LeaseLost(RunyardError):
    def __init__(self, task_id: int, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        super().__init__(
            f"task {task_id} attempt {attempt}: this worker no longer holds the task's lease; "
            "another worker has taken it over or the lease expired"
        )
