"""A whole runyard behind real HTTP: create_app(runtime) served by uvicorn on loopback, with a worker and a scheduler.

`rest_stack(home, database_url)` builds Settings (short leases and polls) -> open_store -> bootstrap_admin,
adds a second account "other" with its own administrator, operator and viewer (and an operator and a viewer
in "default"), builds a Runtime with the engine's executors, serves create_app(runtime) on 127.0.0.1 from a
thread and starts the runtime's worker and scheduler. Everything is stopped when the block ends.

`cheap_hashing()` swaps in a fast argon2 hasher for as long as it is open (a production hash takes ~0.5 s).
`database(kind, ...)` makes a migrated, empty database of either backend, for module-scoped stacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr

from runyard.app import create_app
from runyard.demo import demo_specs
from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services import accounts, tokens
from runyard.services.accounts import bootstrap_admin, create_account, create_user
from runyard.services.operations import deploy
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from tests import live_server
from tests.conftest import drop_postgres, new_postgres_url
from tests.factories import sleep_task

T = TypeVar("T")

STARTUP_SECONDS = 10.0
RUN_TIMEOUT = 30.0
HTTP_TIMEOUT = 15.0
ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "user-password-1"  # every other user's

MISSING = {"detail": "Authentication credentials were not provided."}
FAILED = {"detail": "Authentication failed"}
FINAL_STATUSES = frozenset({"completed", "completed_with_errors", "failed", "canceled", "rejected"})


@dataclass(frozen=True)
class User:
    login: str
    password: str
    account: str
    role: str


#: Every user the stack creates: (account, role) -> user.
USERS: dict[tuple[str, str], User] = {
    ("default", "administrator"): User("admin", ADMIN_PASSWORD, "default", "administrator"),
    ("default", "operator"): User("opal", PASSWORD, "default", "operator"),
    ("default", "viewer"): User("vic", PASSWORD, "default", "viewer"),
    ("other", "administrator"): User("other-admin", PASSWORD, "other", "administrator"),
    ("other", "operator"): User("other-op", PASSWORD, "other", "operator"),
    ("other", "viewer"): User("other-viewer", PASSWORD, "other", "viewer"),
}


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, poll: float = 0.05) -> T:
    """Call `check` until it returns something truthy (returned); AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


# --- cheap hashing and databases --------------------------------------------------------------------------------


@contextmanager
def cheap_hashing() -> Iterator[None]:
    """Argon2 at a test cost while open (the same swap as tests/integration/test_auth.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        tokens._dummy_hash.cache_clear()
        try:
            yield
        finally:
            tokens._dummy_hash.cache_clear()  # nobody after us may inherit a cheap dummy hash


@contextmanager
def database(kind: str, directory: Path, pg_template: Callable[[], str]) -> Iterator[str]:
    """A migrated, empty runs database: SQLite under `directory`, or a copy of the PostgreSQL template."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'runyard.db'}"
        store = Store(url)
        migrate.upgrade(store)
        store.dispose()
        yield url
        return
    url = new_postgres_url(pg_template())
    try:
        yield url
    finally:
        drop_postgres(url)


# --- uvicorn in a thread ------------------------------------------------------------------------------------------


def serving(app: Any) -> AbstractContextManager[str]:
    return live_server.serving(app, name="uvicorn-rest")


# --- the stack ----------------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tasks_spec(configuration_id: str, tasks: list[dict[str, Any]], account: str = "default") -> TaskGraphOperation:
    return TaskGraphOperation.model_validate(
        {"configuration_type": "tasks", "configuration_id": configuration_id, "account": account, "tasks": tasks}
    )


def long_task(name: str, seconds: float = 120.0, **extra: Any) -> dict[str, Any]:
    """A sleep task that checks for cancellation every 0.1 s."""
    return sleep_task(name, seconds, units=int(seconds * 10), **extra)


