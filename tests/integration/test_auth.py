"""Authentication against the real application over real HTTP: `runyard.app.create_app` on a real Runtime (its
AppContext), with its worker and scheduler, served by uvicorn on loopback (tests/integration/rest_harness.py's
`rest_stack`). These tests pin the auth contract (spec 001, spec 002, RELIABILITY S2, S4, S5, S6) on the routes
clients call.

Each test runs on SQLite and PostgreSQL. The tests share one stack per backend for the module (`shared_stack`, on
rest_harness.database); the `site` fixture puts back what a test changed (users' roles and activity, API tokens,
sign-in attempts) and each launch gets an operation of its own. The test of RUNYARD_QUERY_TOKEN_AUTH=false starts
a stack of its own with that setting (the `database_url` fixture). The routes:

- signing in: POST /api/v1/auth/token, and spec 001's POST /rest/v1/token-auth/issue where a test is about spec 001;
- who am I: GET /v1/auth/whoami (spec 003: its own errors come in spec 003's shape, so the native 401 bodies are read
  from GET /api/v1/runs, which any signed-in role may read, and spec 002's from GET /api/v1/bulk_metadata/job/);
- an operator-only action: launching a run, POST /api/v1/operations/{id}/runs;
- an administrator-only page: GET /api/v1/users.

No route says which kind of credential let a request in (the Principal's `via`): an API token is seen at work by the
`last_used_at` it records, a JWT by the identity whoami answers for it. No route changes a user's role, so the
role-change test writes the role in the store, as an administrator's tool would.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.api.auth import TokenService
from runyard.services import accounts, tokens
from runyard.services.tokens import create_api_token, get_principal, list_api_tokens, principal_for_api_token
from runyard.store.database import Store
from runyard.store.tables import api_tokens, runs, sign_in_attempts, users
from tests.conftest import BACKENDS
from tests.factories import sleep_task
from tests.integration.rest_harness import (
    ADMIN_PASSWORD,
    FAILED,
    HTTP_TIMEOUT,
    MISSING,
    PASSWORD,
    USERS,
    RestStack,
    bearer,
    database,
    rest_stack,
)

VIEWER = "vic"  # the stack's viewer in account "default" (rest_harness.USERS)
VIEWER_PASSWORD = PASSWORD
LOGIN_ROUTES = ("/api/v1/auth/token", "/rest/v1/token-auth/issue")  # native, spec 001
READ_ROUTE = "/api/v1/runs"  # any signed-in role; native 401 bodies
WHOAMI_ROUTE = "/v1/auth/whoami"
SPEC001_ROUTE = "/etl/rest/v1/tasks/"  # spec 001's running tasks (administrators), where ?Authorization= is meant
SPEC002_ROUTE = "/api/v1/bulk_metadata/job/"
OPERATION_NUMBERS = itertools.count(1)  # each test launches an operation of its own


# --- the stack under test -----------------------------------------------------------------------------------------


@dataclass
class Site:
    stack: RestStack
    client: httpx.Client  # sends no credential of its own
    account_id: int
    admin_id: int
    viewer_id: int

    @property
    def store(self) -> Store:
        return self.stack.store

    def login(self, login: str, password: str) -> str:
        """An access JWT from POST /api/v1/auth/token."""
        return self.stack.login(login, password)

    def whoami(self, **headers: str) -> httpx.Response:
        return self.client.get(WHOAMI_ROUTE, headers=headers)

    def read(self, **headers: str) -> httpx.Response:
        return self.client.get(READ_ROUTE, headers=headers)

    def identity(self, login: str) -> dict[str, Any]:
        """What whoami answers for the user `login` of account "default"."""
        role, user_id = ("administrator", self.admin_id) if login == "admin" else ("viewer", self.viewer_id)
        return {"account": "default", "login": login, "role": role, "user_id": user_id}

    def admin(self) -> httpx.Client:
        return self.stack.as_user("default", "administrator")

    def deploy_quick(self) -> int:
        """A new `tasks` operation of one task that ends at once: what the launch route launches."""
        return self.stack.deploy(f"quick-{next(OPERATION_NUMBERS)}", [sleep_task("quick")])

    def launch(self, operation_id: int, token: str) -> httpx.Response:
        return self.client.post(
            f"/api/v1/operations/{operation_id}/runs", json={"type": "incremental"}, headers=bearer(token)
        )

    def runs_of(self, operation_id: int) -> list[tuple[int, int | None]]:
        """Each run of the operation as (its id, who launched it)."""
        query = sa.select(runs.c.id, runs.c.created_by).where(runs.c.operation_id == operation_id)
        with self.store.read() as conn:
            return [(int(row.id), row.created_by) for row in conn.execute(query)]

    def last_used_at(self) -> datetime | None:
        (token,) = list_api_tokens(self.store, self.account_id)
        return token.last_used_at

    def set_user(self, user_id: int, **values: Any) -> None:
        with self.store.write() as conn:
            conn.execute(users.update().where(users.c.id == user_id).values(**values))


def assert_unauthorized(response: httpx.Response, body: dict[str, str] = FAILED) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers["www-authenticate"] == "Bearer"


def _site(stack: RestStack, client: httpx.Client) -> Site:
    with stack.store.read() as conn:
        found = {row.login: row for row in conn.execute(sa.select(users.c.login, users.c.id, users.c.account_id))}
    admin, viewer = found["admin"], found[VIEWER]
    return Site(stack, client, int(admin.account_id), int(admin.id), int(viewer.id))


@contextmanager
def running_site(tmp_path: Path, database_url: str, **overrides: Any) -> Iterator[Site]:
    """A site on a stack of its own (for settings the shared stacks do not have)."""
    with rest_stack(tmp_path / "home", database_url, **overrides) as stack:
        yield _site(stack, stack.client())


@pytest.fixture(scope="module", params=BACKENDS)
def shared_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    """One stack per backend for the module (a stack takes about a second to start); `site` resets it after each
    test."""
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"auth-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as stack,
    ):
        yield stack


@pytest.fixture
def site(shared_stack: RestStack) -> Iterator[Site]:
    """The shared stack as the test finds it: the users as the harness made them, no API token, no sign-in attempt.
    Whatever the test changed is put back afterwards, whether it passed or not."""
    store = shared_stack.store
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(api_tokens)).scalar_one() == 0
    with httpx.Client(base_url=shared_stack.base_url, timeout=HTTP_TIMEOUT) as client:
        try:
            yield _site(shared_stack, client)
        finally:
            with store.write() as conn:
                conn.execute(api_tokens.delete())
                conn.execute(sign_in_attempts.delete())  # refused logins must not add up to a throttle
                for user in USERS.values():
                    conn.execute(users.update().where(users.c.login == user.login).values(role=user.role, active=True))


# --- login and JWTs -----------------------------------------------------------------------------------------------


def test_login_then_bearer_header(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)

    response = site.whoami(**bearer(token))

    assert response.status_code == 200, response.text
    assert response.json() == site.identity("admin")
    assert site.read(**bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("login", "password"),
    [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)],
    ids=["admin-wrong-password", "nobody-admin-password"],  # the ids they have always had
)
def test_login_refused(site: Site, login: str, password: str) -> None:
    for route in LOGIN_ROUTES:
        response = site.client.post(route, json={"login": login, "password": password})

        assert_unauthorized(response)


def test_unknown_login_still_costs_a_password_check(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def spy(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return accounts.verify_password(password_hash, password)

    monkeypatch.setattr(tokens, "verify_password", spy)  # the server runs in this process, on a thread

    for login, password in [("nobody", ADMIN_PASSWORD), ("admin", "wrong-password")]:
        assert_unauthorized(site.client.post(LOGIN_ROUTES[0], json={"login": login, "password": password}))
    assert len(checked) == 2
    assert all(found.startswith("$argon2id$") for found in checked)


def test_jwt_in_query_parameter(site: Site) -> None:
    """Spec 001: its login answers `{"token"}`, and the token works as `?Authorization=Bearer%20<token>`."""
    issued = site.client.post(LOGIN_ROUTES[1], json={"login": "admin", "password": ADMIN_PASSWORD})
    assert issued.status_code == 200, issued.text
    token = issued.json()["token"]

    tasks = site.client.get(f"{SPEC001_ROUTE}?Authorization=Bearer%20{token}")
    me = site.client.get(f"{WHOAMI_ROUTE}?Authorization=Bearer%20{token}")

    assert tasks.status_code == 200, tasks.text
    assert tasks.json() == []
    assert me.status_code == 200, me.text
    assert me.json() == site.identity("admin")


def test_query_parameter_ignored_when_not_allowed(tmp_path: Path, database_url: str) -> None:
    with running_site(tmp_path, database_url, query_token_auth=False) as site:
        token = site.login("admin", ADMIN_PASSWORD)

        assert_unauthorized(site.client.get(f"{SPEC001_ROUTE}?Authorization=Bearer%20{token}"), MISSING)
        assert_unauthorized(site.client.get(f"{READ_ROUTE}?Authorization=Bearer%20{token}"), MISSING)
        assert site.client.get(SPEC001_ROUTE, headers=bearer(token)).status_code == 200
        assert site.read(**bearer(token)).status_code == 200


def test_jwt_in_token_header(site: Site) -> None:
    response = site.whoami(TOKEN=site.login("admin", ADMIN_PASSWORD))

    assert response.status_code == 200, response.text
    assert response.json() == site.identity("admin")


def test_access_log_never_shows_the_query_token(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """The real app's access log (`runyard.access`, written by create_app's middleware) redacts a query token."""
    token = site.login("admin", ADMIN_PASSWORD)
    access = logging.getLogger("runyard.access")
    access.addHandler(caplog.handler)  # directly: another test may have stopped `runyard` logs propagating
    try:
        with caplog.at_level(logging.INFO, logger="runyard.access"):
            assert site.client.get(f"{SPEC001_ROUTE}?Authorization=Bearer%20{token}").status_code == 200
    finally:
        access.removeHandler(caplog.handler)

    lines = [record.getMessage() for record in caplog.records if record.name == "runyard.access"]
    assert any(f"{SPEC001_ROUTE}?Authorization=[redacted] 200" in line for line in lines), lines
    assert not any(token in line or token[-20:] in line for line in lines), lines


# --- API tokens ---------------------------------------------------------------------------------------------------


def test_api_token_in_token_header(site: Site) -> None:
    _, secret = create_api_token(site.store, site.admin_id, "scripts")
    assert site.last_used_at() is None

    response = site.whoami(TOKEN=secret)

    assert response.status_code == 200, response.text
    assert response.json() == site.identity("admin")
    assert site.last_used_at() is not None  # the API token let the request in


def test_api_token_as_bearer(site: Site) -> None:
    _, secret = create_api_token(site.store, site.viewer_id, "dashboards")
    assert site.last_used_at() is None

    response = site.whoami(**bearer(secret))

    assert response.status_code == 200, response.text
    assert response.json() == site.identity(VIEWER)
    assert site.last_used_at() is not None  # the API token let the request in


def test_api_token_in_query_string_is_refused(site: Site) -> None:
    """RELIABILITY S5: an API token never works from a URL, in any parameter."""
    _, secret = create_api_token(site.store, site.admin_id, "scripts")

    assert_unauthorized(site.client.get(f"{READ_ROUTE}?Authorization=Bearer%20{secret}"))
    assert_unauthorized(site.client.get(READ_ROUTE, params={"TOKEN": secret}), MISSING)
    assert_unauthorized(site.client.get(READ_ROUTE, params={"token": secret}), MISSING)
    assert site.last_used_at() is None


def test_revoked_token_fails_on_the_next_request(site: Site) -> None:
    admin = site.admin()
    created = admin.post("/api/v1/tokens", json={"name": "scripts"})
    assert created.status_code == 201, created.text
    token_id, secret = created.json()["id"], created.json()["token"]
    assert site.whoami(TOKEN=secret).status_code == 200

    assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 204

    assert_unauthorized(site.read(TOKEN=secret))
    assert_unauthorized(site.read(**bearer(secret)))
    assert list_api_tokens(site.store, site.account_id)[0].revoked
    assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 204  # again: a no-op


def test_tokens_are_stored_only_hashed(site: Site) -> None:
    admin = site.admin()
    created = admin.post("/api/v1/tokens", json={"name": "scripts"})
    assert created.status_code == 201, created.text
    token_id, secret = created.json()["id"], created.json()["token"]

    with site.store.read() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(api_tokens)).mappings()]

    assert len(rows) == 1
    assert not any(secret in str(value) for value in rows[0].values())
    assert rows[0]["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(f"ry_{rows[0]['prefix']}_")
    view = list_api_tokens(site.store, site.account_id)[0]
    assert (view.id, view.name, view.prefix, view.login) == (token_id, "scripts", rows[0]["prefix"], "admin")
    assert secret not in repr(view)
    listed = admin.get("/api/v1/tokens")
    assert listed.status_code == 200, listed.text
    assert [(t["id"], t["prefix"]) for t in listed.json()] == [(token_id, rows[0]["prefix"])]
    assert secret not in listed.text


def test_last_used_is_recorded_at_most_once_a_minute(site: Site) -> None:
    _, secret = create_api_token(site.store, site.admin_id, "scripts")

    assert site.whoami(TOKEN=secret).status_code == 200
    first = site.last_used_at()
    assert site.whoami(TOKEN=secret).status_code == 200
    second = site.last_used_at()

    assert first is not None
    assert second == first


def test_another_accounts_token_cannot_be_revoked(site: Site) -> None:
    token_id, secret = create_api_token(site.store, site.admin_id, "scripts")
    other_admin = site.stack.as_user("other", "administrator")

    assert other_admin.delete(f"/api/v1/tokens/{token_id}").status_code == 404
    listed = other_admin.get("/api/v1/tokens")

    assert listed.status_code == 200, listed.text
    assert listed.json() == []
    assert not list_api_tokens(site.store, site.account_id)[0].revoked
    assert site.whoami(TOKEN=secret).status_code == 200


# --- what is refused ----------------------------------------------------------------------------------------------


def test_no_credentials_gets_the_spec_002_body(site: Site) -> None:
    for response in (site.read(), site.client.get(SPEC002_ROUTE, params={"name": "any job"})):
        assert_unauthorized(response, MISSING)
        assert response.content == b'{"detail":"Authentication credentials were not provided."}'


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer ry_00000000_unknown"},
        {"TOKEN": "ry_00000000_unknown"},
        {"TOKEN": "garbage"},
    ],
)
def test_invalid_credentials_get_authentication_failed(site: Site, headers: dict[str, str]) -> None:
    response = site.read(**headers)

    assert_unauthorized(response)
    assert response.content == b'{"detail":"Authentication failed"}'


def test_an_invalid_header_is_not_rescued_by_a_valid_one(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)

    assert_unauthorized(site.read(Authorization="Bearer forged", TOKEN=token))
    assert site.read(TOKEN=token).status_code == 200


def test_token_signed_with_another_key_is_refused(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)
    principal = get_principal(site.store, site.admin_id)
    assert principal is not None
    forged = TokenService(b"x" * 32).issue(principal)  # the same claims, another key

    assert site.read(**bearer(token)).status_code == 200
    assert_unauthorized(site.read(**bearer(forged)))


def test_inactive_user_is_refused_with_jwt_and_api_token(site: Site) -> None:
    token = site.login(VIEWER, VIEWER_PASSWORD)
    _, secret = create_api_token(site.store, site.viewer_id, "dashboards")
    assert site.read(**bearer(token)).status_code == 200

    assert site.admin().delete(f"/api/v1/users/{site.viewer_id}").status_code == 204

    assert_unauthorized(site.read(**bearer(token)))
    assert_unauthorized(site.read(TOKEN=secret))
    assert principal_for_api_token(site.store, secret) is None
    assert not list_api_tokens(site.store, site.account_id)[0].revoked  # refused for the user, not the token
    assert_unauthorized(site.client.post(LOGIN_ROUTES[0], json={"login": VIEWER, "password": VIEWER_PASSWORD}))


# --- roles --------------------------------------------------------------------------------------------------------


def test_viewer_on_an_operator_route_is_forbidden(site: Site) -> None:
    operation_id = site.deploy_quick()
    token = site.login(VIEWER, VIEWER_PASSWORD)

    response = site.launch(operation_id, token)

    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Your role (viewer) cannot do this: it needs operator or administrator"}
    assert site.runs_of(operation_id) == []


def test_only_administrators_reach_admin_routes(site: Site) -> None:
    viewer = site.client.get("/api/v1/users", headers=bearer(site.login(VIEWER, VIEWER_PASSWORD)))
    admin = site.client.get("/api/v1/users", headers=bearer(site.login("admin", ADMIN_PASSWORD)))

    assert viewer.status_code == 403
    assert viewer.json() == {"detail": "Your role (viewer) cannot do this: it needs administrator"}
    assert admin.status_code == 200, admin.text
    assert [user["login"] for user in admin.json()] == ["admin", "opal", VIEWER]  # account "default"'s only


def test_role_change_is_effective_on_the_next_request_with_the_same_jwt(site: Site) -> None:
    operation_id = site.deploy_quick()
    token = site.login(VIEWER, VIEWER_PASSWORD)
    assert site.launch(operation_id, token).status_code == 403

    site.set_user(site.viewer_id, role="operator")
    promoted = site.launch(operation_id, token)

    site.set_user(site.viewer_id, role="viewer")
    demoted = site.launch(operation_id, token)

    assert promoted.status_code == 202, promoted.text
    assert demoted.status_code == 403, demoted.text
    assert site.runs_of(operation_id) == [(promoted.json()["id"], site.viewer_id)]  # launched by vic, once
