"""Authentication over real HTTP: a small FastAPI app using runyard.api.auth, served by uvicorn on loopback.

Each test runs on SQLite and PostgreSQL (the `store` fixture). The app is built here, not taken
from runyard.api.app, so these tests pin the auth contract (spec 001, spec 002, RELIABILITY S2,
S4, S5, S6) independently of the routes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import BaseModel

from runyard.api.auth import AccessLogRedactor, Authenticator, AuthFailed, TokenService, install
from runyard.api.deps import AdminDep, OperatorDep, PrincipalDep
from runyard.errors import NotFound
from runyard.services import accounts, tokens
from runyard.services.accounts import bootstrap_admin, create_account, create_user
from runyard.services.tokens import (
    authenticate,
    create_api_token,
    list_api_tokens,
    list_users,
    principal_for_api_token,
    revoke_api_token,
)
from runyard.store.database import Store
from runyard.store.tables import api_tokens, users
from tests import live_server

KEY = b"integration-test-signing-key-32-bytes!"
FAILED = {"detail": "Authentication failed"}
MISSING = {"detail": "Authentication credentials were not provided."}
STARTUP_SECONDS = 10.0
ADMIN_PASSWORD = "admin-password"
VIEWER_PASSWORD = "viewer-password"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Argon2 at its production cost takes ~0.5 s a hash here; these tests are about tokens, not hashing."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    tokens._dummy_hash.cache_clear()
    yield
    tokens._dummy_hash.cache_clear()  # the next module must not inherit a cheap dummy hash


# --- a uvicorn server in a thread ---------------------------------------------------------------


def serving(app: FastAPI) -> AbstractContextManager[str]:
    return live_server.serving(app, access_log=True)


# --- the app under test -------------------------------------------------------------------------


class LoginBody(BaseModel):
    login: str
    password: str


def build_app(store: Store, tokens: TokenService, *, allow_query_token: bool = True) -> FastAPI:
    app = FastAPI()
    install(app, Authenticator(store, tokens, allow_query_token=allow_query_token))

    @app.post("/login")
    def login(body: LoginBody) -> dict[str, str]:
        principal = authenticate(store, body.login, body.password)
        if principal is None:
            raise AuthFailed(f"login {body.login!r} refused")
        return {"access_token": tokens.issue(principal)}

    @app.get("/me")
    def me(principal: PrincipalDep) -> dict[str, Any]:
        return {"login": principal.login, "role": principal.role.value, "via": principal.via}

    @app.post("/runs")
    def launch(principal: OperatorDep) -> dict[str, str]:
        return {"launched_by": principal.login}

    @app.get("/users")
    def users_page(principal: AdminDep) -> list[str]:
        return [user.login for user in list_users(store, principal.account_id)]

    return app


@dataclass
class Site:
    store: Store
    client: httpx.Client
    account_id: int
    admin_id: int
    viewer_id: int

    def login(self, login: str, password: str) -> str:
        response = self.client.post("/login", json={"login": login, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def me(self, **headers: str) -> httpx.Response:
        return self.client.get("/me", headers=headers)

    def set_user(self, user_id: int, **values: Any) -> None:
        with self.store.write() as conn:
            conn.execute(users.update().where(users.c.id == user_id).values(**values))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: httpx.Response, body: dict[str, str] = FAILED) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers["www-authenticate"] == "Bearer"


def seed(store: Store) -> tuple[int, int, int]:
    """The default account and its admin, plus a viewer: (account id, admin id, viewer id)."""
    bootstrap_admin(store, ADMIN_PASSWORD)
    viewer = create_user(store, account="default", login="vera", password=VIEWER_PASSWORD, role="viewer")
    with store.read() as conn:
        admin = conn.execute(sa.select(users.c.account_id, users.c.id).where(users.c.login == "admin")).one()
    return int(admin.account_id), int(admin.id), viewer


@contextmanager
def running_site(store: Store, *, allow_query_token: bool = True) -> Iterator[Site]:
    account_id, admin_id, viewer_id = seed(store)
    app = build_app(store, TokenService(KEY), allow_query_token=allow_query_token)
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield Site(store, client, account_id, admin_id, viewer_id)


@pytest.fixture
def site(store: Store) -> Iterator[Site]:
    with running_site(store) as running:
        yield running


# --- login and JWTs -----------------------------------------------------------------------------


def test_login_then_bearer_header(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)

    response = site.me(**bearer(token))

    assert response.status_code == 200, response.text
    assert response.json() == {"login": "admin", "role": "administrator", "via": "jwt"}


@pytest.mark.parametrize(("login", "password"), [("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)])
def test_login_refused(site: Site, login: str, password: str) -> None:
    response = site.client.post("/login", json={"login": login, "password": password})

    assert_unauthorized(response)


def test_unknown_login_still_costs_a_password_check(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def spy(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return accounts.verify_password(password_hash, password)

    monkeypatch.setattr(tokens, "verify_password", spy)

    assert authenticate(site.store, "nobody", ADMIN_PASSWORD) is None
    assert authenticate(site.store, "admin", "wrong-password") is None
    assert len(checked) == 2
    assert all(found.startswith("$argon2id$") for found in checked)


def test_jwt_in_query_parameter(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)

    response = site.client.get(f"/me?Authorization=Bearer%20{token}")

    assert response.status_code == 200, response.text
    assert response.json()["via"] == "jwt"


def test_query_parameter_ignored_when_not_allowed(store: Store) -> None:
    with running_site(store, allow_query_token=False) as site:
        token = site.login("admin", ADMIN_PASSWORD)

        assert_unauthorized(site.client.get(f"/me?Authorization=Bearer%20{token}"), MISSING)
        assert site.me(**bearer(token)).status_code == 200


def test_jwt_in_token_header(site: Site) -> None:
    response = site.me(TOKEN=site.login("admin", ADMIN_PASSWORD))

    assert response.status_code == 200, response.text
    assert response.json()["via"] == "jwt"


def test_access_log_never_shows_the_query_token(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    token = site.login("admin", ADMIN_PASSWORD)
    access = logging.getLogger("uvicorn.access")
    redactor = AccessLogRedactor()
    access.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            assert site.client.get(f"/me?Authorization=Bearer%20{token}").status_code == 200
    finally:
        access.removeFilter(redactor)

    lines = [record.getMessage() for record in caplog.records if record.name == "uvicorn.access"]
    assert any("/me?Authorization=[redacted]" in line for line in lines), lines
    assert not any(token in line for line in lines)


# --- API tokens ---------------------------------------------------------------------------------


def test_api_token_in_token_header(site: Site) -> None:
    _, secret = create_api_token(site.store, site.admin_id, "scripts")

    response = site.me(TOKEN=secret)

    assert response.status_code == 200, response.text
    assert response.json() == {"login": "admin", "role": "administrator", "via": "api_token"}


def test_api_token_as_bearer(site: Site) -> None:
    _, secret = create_api_token(site.store, site.viewer_id, "dashboards")

    response = site.me(**bearer(secret))

    assert response.status_code == 200, response.text
    assert response.json() == {"login": "vera", "role": "viewer", "via": "api_token"}


def test_api_token_in_query_string_is_refused(site: Site) -> None:
    """RELIABILITY S5: an API token never works from a URL, in any parameter."""
    _, secret = create_api_token(site.store, site.admin_id, "scripts")

    assert_unauthorized(site.client.get(f"/me?Authorization=Bearer%20{secret}"))
    assert_unauthorized(site.client.get("/me", params={"TOKEN": secret}), MISSING)
    assert_unauthorized(site.client.get("/me", params={"token": secret}), MISSING)


def test_revoked_token_fails_on_the_next_request(site: Site) -> None:
    token_id, secret = create_api_token(site.store, site.admin_id, "scripts")
    assert site.me(TOKEN=secret).status_code == 200

    revoke_api_token(site.store, site.account_id, token_id)

    assert_unauthorized(site.me(TOKEN=secret))
    assert_unauthorized(site.me(**bearer(secret)))
    assert list_api_tokens(site.store, site.account_id)[0].revoked
    revoke_api_token(site.store, site.account_id, token_id)  # again: a no-op


def test_tokens_are_stored_only_hashed(site: Site) -> None:
    token_id, secret = create_api_token(site.store, site.admin_id, "scripts")

    with site.store.read() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(api_tokens)).mappings()]

    assert len(rows) == 1
    assert not any(secret in str(value) for value in rows[0].values())
    assert rows[0]["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(f"ry_{rows[0]['prefix']}_")
    view = list_api_tokens(site.store, site.account_id)[0]
    assert (view.id, view.name, view.prefix, view.login) == (token_id, "scripts", rows[0]["prefix"], "admin")
    assert secret not in repr(view)


def test_last_used_is_recorded_at_most_once_a_minute(site: Site) -> None:
    _, secret = create_api_token(site.store, site.admin_id, "scripts")

    assert site.me(TOKEN=secret).status_code == 200
    first = list_api_tokens(site.store, site.account_id)[0].last_used_at
    assert site.me(TOKEN=secret).status_code == 200
    second = list_api_tokens(site.store, site.account_id)[0].last_used_at

    assert first is not None
    assert second == first


def test_another_accounts_token_cannot_be_revoked(site: Site) -> None:
    other_account = create_account(site.store, "other")
    token_id, secret = create_api_token(site.store, site.admin_id, "scripts")

    with pytest.raises(NotFound):
        revoke_api_token(site.store, other_account, token_id)

    assert list_api_tokens(site.store, other_account) == []
    assert site.me(TOKEN=secret).status_code == 200


# --- what is refused ----------------------------------------------------------------------------


def test_no_credentials_gets_the_spec_002_body(site: Site) -> None:
    response = site.client.get("/me")

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
    response = site.me(**headers)

    assert_unauthorized(response)
    assert response.content == b'{"detail":"Authentication failed"}'


def test_an_invalid_header_is_not_rescued_by_a_valid_one(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)

    assert_unauthorized(site.me(Authorization="Bearer forged", TOKEN=token))


def test_token_signed_with_another_key_is_refused(site: Site) -> None:
    token = site.login("admin", ADMIN_PASSWORD)
    principal = authenticate(site.store, "admin", ADMIN_PASSWORD)
    assert principal is not None
    forged = TokenService(b"x" * 32).issue(principal)

    assert site.me(**bearer(token)).status_code == 200
    assert_unauthorized(site.me(**bearer(forged)))


def test_inactive_user_is_refused_with_jwt_and_api_token(site: Site) -> None:
    token = site.login("vera", VIEWER_PASSWORD)
    _, secret = create_api_token(site.store, site.viewer_id, "dashboards")

    site.set_user(site.viewer_id, active=False)

    assert_unauthorized(site.me(**bearer(token)))
    assert_unauthorized(site.me(TOKEN=secret))
    assert principal_for_api_token(site.store, secret) is None
    assert_unauthorized(site.client.post("/login", json={"login": "vera", "password": VIEWER_PASSWORD}))


# --- roles --------------------------------------------------------------------------------------


def test_viewer_on_an_operator_route_is_forbidden(site: Site) -> None:
    token = site.login("vera", VIEWER_PASSWORD)

    response = site.client.post("/runs", headers=bearer(token))

    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Your role (viewer) cannot do this: it needs operator or administrator"}


def test_only_administrators_reach_admin_routes(site: Site) -> None:
    viewer = site.client.get("/users", headers=bearer(site.login("vera", VIEWER_PASSWORD)))
    admin = site.client.get("/users", headers=bearer(site.login("admin", ADMIN_PASSWORD)))

    assert viewer.status_code == 403
    assert viewer.json() == {"detail": "Your role (viewer) cannot do this: it needs administrator"}
    assert admin.status_code == 200
    assert admin.json() == ["admin", "vera"]


def test_role_change_is_effective_on_the_next_request_with_the_same_jwt(site: Site) -> None:
    token = site.login("vera", VIEWER_PASSWORD)
    assert site.client.post("/runs", headers=bearer(token)).status_code == 403

    site.set_user(site.viewer_id, role="operator")
    promoted = site.client.post("/runs", headers=bearer(token))

    site.set_user(site.viewer_id, role="viewer")
    demoted = site.client.post("/runs", headers=bearer(token))

    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"launched_by": "vera"}
    assert demoted.status_code == 403