@dataclass
class RestStack:
    settings: Settings
    runtime: Runtime
    base_url: str
    _clients: list[httpx.Client] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)
    _demo: DemoSourceServer | None = None

    @property
    def store(self) -> Store:
        return self.runtime.store

    # -- credentials -------------------------------------------------------------------------------------------

    def login(self, login: str, password: str) -> str:
        """An access JWT from POST /api/v1/auth/token."""
        response = httpx.post(
            f"{self.base_url}/api/v1/auth/token", json={"login": login, "password": password}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == self.settings.token_ttl_seconds
        return str(body["access_token"])

    def token_of(self, account: str, role: str) -> str:
        """A (cached) access JWT of the stack's user with this role in this account."""
        user = USERS[(account, role)]
        if user.login not in self._tokens:
            self._tokens[user.login] = self.login(user.login, user.password)
        return self._tokens[user.login]

    def client(self, token: str | None = None, *, header: str = "Authorization") -> httpx.Client:
        """An httpx.Client on the stack sending `token` as a bearer (or in `header`, e.g. TOKEN); closed at the end."""
        headers: dict[str, str] = {}
        if token is not None:
            headers = bearer(token) if header == "Authorization" else {header: token}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=HTTP_TIMEOUT)
        self._clients.append(client)
        return client

    def as_user(self, account: str, role: str) -> httpx.Client:
        return self.client(self.token_of(account, role))

    # -- operations and runs -----------------------------------------------------------------------------------

    def deploy(self, configuration_id: str, tasks: list[dict[str, Any]], account: str = "default") -> int:
        """Deploy a `tasks` operation (factories.sleep_task and friends); its id."""
        (deployed,) = deploy(self.store, [tasks_spec(configuration_id, tasks, account)], self.runtime.registry)
        return deployed.operation_id

    def deploy_demo(self, account: str = "default") -> int:
        """The demo-hr api-to-table operation in `account`, reading a DemoSourceServer started on first use."""
        if self._demo is None:
            self._demo = DemoSourceServer(DemoSourceConfig())
            self._demo.start()
        (spec,) = [s for s in demo_specs(self._demo.base_url) if s.configuration_id == "demo-hr"]
        spec = spec.model_copy(update={"account": account})
        (deployed,) = deploy(self.store, [spec], self.runtime.registry)
        return deployed.operation_id

    def launch(self, client: httpx.Client, operation_id: int, run_type: str = "incremental") -> dict[str, Any]:
        """POST /operations/{id}/runs, which must answer 202; the run."""
        response = client.post(f"/api/v1/operations/{operation_id}/runs", json={"type": run_type})
        assert response.status_code == 202, response.text
        run: dict[str, Any] = response.json()
        return run

    def run(self, client: httpx.Client, run_id: int) -> dict[str, Any]:
        response = client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run

    def wait_status(
        self, client: httpx.Client, run_id: int, statuses: frozenset[str] = FINAL_STATUSES, timeout: float = RUN_TIMEOUT
    ) -> dict[str, Any]:
        """The run (read through the API) once its status is one of `statuses`."""

        def reached() -> dict[str, Any] | None:
            run = self.run(client, run_id)
            return run if run["status"] in statuses else None

        return wait_for(reached, timeout=timeout, what=f"run {run_id} to reach {sorted(statuses)}")

    def wait_task(self, client: httpx.Client, run_id: int, name: str, status: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            for task in all_items(client, f"/api/v1/runs/{run_id}/tasks"):
                if task["name"] == name and task["status"] == status:
                    return task
            return None

        return wait_for(reached, timeout=RUN_TIMEOUT, what=f"task {name} of run {run_id} to be {status}")

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


def all_items(client: httpx.Client, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paged list, walking its pages (largest page size the lists allow for runs and loads)."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = client.get(path, params={**(params or {}), "page": page, "page_size": 200})
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if page * body["page_size"] >= body["total"]:
            return items
        page += 1


def _add_users(store: Store) -> None:
    create_account(store, "other")
    for (account, role), user in USERS.items():
        if user.login != "admin":
            create_user(store, account=account, login=user.login, password=user.password, role=role)


@contextmanager
def rest_stack(home: Path, database_url: str, **overrides: Any) -> Iterator[RestStack]:
    """A started stack (see the module docstring) on `database_url`, with `overrides` of its settings; everything is
    stopped when the block ends."""
    settings = Settings(
        home=home,
        database_url=database_url,
        lease_seconds=3,
        heartbeat_seconds=0.3,
        poll_seconds=0.1,
        sweep_seconds=0.3,
        admin_password=SecretStr(ADMIN_PASSWORD),
        **overrides,
    )
    with cheap_hashing():
        store = open_store(settings)
        bootstrap_admin(store, ADMIN_PASSWORD)
        _add_users(store)
        runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
        stack: RestStack | None = None
        try:
            worker = runtime.worker("rest")
            scheduler = runtime.scheduler()
            worker.start()
            scheduler.start()
            try:
                with serving(create_app(runtime)) as url:
                    stack = RestStack(settings, runtime, url)
                    yield stack
            finally:
                if stack is not None:
                    stack.close_clients()
                worker.stop(1.0)  # long sleep tasks are given back, not waited for
                scheduler.stop()
        finally:
            runtime.close()
            if stack is not None and stack._demo is not None:
                stack._demo.stop()
