"""Signing out of the web UI revokes the session on the server: a copy of the session cookie, taken before, is
refused afterwards. Over real HTTP (rest_harness.rest_stack), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.ui.sessions import SESSION_COOKIE
from tests.integration.rest_harness import HTTP_TIMEOUT, RestStack, rest_stack
from tests.integration.ui_client import UiClient, signed_in


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


def with_cookie(stack: RestStack, cookie: str) -> httpx.Client:
    """Another browser, given a copy of a session cookie."""
    return httpx.Client(
        base_url=stack.base_url, cookies={SESSION_COOKIE: cookie}, timeout=HTTP_TIMEOUT, follow_redirects=False
    )


def test_a_copied_session_cookie_is_refused_after_sign_out(stack: RestStack) -> None:
    owner = signed_in(stack, "default", "operator")
    other_session = signed_in(stack, "default", "operator")  # the same user in another browser
    try:
        cookie = owner.http.cookies[SESSION_COOKIE]
        with with_cookie(stack, cookie) as thief:
            assert thief.get("/sources").status_code == 200  # the copy works while the session lives

            signed_out = owner.post_form("/sources", "/logout")
            assert signed_out.status_code == 303
            assert signed_out.headers["location"] == "/login"

            refused = thief.get("/sources")
            assert refused.status_code == 303
            assert refused.headers["location"].startswith("/login")
            form = thief.post("/logout", data={"csrf_token": "x"})
            assert form.status_code == 303
            assert form.headers["location"].startswith("/login")
        # Only that session ends: the user's other sign-in goes on.
        assert other_session.get("/sources").status_code == 200
    finally:
        owner.close()
        other_session.close()


def test_signing_in_again_after_sign_out_works(stack: RestStack) -> None:
    client = signed_in(stack, "default", "viewer")
    try:
        assert client.post_form("/sources", "/logout").status_code == 303
        assert client.get("/sources").status_code == 303
        again = UiClient(stack.base_url)
        try:
            assert again.sign_in("vic", "user-password-1").status_code == 303
            assert again.get("/sources").status_code == 200
        finally:
            again.close()
    finally:
        client.close()
