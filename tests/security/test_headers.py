"""Security headers, cookies, CORS and error bodies (RELIABILITY.md S16), walking every route of the OpenAPI
document and every page of the UI's navigation over real HTTP.

Every answer (2xx, 3xx, 4xx alike) carries X-Content-Type-Options: nosniff, a Referrer-Policy, and forbids framing
(CSP frame-ancestors 'none' or X-Frame-Options: DENY); the UI's cookies are HttpOnly with a SameSite, and Secure
when RUNYARD_COOKIE_SECURE is set; no answer allows a foreign origin with credentials; no error body carries a
stack trace, SQL or a file path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.integration.rest_harness import ADMIN_PASSWORD, RestStack, database, rest_stack
from tests.integration.ui_client import UiClient, csrf_of, signed_in

EVIL = "https://evil.example"
NAV_LINK = re.compile(r'<a href="(/[^"#?]*)')
LEAKS = ("Traceback", 'File "', "site-packages", "sqlalchemy", "psycopg", "sqlite3", "SELECT ", "INSERT ", "UPDATE ")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    directory = tmp_path_factory.mktemp("headers")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url) as running:
        yield running


def check_headers(response: httpx.Response, what: str) -> None:
    headers = response.headers
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("referrer-policy"), what
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp or headers.get("x-frame-options") == "DENY", what
    origin = headers.get("access-control-allow-origin")
    assert origin in (None, ""), f"{what}: Access-Control-Allow-Origin {origin}"


def check_error_body(response: httpx.Response, stack: RestStack, what: str) -> None:
    if response.status_code < 400:
        return
    text = response.text
    for leak in (*LEAKS, str(stack.settings.home), "/src/runyard"):
        assert leak not in text, f"{what}: {response.status_code} names {leak!r}: {text[:400]}"


def api_calls(stack: RestStack) -> list[tuple[str, str]]:
    """(method, path) of every operation of the OpenAPI document, path parameters filled with an unknown id."""
    document = httpx.get(f"{stack.base_url}/openapi.json", timeout=15).json()
    calls: list[tuple[str, str]] = []
    for path, operations in document["paths"].items():
        filled = re.sub(r"\{[^}]+\}", "999999", path)
        calls.extend((method.upper(), filled) for method in operations)
    assert len(calls) > 40
    return calls


def test_every_api_route_answers_with_the_headers_and_no_leaks(stack: RestStack) -> None:
    admin = stack.as_user("default", "administrator")
    anonymous = stack.client()
    for method, path in api_calls(stack):
        body: Any = {} if method in ("POST", "PUT", "PATCH") else None
        for client, who in ((admin, "admin"), (anonymous, "anonymous")):
            response = client.request(method, path, json=body, headers={"Origin": EVIL})
            what = f"{who} {method} {path} -> {response.status_code}"
            assert response.status_code < 500, f"{what}: {response.text[:300]}"
            check_headers(response, what)
            check_error_body(response, stack, what)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/no/such/page", None),
        ("GET", "/api/v1/runs/not-a-number", None),
        ("GET", "/api/v1/runs?sort=nope&order=sideways", None),
        ("GET", "/api/v1/runs?started_from=yesterday", None),
        ("DELETE", "/api/v1/runs", None),
        ("POST", "/api/v1/operations/1/runs", "{not json"),
        ("POST", "/v1/dag/status", "[[[[[[]]]]]]"),
        ("GET", "/etl/rest/v1/tasks/99999999999999999999999/", None),
        ("GET", "/api/integration/v2/biviews/nowhere?pagenum=1", None),
        ("GET", "/api/v1/bulk_metadata/job/?id=1&name=x", None),
    ],
)
def test_error_bodies_carry_no_trace_sql_or_path(stack: RestStack, method: str, path: str, body: str | None) -> None:
    response = stack.as_user("default", "administrator").request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    what = f"{method} {path} -> {response.status_code}"
    assert 400 <= response.status_code < 500, what
    check_headers(response, what)
    check_error_body(response, stack, what)


def test_no_foreign_origin_is_allowed_with_credentials(stack: RestStack) -> None:
    for path in ("/api/v1/runs", "/api/v1/auth/token", "/v1/dag/status", "/login", "/"):
        preflight = httpx.options(
            f"{stack.base_url}{path}",
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
            timeout=15,
        )
        assert "access-control-allow-origin" not in preflight.headers, path
        assert preflight.headers.get("access-control-allow-credentials") != "true", path


def test_every_page_of_the_ui_answers_with_the_headers(stack: RestStack) -> None:
    anonymous = UiClient(stack.base_url)
    ui = signed_in(stack, "default", "administrator")
    try:
        check_headers(anonymous.get("/login"), "GET /login")
        check_headers(anonymous.get("/runs"), "GET /runs signed out")
        home = ui.get("/")
        if home.status_code == 303:
            home = ui.follow(home)
        assert home.status_code == 200, home.text
        pages = sorted({link for link in NAV_LINK.findall(home.text) if not link.startswith("/static/")})
        assert {"/sources", "/runs", "/alerts"} <= set(pages), pages
        for path in [*pages, "/runs/999999", "/no-such-page", "/runs?page=zz", "/sql"]:
            response = ui.get(path)
            what = f"GET {path} -> {response.status_code}"
            assert response.status_code < 500, what
            check_headers(response, what)
            if response.headers.get("content-type", "").startswith("text/html"):
                csp = response.headers["content-security-policy"]
                assert "frame-ancestors 'none'" in csp, what
                assert "script-src 'self'" in csp, what
            check_error_body(response, stack, what)
    finally:
        ui.close()
        anonymous.close()


def cookies_of(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Each Set-Cookie of the answer: name -> its attributes (lower-case)."""
    found: dict[str, dict[str, Any]] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            if morsel["max-age"] != "0":  # a deletion carries no value to protect
                found[name] = {key: value for key, value in morsel.items() if value}
    return found


def sign_in_cookies(base_url: str) -> dict[str, dict[str, Any]]:
    """The cookies of the login form and of a sign-in (the form's cookie sent back by hand: it may be Secure)."""
    with httpx.Client(base_url=base_url, timeout=15) as client:
        form = client.get("/login")
        cookies = cookies_of(form)
        sent = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
        client.cookies.clear()
        signed = client.post(
            "/login",
            data={"login": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_of(form.text)},
            headers={"Cookie": sent},
        )
        assert signed.status_code == 303, signed.text
        return cookies | cookies_of(signed)


def test_cookies_are_http_only_and_same_site_and_not_secure_by_default(stack: RestStack) -> None:
    cookies = sign_in_cookies(stack.base_url)
    assert len(cookies) >= 2, cookies  # the login form's CSRF cookie, then the session
    for name, attributes in cookies.items():
        assert attributes.get("httponly"), name
        assert str(attributes.get("samesite", "")).lower() in ("lax", "strict"), name
        assert not attributes.get("secure"), name


def test_cookies_are_secure_when_the_setting_says_so(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("secure-cookies")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url, cookie_secure=True) as s:
        cookies = sign_in_cookies(s.base_url)
    assert len(cookies) >= 2, cookies
    for name, attributes in cookies.items():
        assert attributes.get("secure"), name
        assert attributes.get("httponly"), name
