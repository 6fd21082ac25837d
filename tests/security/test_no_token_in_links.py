"""S6: no token ends up in the links runyard makes.

Over real HTTP (tests.integration.rest_harness), with an administrator signed in to the UI (its session cookie), an
access JWT and a long-lived API token of the same user:

- every page of the UI's navigation, a run page (its tasks paged, so it has Previous/Next links), a source's history,
  a task's messages, the alerts, exports and SQL pages are fetched plainly and with `?Authorization=Bearer <jwt>`
  added to their URL (as a spec 001 client would send it, or a person pasting such a URL); signed out too;
- every GET route of the API (from /openapi.json, path parameters filled with real ids) is called authenticated by
  `?Authorization=Bearer <jwt>` alone (spec 001's query form, on by default), and again with the API token as a
  bearer header; a spec 004 export's first page too;

and in every answer: no `href`, `src`, `action`, `formaction`, `hx-*` attribute, hidden `next` field, inline script,
`Location` or `HX-Redirect` header carries `Authorization=` (in any case, encoded or not), and neither the JWT, the
API token nor the session cookie's value appears anywhere in the body or a header (Set-Cookie aside).

Not checked here: the access log (tests/integration/test_rest_write.py), other UI users' roles (the pages are the
administrator's, who sees the most), and links in alert notifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote, unquote_plus

import httpx
import pytest

from runyard.ui.sessions import SESSION_COOKIE
from runyard.warehouse import LoadRequest, TableLoad
from tests.factories import sleep_task
from tests.integration.rest_harness import HTTP_TIMEOUT, RestStack, database, rest_stack
from tests.integration.ui_client import UiClient, signed_in

NAV_LINK = re.compile(r'<a href="(/[^"#?]*)')
TASKS = 12  # more than the smallest page of tasks (10): the run page has a Next link
#: Attributes whose values are URLs, or become requests (htmx), in runyard's templates.
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put", "hx-delete"})
URL_ATTRIBUTES_PREFIX = "hx-"


@dataclass
class World:
    stack: RestStack
    ui: UiClient
    jwt: str
    api_token: str
    session: str
    run_id: int
    task_id: int
    operation_id: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("no-token-in-links")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url) as stack:
        admin = stack.as_user("default", "administrator")
        operation_id = stack.deploy("linked", [sleep_task(f"step {n:02d}") for n in range(TASKS)])
        run = stack.launch(admin, operation_id)
        assert stack.wait_status(admin, run["id"])["status"] == "completed"
        tasks = admin.get(f"/api/v1/runs/{run['id']}/tasks", params={"page_size": 200}).json()["items"]
        created = admin.post("/api/v1/tokens", json={"name": "s6"})
        assert created.status_code == 201, created.text
        load_a_table(stack)
        ui = signed_in(stack, "default", "administrator")
        session = ui.http.cookies.get(SESSION_COOKIE)
        assert session, "signing in set no session cookie"
        try:
            yield World(
                stack,
                ui,
                stack.token_of("default", "administrator"),
                created.json()["token"],
                session,
                run["id"],
                tasks[0]["id"],
                operation_id,
            )
        finally:
            ui.close()


def load_a_table(stack: RestStack) -> None:
    """A warehouse table `orders`, for the exports."""
    import pyarrow as pa

    warehouses = stack.runtime.warehouses
    assert warehouses is not None
    warehouse = warehouses.for_account("default")
    warehouse.stage("s6-load", "orders", pa.table({"id": [1, 2, 3]}).to_reader())
    warehouse.load(LoadRequest(run_key="s6-load", operation_id=1, tables=(TableLoad(name="orders", mode="replace"),)))


class Links(HTMLParser):
    """The URL-bearing attribute values, hidden `next` fields and inline scripts of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if value is not None and (name in URL_ATTRIBUTES or name.startswith(URL_ATTRIBUTES_PREFIX)):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag == "input" and values.get("name") == "next" and values.get("value"):
            self.found.append(f"<input name=next value={values['value']!r}>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"<script>{data.strip()[:200]}</script>")


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    parser.close()
    return parser.found


def carries_query_token(text: str) -> bool:
    """`Authorization=` in `text`, also percent-encoded (once or twice) or HTML-escaped, in any case."""
    decoded = text
    for _ in range(3):
        if "authorization=" in decoded.lower():
            return True
        decoded = unquote_plus(decoded)
    return False


def check(world: World, response: httpx.Response, what: str) -> None:
    """The answer leaks no token: see the module docstring."""
    secrets = {"the JWT": world.jwt, "the API token": world.api_token, "the session cookie": world.session}
    for name, value in response.headers.items():
        if name.lower() == "set-cookie":
            continue
        for secret_name, secret in secrets.items():
            assert secret not in value, f"{what}: header {name} carries {secret_name}"
        if name.lower() in ("location", "hx-redirect", "hx-location", "content-location", "link", "refresh"):
            assert not carries_query_token(value), f"{what}: {name}: {value}"
    body = response.text
    for secret_name, secret in secrets.items():
        assert secret not in body, f"{what}: the body carries {secret_name}"
        assert quote(secret, safe="") not in body, f"{what}: the body carries {secret_name}, percent-encoded"
    if response.headers.get("content-type", "").startswith("text/html"):
        leaking = [link for link in links_of(body) if carries_query_token(link)]
        assert not leaking, f"{what}: links carry Authorization=: {leaking[:5]}"
    else:
        assert not carries_query_token(body), f"{what}: the answer carries Authorization=: {body[:300]}"


def ui_pages(world: World) -> list[str]:
    home = world.ui.get("/")
    if home.status_code == 303:
        home = world.ui.follow(home)
    assert home.status_code == 200, home.text
    navigation = {link for link in NAV_LINK.findall(home.text) if not link.startswith("/static/")}
    assert {"/sources", "/runs", "/loads", "/attention", "/alerts", "/sql", "/exports"} <= navigation, navigation
    return [
        *sorted(navigation),
        f"/runs/{world.run_id}?page_size=10",
        f"/runs/{world.run_id}/tasks/{world.task_id}/messages",
        f"/sources/{world.operation_id}/history",
        "/runs?page_size=10&sort=started_at&order=asc",
        "/alerts?page_size=10",
        "/exports",
        "/sql",
    ]


def with_query_token(path: str, jwt: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}Authorization={quote(f'Bearer {jwt}')}"


def test_ui_pages_and_their_redirects_carry_no_token_even_when_the_url_had_one(world: World) -> None:
    pages = ui_pages(world)
    anonymous = UiClient(world.stack.base_url)
    try:
        for path in pages:
            for url in (path, with_query_token(path, world.jwt)):
                response = world.ui.get(url)
                assert response.status_code in (200, 303), f"GET {url} -> {response.status_code}"
                check(world, response, f"GET {url}")
                if (
                    "Authorization" in url
                    and response.status_code == 200
                    and "html" in response.headers["content-type"]
                ):
                    assert links_of(response.text), f"GET {url}: a page without a single link tests nothing"
                signed_out = anonymous.get(url)
                check(world, signed_out, f"signed out: GET {url}")
                if signed_out.status_code == 303:  # to the login form, which keeps where to go back to
                    check(world, anonymous.get(signed_out.headers["location"]), f"the login page after {url}")
    finally:
        anonymous.close()


def test_the_paged_and_sorted_links_of_a_page_asked_with_a_query_token_keep_their_parameters_but_not_the_token(
    world: World,
) -> None:
    """The links a page builds from its own URL (url_with: the pager, the sort headers) drop Authorization only."""
    response = world.ui.get(with_query_token(f"/runs/{world.run_id}?page_size=10", world.jwt))
    assert response.status_code == 200, response.text
    following = [link for link in links_of(response.text) if 'rel="next"' in link or "page=2" in link]
    assert any("page=2" in link and "page_size=10" in link for link in following), links_of(response.text)
    check(world, response, "the run page")
    runs = world.ui.get(with_query_token("/runs?sort=started_at&order=asc", world.jwt))
    sort_links = [link for link in links_of(runs.text) if "sort=" in link]
    assert sort_links, links_of(runs.text)
    check(world, runs, "the runs page")


def api_paths(world: World) -> list[str]:
    """Every GET route of /openapi.json, its path parameters filled with ids that exist (or an unknown one)."""
    document = httpx.get(f"{world.stack.base_url}/openapi.json", timeout=HTTP_TIMEOUT).json()
    known = {"run_id": world.run_id, "task_id": world.task_id, "operation_id": world.operation_id}
    paths = []
    for path, operations in document["paths"].items():
        if "get" not in operations:
            continue
        paths.append(re.sub(r"\{([^}]+)\}", lambda m: str(known.get(m.group(1), 999999)), path))
    assert len(paths) > 20, paths
    return paths


def test_api_answers_carry_no_token_whether_asked_with_a_query_token_or_an_api_token(world: World) -> None:
    by_query = httpx.Client(base_url=world.stack.base_url, timeout=HTTP_TIMEOUT)
    by_token = httpx.Client(
        base_url=world.stack.base_url, timeout=HTTP_TIMEOUT, headers={"Authorization": f"Bearer {world.api_token}"}
    )
    answered = 0
    try:
        for path in [*api_paths(world), "/api/v1/runs/", "/api/integration/v2/biviews/orders?pagenum=1&pageSize=2"]:
            response = by_query.get(with_query_token(path, world.jwt))
            assert response.status_code < 500, f"GET {path} -> {response.status_code}"
            answered += response.status_code not in (401, 403)
            check(world, response, f"GET {path} with ?Authorization=")
            response = by_token.get(path)
            assert response.status_code < 500, f"GET {path} -> {response.status_code}"
            check(world, response, f"GET {path} with the API token")
    finally:
        by_query.close()
        by_token.close()
    assert answered > 20, "the query token was refused almost everywhere: nothing was tested"
