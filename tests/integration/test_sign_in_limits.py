"""Sign-in throttling over real HTTP (RELIABILITY S15): failed sign-ins counted per login and per client address in
the store, on SQLite and PostgreSQL.

Each test serves create_app twice, on two ports, each over its own Runtime and Store on one database: two HTTP
processes (or servers) that share nothing but the store. Limits are small through the settings; the window's end
is reached by moving the recorded attempts back by one window (what the clock moving on would do), never by sleeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from runyard.app import create_app
from runyard.runtime import Runtime, open_store
from runyard.services import tokens
from runyard.services.accounts import bootstrap_admin, create_user
from runyard.services.sign_in_limits import client_address
from runyard.settings import Settings
from runyard.store.database import Store
from runyard.store.tables import sign_in_attempts
from tests.integration.rest_harness import ADMIN_PASSWORD, FAILED, HTTP_TIMEOUT, cheap_hashing, serving
from tests.integration.ui_client import UiClient, csrf_of

WINDOW_SECONDS = 600.0
USER, PASSWORD = "opal", "user-password-1"
TOKEN_PATHS = ("/api/v1/auth/token", "/rest/v1/token-auth/issue")


@dataclass
class Servers:
    store: Store
    urls: list[str]

    def token(self, login: str, password: str, *, server: int = 0, path: str = TOKEN_PATHS[0]) -> httpx.Response:
        body = {"login": login, "password": password}
        return httpx.post(f"{self.urls[server]}{path}", json=body, timeout=HTTP_TIMEOUT)

    def attempts(self) -> int:
        with self.store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sign_in_attempts)).scalar_one())

    def let_the_window_pass(self) -> None:
        """Every recorded attempt one window older: the clock moving on by RUNYARD_SIGN_IN_WINDOW_SECONDS."""
        shift = timedelta(seconds=WINDOW_SECONDS)
        with self.store.write() as conn:
            rows = conn.execute(sa.select(sign_in_attempts.c.id, sign_in_attempts.c.attempted_at)).all()
            for row in rows:
                update = sign_in_attempts.update().where(sign_in_attempts.c.id == row.id)
                conn.execute(update.values(attempted_at=row.attempted_at - shift))


@contextmanager
def two_servers(home: Path, database_url: str, **overrides: Any) -> Iterator[Servers]:
    """create_app served twice on one database (see the module docstring); the admin and USER exist."""
    settings = Settings(
        home=home,
        database_url=database_url,
        admin_password=SecretStr(ADMIN_PASSWORD),
        sign_in_window_seconds=WINDOW_SECONDS,
        **overrides,
    )
    with cheap_hashing(), ExitStack() as stack:
        urls = []
        for _ in range(2):
            runtime = Runtime(settings, open_store(settings))
            stack.callback(runtime.close)
            urls.append(stack.enter_context(serving(create_app(runtime))))
        store = open_store(settings)
        stack.callback(store.dispose)
        bootstrap_admin(store, ADMIN_PASSWORD)
        create_user(store, account="default", login=USER, password=PASSWORD, role="operator")
        yield Servers(store, urls)


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords the server verified, in order (the servers run in this process)."""
    checked: list[str] = []
    verify = tokens.verify_password

    def counting(password_hash: str, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    monkeypatch.setattr(tokens, "verify_password", counting)
    return checked


def assert_throttled(response: httpx.Response) -> int:
    """The answer is 429 with Retry-After (whole seconds within the window) and a detail saying when; the seconds."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= WINDOW_SECONDS
    detail = response.json()["detail"]
    assert re.fullmatch(r"Too many failed sign-in attempts; try again in \d+ (s|min)", detail), detail
    return retry_after


def test_failures_past_the_login_limit_answer_429_without_checking_the_password(
    tmp_path: Path, database_url: str, password_checks: list[str]
) -> None:
    with two_servers(tmp_path, database_url, sign_in_failures_per_login=3) as servers:
        for attempt in range(3):
            wrong = servers.token(USER, f"wrong-{attempt}")
            assert (wrong.status_code, wrong.json()) == (401, FAILED)
        assert len(password_checks) == 3
        assert_throttled(servers.token(USER, PASSWORD))  # even the right password
        assert_throttled(servers.token(USER, "wrong-again"))
        assert len(password_checks) == 3, "a throttled attempt must not check any password"
        assert servers.attempts() == 3, "a throttled attempt records nothing"


def test_the_answer_is_the_same_whether_or_not_the_login_exists(tmp_path: Path, database_url: str) -> None:
    with two_servers(tmp_path, database_url, sign_in_failures_per_login=2) as servers:
        answers = {}
        for login in (USER, "nobody-of-that-name"):
            for _ in range(2):
                assert servers.token(login, "wrong-password").status_code == 401
            throttled = servers.token(login, "wrong-password")
            assert_throttled(throttled)
            answers[login] = (throttled.status_code, set(throttled.headers) - {"date", "retry-after"})
        assert answers[USER] == answers["nobody-of-that-name"]


def test_a_successful_sign_in_clears_the_logins_failures(tmp_path: Path, database_url: str) -> None:
    with two_servers(tmp_path, database_url, sign_in_failures_per_login=3) as servers:
        for _ in range(2):
            assert servers.token(USER, "wrong-password").status_code == 401
        assert servers.token(USER, PASSWORD).status_code == 200
        assert servers.attempts() == 0
        for _ in range(3):  # three more failures before the limit, not one
            assert servers.token(USER, "wrong-password").status_code == 401
        assert_throttled(servers.token(USER, PASSWORD))


def test_the_window_slides_so_nobody_is_locked_out_for_ever(tmp_path: Path, database_url: str) -> None:
    with two_servers(tmp_path, database_url, sign_in_failures_per_login=2) as servers:
        for _ in range(2):
            assert servers.token(USER, "wrong-password").status_code == 401
        assert assert_throttled(servers.token(USER, PASSWORD)) > WINDOW_SECONDS - 60
        servers.let_the_window_pass()
        assert servers.token(USER, PASSWORD).status_code == 200
        assert servers.attempts() == 0  # the old failures were pruned, the success cleared its own


def test_failures_count_across_servers_and_every_sign_in_path(tmp_path: Path, database_url: str) -> None:
    with two_servers(tmp_path, database_url, sign_in_failures_per_login=3) as servers:
        assert servers.token(USER, "wrong-1", server=0, path=TOKEN_PATHS[0]).status_code == 401
        assert servers.token(USER, "wrong-2", server=1, path=TOKEN_PATHS[1]).status_code == 401
        ui = UiClient(servers.urls[0])
        try:
            assert ui.sign_in(USER, "wrong-3").status_code == 401
            page = ui.sign_in(USER, PASSWORD)  # the UI's login form is throttled too, and says so in words
            assert page.status_code == 429, page.text
            assert int(page.headers["retry-after"]) > 0
            assert "Too many failed sign-in attempts; try again in" in page.text
            assert csrf_of(page.text)  # the form is shown again, to try later
        finally:
            ui.close()
        for server in (0, 1):
            for path in TOKEN_PATHS:
                assert_throttled(servers.token(USER, PASSWORD, server=server, path=path))


def test_failures_from_one_address_are_limited_whatever_the_login(tmp_path: Path, database_url: str) -> None:
    overrides = {"sign_in_failures_per_login": 100, "sign_in_failures_per_address": 4}
    with two_servers(tmp_path, database_url, **overrides) as servers:
        for attempt in range(4):
            assert servers.token(f"guess-{attempt}", "password-1", server=attempt % 2).status_code == 401
        assert_throttled(servers.token(USER, PASSWORD))
        # X-Forwarded-For is not trusted unless a setting says so: a forged one does not start a fresh count.
        forged = httpx.post(
            f"{servers.urls[0]}{TOKEN_PATHS[0]}",
            json={"login": USER, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7"},
            timeout=HTTP_TIMEOUT,
        )
        assert_throttled(forged)


def test_a_trusted_proxy_address_is_the_last_forwarded_for_entry() -> None:
    assert client_address("127.0.0.1", "203.0.113.7", trust_forwarded_for=False) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.0.0.1, 203.0.113.7", trust_forwarded_for=True) == "203.0.113.7"
    assert client_address("127.0.0.1", None, trust_forwarded_for=True) == "127.0.0.1"
    assert client_address(None, None, trust_forwarded_for=False) == "unknown"
