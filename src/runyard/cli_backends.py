"""Where the CLI's commands act: on the local store (direct mode) or through a running server (HTTP mode).

The mode rule (`remote`): through a server when RUNYARD_URL is set or `runyard login` saved a login in
RUNYARD_HOME; otherwise on the store under RUNYARD_HOME. Both modes answer the same `Backend` protocol.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import jwt
import pydantic
from rich.console import Console

from runyard.api.compat.dag import WhoAmI
from runyard.api.schemas import OperationPublic, RunPublic, TaskPublic
from runyard.client import ClientError, RunyardClient
from runyard.domain.statuses import RunStatus, RunType, Trigger
from runyard.errors import ConfigError
from runyard.runtime import Runtime
from runyard.services.listing import RunQuery, list_runs, run_tasks
from runyard.services.operations import OperationFilter, find_operation, list_operations, set_status
from runyard.services.runs import LaunchRequest
from runyard.services.tokens import looks_like_api_token

URL_VARIABLE = "RUNYARD_URL"
TOKEN_VARIABLE = "RUNYARD_TOKEN"  # noqa: S105 - the name of the variable, not a secret
SAVED_LOGIN_FILE = "cli.json"
DEFAULT_URL = "http://127.0.0.1:8000"
LOGIN_EXPIRED = "your login expired: run `runyard login` again"
TOKEN_REFUSED = f"the server refused the token in {TOKEN_VARIABLE} (Authentication failed)"


class SavedLogin(pydantic.BaseModel):
    """What `runyard login` keeps in RUNYARD_HOME/cli.json (mode 0600)."""

    url: str
    token: str


@dataclass(frozen=True)
class Remote:
    url: str
    token: str
    auth_hint: str  # what to say when the server refuses the token


def remote(home: Path) -> Remote | None:
    """The mode rule: through a server when RUNYARD_URL is set or a login is saved in RUNYARD_HOME; else None
    (direct mode on the local store). RUNYARD_TOKEN, when set, is the token; else the saved login's."""
    url = normal_url(os.environ.get(URL_VARIABLE, ""))
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if url and token:
        return Remote(url, token, TOKEN_REFUSED)
    saved = saved_login(home)
    if not url:
        if saved is None:
            return None
        url = saved.url
    if token:
        return Remote(url, token, TOKEN_REFUSED)
    if saved is None or saved.url != url:
        raise ClientError(f"not logged in to {url}: run `runyard login` or set {TOKEN_VARIABLE}")
    return Remote(url, saved.token, LOGIN_EXPIRED)


def normal_url(url: str) -> str:
    return url.strip().rstrip("/")


def saved_login(home: Path) -> SavedLogin | None:
    path = home / SAVED_LOGIN_FILE
    try:
        return SavedLogin.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, pydantic.ValidationError):
        raise ConfigError("unreadable saved login: run `runyard login` again", source=str(path)) from None


def last_url(home: Path) -> str:
    """The server of the saved login (a broken file is about to be replaced), else the default."""
    try:
        saved = saved_login(home)
    except ConfigError:
        saved = None
    return saved.url if saved else DEFAULT_URL


