"""A browser-less web UI client for tests: signs in through the login form and posts forms with their CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.integration.rest_harness import HTTP_TIMEOUT, USERS, RestStack

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class UiClient:
    """An httpx client with a cookie jar, like a browser without JavaScript."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT, follow_redirects=False)

    def sign_in(self, login: str, password: str, *, next_path: str | None = None) -> httpx.Response:
        form_page = self.http.get("/login", params={"next": next_path} if next_path else None)
        assert form_page.status_code == 200, form_page.text
        data = {"login": login, "password": password, "csrf_token": csrf_of(form_page.text)}
        if next_path is not None:
            data["next"] = next_path
        return self.http.post("/login", data=data)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post_form(self, page: str, action: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """Post `data` to `action` with the CSRF token of `page`, as a click on a form of that page would."""
        html = self.http.get(page).text
        return self.http.post(action, data={"csrf_token": csrf_of(html), **(data or {})}, **kwargs)

    def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code == 303, response.text
        return self.http.get(response.headers["location"])

    def close(self) -> None:
        self.http.close()


def signed_in(stack: RestStack, account: str, role: str) -> UiClient:
    user = USERS[(account, role)]
    client = UiClient(stack.base_url)
    response = client.sign_in(user.login, user.password)
    assert response.status_code == 303, response.text
    return client