def save_login(home: Path, saved: SavedLogin) -> Path:
    """Write cli.json readable by its owner only, replacing any previous login in one step."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / SAVED_LOGIN_FILE
    partial = path.with_name(f".{SAVED_LOGIN_FILE}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a stale partial file was there with other bits
    with os.fdopen(fd, "w") as handle:
        json.dump(saved.model_dump(), handle)
    os.replace(partial, path)
    return path


TOKEN_LINE = "User token : "  # noqa: S105 - a label; spec 003's scripts: `awk '/User token :/ {print $4}'`


def token_lines(found: Remote, owner: WhoAmI, now: datetime) -> list[str]:
    """What `runyard auth get-token` prints: seven lines, the seventh `User token : <token>` and nothing after it,
    so that spec 003's `sed '7q;d' | sed 's/User token : //g'` and `awk '/User token :/ {print $4}'` both give
    the bare token. The server has just accepted the token (GET /v1/auth/whoami): `owner` is who it is."""
    return [
        "runyard token of your login (send it as the header Authorization: Bearer <token>)",
        f"Server : {found.url}",
        f"Account : {owner.account}",
        f"User : {owner.login} (user {owner.user_id})",
        f"Role : {owner.role}",
        f"Expires : {_expiry(found.token, now)}",
        f"{TOKEN_LINE}{found.token}",
    ]


def _expiry(token: str, now: datetime) -> str:
    if looks_like_api_token(token):
        return "never (an API token from RUNYARD_TOKEN: it lasts until it is revoked)"
    try:
        # Read only, not verified: the server verified it a moment ago, and the CLI has no key to check it with.
        expires = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return "unknown"
    moment = datetime.fromtimestamp(expires, UTC)
    left = int((moment - now).total_seconds())
    when = "expired: run `runyard login` again" if left <= 0 else f"in {left // 60} min {left % 60} s"
    return f"{moment.isoformat(timespec='seconds')} ({when})"


class Backend(Protocol):
    """What operations, run, runs, retry and cancel need, answered by the local store or by a server."""

    def operations(self, where: OperationFilter) -> list[OperationPublic]: ...
    def find(self, ref: str, environment: str | None) -> OperationPublic: ...
    def set_status(self, operation_id: int, activated: bool, archived: bool) -> OperationPublic: ...
    def launch(self, ref: str, run_type: RunType, environment: str | None) -> RunPublic: ...
    def runs(
        self, ref: str | None, status: RunStatus | None, run_type: RunType | None, limit: int
    ) -> tuple[list[RunPublic], int]: ...
    def show(self, run_id: int) -> tuple[RunPublic, list[TaskPublic]]: ...
    def retry(self, run_id: int) -> RunPublic: ...
    def cancel(self, run_id: int) -> RunPublic: ...
    def follow(self, run_id: int) -> RunPublic: ...


@dataclass(frozen=True)
class LocalBackend:
    """Direct mode: the store under RUNYARD_HOME, no server (a worker runs the tasks)."""

    runtime: Runtime
    console: Console

    def operations(self, where: OperationFilter) -> list[OperationPublic]:
        with self.runtime.store.read() as conn:
            return [OperationPublic.of(found) for found in list_operations(conn, where=where)]

    def find(self, ref: str, environment: str | None) -> OperationPublic:
        with self.runtime.store.read() as conn:
            return OperationPublic.of(find_operation(conn, ref, environment=environment))

    def set_status(self, operation_id: int, activated: bool, archived: bool) -> OperationPublic:
        changed = set_status(
            self.runtime.store, operation_id, activated=activated, archived=archived, changed_by=local_user()
        )
        return OperationPublic.of(changed)

    def launch(self, ref: str, run_type: RunType, environment: str | None) -> RunPublic:
        with self.runtime.store.read() as conn:
            found = find_operation(conn, ref, environment=environment)
        request = LaunchRequest(operation_id=found.id, run_type=run_type, trigger=Trigger.MANUAL)
        return RunPublic.of(self.runtime.runs.launch(request))

    def runs(
        self, ref: str | None, status: RunStatus | None, run_type: RunType | None, limit: int
    ) -> tuple[list[RunPublic], int]:
        with self.runtime.store.read() as conn:
            operation_id = find_operation(conn, ref).id if ref else None
            where = RunQuery(
                account_id=None, operation_id=operation_id, status=status, run_type=run_type, page_size=limit
            )
            page = list_runs(conn, where)
        return [RunPublic.of(item) for item in page.items], page.total

    def show(self, run_id: int) -> tuple[RunPublic, list[TaskPublic]]:
        view = self.runtime.runs.get_run(run_id)
        with self.runtime.store.read() as conn:
            return RunPublic.of(view), [TaskPublic.of(task) for task in run_tasks(conn, run_id)]

    def retry(self, run_id: int) -> RunPublic:
        return RunPublic.of(self.runtime.runs.retry(run_id))

    def cancel(self, run_id: int) -> RunPublic:
        return RunPublic.of(self.runtime.runs.cancel(run_id))

    def follow(self, run_id: int) -> RunPublic:
        from runyard.progress import follow_run

        return follow_run(self.runtime.runs, run_id, self.console)


@dataclass(frozen=True)
class HttpBackend:
    """HTTP mode: a running `runyard serve`, which holds the store and the warehouse."""

    client: RunyardClient
    console: Console

    def operations(self, where: OperationFilter) -> list[OperationPublic]:
        return self.client.operations(
            type=where.configuration_type,
            environment=where.environment,
            state=where.state,
            archived=where.include_archived,
        )

    def find(self, ref: str, environment: str | None) -> OperationPublic:
        return self.client.find_operation(ref, environment=environment)

    def set_status(self, operation_id: int, activated: bool, archived: bool) -> OperationPublic:
        return self.client.set_status(operation_id, activated=activated, archived=archived)

    def launch(self, ref: str, run_type: RunType, environment: str | None) -> RunPublic:
        return self.client.launch(self.client.find_operation(ref, environment=environment).id, run_type)

    def runs(
        self, ref: str | None, status: RunStatus | None, run_type: RunType | None, limit: int
    ) -> tuple[list[RunPublic], int]:
        operation_id = self.client.find_operation(ref).id if ref else None
        page = self.client.runs(operation=operation_id, status=status, type=run_type, page_size=limit)
        return page.items, page.total

    def show(self, run_id: int) -> tuple[RunPublic, list[TaskPublic]]:
        return self.client.run(run_id), self.client.tasks(run_id)

    def retry(self, run_id: int) -> RunPublic:
        return self.client.retry(run_id)

    def cancel(self, run_id: int) -> RunPublic:
        return self.client.cancel(run_id)

    def follow(self, run_id: int) -> RunPublic:
        from runyard.progress import follow_events

        return follow_events(self.client, run_id, self.console)


def local_user() -> str:
    """Who changes an operation in direct mode, for the log: the operating system's user."""
    try:
        return f"{getpass.getuser()} (CLI, direct mode)"
    except (KeyError, OSError):  # no login name and no password entry for this uid
        return "an unknown user (CLI, direct mode)"
