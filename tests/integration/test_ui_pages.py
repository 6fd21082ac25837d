"""The web UI over real HTTP without a browser: sign-in, sessions and CSRF, roles, accounts, bad input, and what
each page shows. The browser tests (tests/e2e) drive the same pages in chromium.

One stack per test (rest_harness.rest_stack) on SQLite; the pages call the same services the REST API tests
cover on both backends, and two tests here run on PostgreSQL too.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.ui.sessions import SESSION_COOKIE
from tests.factories import sleep_task
from tests.integration.rest_harness import USERS, RestStack, long_task, rest_stack, wait_for
from tests.integration.ui_client import UiClient, csrf_of, signed_in

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FAILING = [
    sleep_task("Process [employees]", 0.1, params={"records_per_unit": 5, "table": "employees"}),
    {
        "name": "Ingestion [employees]",
        "executor": "fail",
        "max_attempts": 1,
        "depends_on": ["Process [employees]"],
        "params": {"message": "the warehouse refused the load"},
    },
]


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


@pytest.fixture
def clients() -> Iterator[list[UiClient]]:
    opened: list[UiClient] = []
    yield opened
    for client in opened:
        client.close()


def as_ui(stack: RestStack, clients: list[UiClient], account: str = "default", role: str = "operator") -> UiClient:
    client = signed_in(stack, account, role)
    clients.append(client)
    return client


def failed_run(stack: RestStack, name: str = "flaky", account: str = "default") -> tuple[int, int]:
    """(operation id, run id) of an operation whose only run Failed."""
    op_id = stack.deploy(name, FAILING, account=account)
    admin = stack.as_user(account, "administrator")
    run = stack.launch(admin, op_id)
    assert stack.wait_status(admin, run["id"])["status"] == "failed"
    return op_id, run["id"]


def run_ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-run-id="(\d+)"', page)]


def flash(page: str) -> str:
    found = re.search(r'<p class="flash flash-(?:notice|error)"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, "the page shows no message"
    return html.unescape(found.group(1))


# --- signing in -----------------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_pages_send_a_signed_out_visitor_to_the_login_form(stack: RestStack) -> None:
    plain = httpx.get(f"{stack.base_url}/runs?status=failed")
    htmx = httpx.get(f"{stack.base_url}/runs", headers={"HX-Request": "true"})

    assert plain.status_code == 303
    assert plain.headers["location"] == "/login?next=/runs%3Fstatus%3Dfailed"
    assert (htmx.status_code, htmx.headers["HX-Redirect"]) == (204, "/login?next=/runs")


@SQLITE_ONLY
def test_a_wrong_password_shows_an_error_not_a_traceback(stack: RestStack, clients: list[UiClient]) -> None:
    client = UiClient(stack.base_url)
    clients.append(client)

    wrong = client.sign_in("admin", "not-the-password")
    unknown = client.sign_in("nobody", "whatever-password")

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "That login and password do not match." in response.text
        assert "Traceback" not in response.text
        assert SESSION_COOKIE not in response.cookies
    assert 'value="admin"' in wrong.text  # the login is kept, the password is not
    assert "not-the-password" not in wrong.text


@SQLITE_ONLY
def test_signing_in_sets_a_session_cookie_only_the_server_reads(stack: RestStack, clients: list[UiClient]) -> None:
    client = UiClient(stack.base_url)
    clients.append(client)

    response = client.sign_in("admin", USERS[("default", "administrator")].password, next_path="/runs?status=failed")

    assert (response.status_code, response.headers["location"]) == (303, "/runs?status=failed")
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    page = client.get("/runs")
    assert page.status_code == 200
    assert "admin" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]


@SQLITE_ONLY
def test_the_login_form_needs_its_own_csrf_token_and_goes_back_only_to_local_pages(
    stack: RestStack, clients: list[UiClient]
) -> None:
    password = USERS[("default", "administrator")].password
    forged = httpx.post(f"{stack.base_url}/login", data={"login": "admin", "password": password, "csrf_token": "x"})
    client = UiClient(stack.base_url)
    clients.append(client)
    elsewhere = client.sign_in("admin", password, next_path="//evil.example/steal")

    assert forged.status_code == 400
    assert "expired" in forged.text
    assert SESSION_COOKIE not in forged.cookies
    assert elsewhere.headers["location"] == "/sources"


@SQLITE_ONLY
def test_a_tampered_or_foreign_session_cookie_is_sent_to_sign_in(stack: RestStack, clients: list[UiClient]) -> None:
    client = as_ui(stack, clients)
    cookie = client.http.cookies[SESSION_COOKIE]
    payload, _, signature = cookie.partition(".")

    tampered = httpx.get(
        f"{stack.base_url}/runs", cookies={SESSION_COOKIE: f"{payload}x.{signature}"}, follow_redirects=False
    )
    unsigned = httpx.get(f"{stack.base_url}/runs", cookies={SESSION_COOKIE: payload}, follow_redirects=False)

    assert tampered.status_code == 303
    assert unsigned.status_code == 303
    assert client.get("/runs").status_code == 200


@SQLITE_ONLY
def test_signing_out_ends_the_session_in_this_browser(stack: RestStack, clients: list[UiClient]) -> None:
    client = as_ui(stack, clients)

    response = client.post_form("/runs", "/logout")

    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert client.get("/runs").status_code == 303
    assert "You are signed out." in client.get("/login").text


# --- forms: CSRF and origin -----------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_forms_without_the_sessions_csrf_token_or_from_another_site_are_refused(
    stack: RestStack, clients: list[UiClient]
) -> None:
    operator = as_ui(stack, clients)
    other = as_ui(stack, clients, "default", "administrator")
    op_id = stack.deploy("slow", [long_task("wait")])
    action = f"/sources/{op_id}/launch"

    missing = operator.http.post(action, data={"type": "incremental"})
    borrowed = operator.http.post(
        action, data={"type": "incremental", "csrf_token": csrf_of(other.get("/sources").text)}
    )
    cross_site = operator.http.post(
        action,
        data={"type": "incremental", "csrf_token": csrf_of(operator.get("/sources").text)},
        headers={"Origin": "https://evil.example"},
    )
    not_a_form = operator.http.post(action, json={"type": "incremental"})

    for response in (missing, borrowed, cross_site, not_a_form):
        assert response.status_code == 403, response.text
        assert "This form was refused" in response.text
    assert "another site" in cross_site.text
    assert stack.as_user("default", "operator").get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 0
    # Behind a TLS-terminating proxy the browser's origin says https for our own host: that is this site.
    proxied = operator.http.post(
        action,
        data={"type": "incremental", "csrf_token": csrf_of(operator.get("/sources").text)},
        headers={"Origin": stack.base_url.replace("http://", "https://")},
    )
    assert proxied.status_code == 303, proxied.text


# --- roles and accounts ---------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_a_viewer_sees_no_launch_retry_or_cancel_and_cannot_post_them(
    stack: RestStack, clients: list[UiClient]
) -> None:
    op_id, run_id = failed_run(stack)
    viewer = as_ui(stack, clients, "default", "viewer")
    operator = as_ui(stack, clients, "default", "operator")

    for page in ("/sources", "/runs", f"/runs/{run_id}", "/attention"):
        seen = viewer.get(page)
        assert seen.status_code == 200, page
        for button in (">Launch<", ">Retry<", ">Cancel run<", ">Retry selected<"):
            assert button not in seen.text, (page, button)
    assert ">Retry<" in operator.get(f"/runs/{run_id}").text
    assert ">Launch<" in operator.get("/sources").text

    refused = viewer.post_form("/runs", f"/runs/{run_id}/retry", {"next": "/runs"})
    assert "Your role (viewer) cannot retry runs." in flash(viewer.follow(refused).text)
    launch = viewer.post_form("/sources", f"/sources/{op_id}/launch", {"type": "incremental"})
    assert "cannot launch runs" in flash(viewer.follow(launch).text)
    assert stack.as_user("default", "viewer").get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_another_accounts_runs_sources_and_messages_are_not_found(stack: RestStack, clients: list[UiClient]) -> None:
    op_id, run_id = failed_run(stack, "theirs", account="other")
    ours = as_ui(stack, clients, "default", "administrator")
    tasks = stack.as_user("other", "administrator").get(f"/api/v1/runs/{run_id}/tasks").json()["items"]

    assert ours.get(f"/runs/{run_id}").status_code == 404
    assert ours.get(f"/runs/{run_id}/tasks/{tasks[0]['id']}/messages").status_code == 404
    assert ours.get(f"/sources/{op_id}/history").status_code == 404
    for page in ("/runs", "/sources", "/attention", "/loads", f"/runs?operation={op_id}"):
        assert "theirs" not in ours.get(page).text, page
    retried = ours.post_form("/runs", f"/runs/{run_id}/retry", {"next": "/runs"})
    assert "not retried" in flash(ours.follow(retried).text)
    assert stack.as_user("other", "viewer").get("/api/v1/runs").json()["total"] == 1


# --- bad input ------------------------------------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/runs?sort=1;DROP TABLE runs", "allowed: id, operation"),
        ("/runs?order=sideways", "order must be asc or desc"),
        ("/runs?status=exploded", "status 'exploded' is not one of"),
        ("/runs?page=abc", "page must be a whole number"),
        ("/runs?page_size=0", "page_size must be a whole number"),
        ("/runs?page_size=100000", "page_size"),
        ("/runs?operation=-1", "operation must be a whole number"),
        ("/loads?page=0", "page must be a whole number"),
    ],
)
def test_bad_page_parameters_are_a_400_page_that_says_what_is_wrong(
    stack: RestStack, clients: list[UiClient], path: str, words: str
) -> None:
    response = as_ui(stack, clients).get(path)

    assert response.status_code == 400, response.text
    assert words in html.unescape(response.text)
    assert "Traceback" not in response.text


@SQLITE_ONLY
def test_bad_task_parameters_and_unknown_runs(stack: RestStack, clients: list[UiClient]) -> None:
    _, run_id = failed_run(stack)
    client = as_ui(stack, clients)

    assert client.get(f"/runs/{run_id}?sort=nope").status_code == 400
    assert client.get(f"/runs/{run_id}?page_size=501").status_code == 400
    assert client.get("/runs/999999").status_code == 404
    assert "There is no run 999999 in your account." in client.get("/runs/999999").text


@SQLITE_ONLY
def test_untrusted_text_is_escaped_everywhere_it_is_shown(stack: RestStack, clients: list[UiClient]) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    op_id = stack.deploy(
        "escapes",
        [{"name": f"Process [{evil}]", "executor": "fail", "max_attempts": 1, "params": {"message": evil}}],
    )
    admin = stack.as_user("default", "administrator")
    run_id = stack.launch(admin, op_id)["id"]
    stack.wait_status(admin, run_id)
    client = as_ui(stack, clients)
    task_id = admin.get(f"/api/v1/runs/{run_id}/tasks").json()["items"][0]["id"]

    for page in (f"/runs/{run_id}", f"/runs/{run_id}/tasks/{task_id}/messages", "/attention"):
        body = client.get(page).text
        assert "<script>alert" not in body, page
        assert "<img src=x" not in body, page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body, page


# --- what the pages show and do -------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_launch_from_sources_then_a_second_launch_is_rejected(stack: RestStack, clients: list[UiClient]) -> None:
    op_id = stack.deploy("slow", [long_task("wait")])
    client = as_ui(stack, clients)

    first = client.post_form("/sources", f"/sources/{op_id}/launch", {"type": "destructive"})
    run_page = client.follow(first)
    second = client.post_form("/sources", f"/sources/{op_id}/launch", {"type": "incremental"})

    run_id = int(first.headers["location"].rsplit("/", 1)[1])
    assert f"Run {run_id} started (destructive)." in flash(run_page.text)
    assert "Destructive" in run_page.text
    message = flash(client.follow(second).text)
    assert "Rejected - previous load still running" in message
    assert f"run {run_id} is still active" in message
    runs = stack.as_user("default", "operator").get("/api/v1/runs", params={"operation": op_id}).json()["items"]
    statuses = sorted(run["status"] for run in runs)
    assert statuses in (["rejected", "waiting_to_start"], ["rejected", "running"])


@SQLITE_ONLY
def test_cancel_from_the_run_page(stack: RestStack, clients: list[UiClient]) -> None:
    op_id = stack.deploy("slow", [long_task("wait")])
    operator = stack.as_user("default", "operator")
    run_id = stack.launch(operator, op_id)["id"]
    stack.wait_task(operator, run_id, "wait", "running")
    client = as_ui(stack, clients)

    assert ">Cancel run<" in client.get(f"/runs/{run_id}").text
    response = client.post_form(f"/runs/{run_id}", f"/runs/{run_id}/cancel")

    assert response.headers["location"] == f"/runs/{run_id}"
    assert stack.wait_status(operator, run_id)["status"] == "canceled"
    page = client.get(f"/runs/{run_id}").text
    assert ">Cancel run<" not in page
    assert ">Retry<" in page  # the most recent run, and Canceled
    again = client.post_form("/runs", f"/runs/{run_id}/cancel", {"next": "/runs"})
    assert "was not canceled" in flash(client.follow(again).text)


@SQLITE_ONLY
def test_retry_only_where_allowed_and_the_retry_links_back(stack: RestStack, clients: list[UiClient]) -> None:
    _op_id, first_id = failed_run(stack)
    client = as_ui(stack, clients)
    runs_page = client.get("/runs").text
    assert f'action="/runs/{first_id}/retry"' in runs_page

    retried = client.post_form("/runs", f"/runs/{first_id}/retry")
    new_id = int(retried.headers["location"].rsplit("/", 1)[1])
    new_page = client.follow(retried).text
    stack.wait_status(stack.as_user("default", "operator"), new_id)

    assert f"Run {new_id} started: a retry of run {first_id}." in flash(new_page)
    assert f'<a href="/runs/{first_id}">Run {first_id}</a>' in new_page  # Retry of
    assert f'action="/runs/{first_id}/retry"' not in client.get("/runs").text  # no longer the most recent
    stale = client.post_form("/runs", f"/runs/{first_id}/retry", {"next": "/runs"})
    assert f"run {new_id} is more recent" in flash(client.follow(stale).text)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_needs_attention_lists_failed_sources_and_retries_the_selected_ones(
    stack: RestStack, clients: list[UiClient]
) -> None:
    _, first = failed_run(stack, "first")
    _, second = failed_run(stack, "second")
    fine = stack.deploy("fine", [sleep_task("quick", 0.05)])
    operator = stack.as_user("default", "operator")
    stack.wait_status(operator, stack.launch(operator, fine)["id"])
    client = as_ui(stack, clients)

    page = client.get("/attention").text
    assert run_ids(page) == [second, first]
    assert "Ingestion [employees]" in page
    assert "the warehouse refused the load" in page
    assert ">fine<" not in page

    response = client.http.post(
        "/attention/retry", data={"csrf_token": csrf_of(page), "run_id": [str(first), str(second)]}
    )
    message = flash(client.follow(response).text)

    assert message.startswith("Retried 2 run(s)")
    listed = operator.get("/api/v1/runs", params={"sort": "id", "order": "desc", "page_size": 2}).json()["items"]
    assert sorted(run["retry_of"] for run in listed) == [first, second]
    again = client.http.post("/attention/retry", data={"csrf_token": csrf_of(page), "run_id": [str(first), "abc"]})
    assert "not a list of run ids" in flash(client.follow(again).text)


@SQLITE_ONLY
def test_a_running_task_without_records_for_a_while_shows_as_stalled(stack: RestStack, clients: list[UiClient]) -> None:
    stack.runtime.settings = stack.settings.model_copy(update={"stalled_after_seconds": 0.5})
    op_id = stack.deploy("quiet", [long_task("Process [silent]", 30.0), sleep_task("after", 0.0, depends_on=[])])
    operator = stack.as_user("default", "operator")
    run_id = stack.launch(operator, op_id)["id"]
    stack.wait_task(operator, run_id, "Process [silent]", "running")
    client = as_ui(stack, clients)

    def stalled_rows() -> int:
        return client.get(f"/runs/{run_id}").text.count("status-stalled")

    wait_for(lambda: stalled_rows() or None, timeout=10, what="the silent task to show as Stalled")
    attention = client.get("/attention").text
    assert "Process [silent]" in attention
    assert "No task is stalled." not in attention
    operator.post(f"/api/v1/runs/{run_id}/cancel")


@SQLITE_ONLY
def test_run_time_history_and_data_loads(stack: RestStack, clients: list[UiClient]) -> None:
    op_id = stack.deploy_demo()
    admin = stack.as_user("default", "administrator")
    ids = []
    for run_type in ("destructive", "incremental", "incremental"):
        run = stack.launch(admin, op_id, run_type)
        assert stack.wait_status(admin, run["id"])["status"] == "completed"
        ids.append(run["id"])
    slow = stack.deploy("slow", [long_task("wait")])
    running = stack.launch(admin, slow)["id"]
    client = as_ui(stack, clients)

    history = client.get(f"/sources/{op_id}/history").text
    assert re.search(r'data-type="incremental"><td>.*?</td><td class="num">2</td>', history)
    assert re.search(r'data-type="destructive"><td>.*?</td><td class="num">1</td>', history)
    assert history.count("<circle") == 2
    assert history.count("<rect") == 1
    loads = client.get("/loads").text
    assert f'aria-label="Open run {running}, still running"' in loads
    for run_id in ids:
        assert f'<a href="/runs/{run_id}">Run {run_id}</a>' in loads
    assert "employees" in loads
    assert "time_off" in loads
    sources = client.get("/sources").text
    assert f'href="/runs?operation={op_id}">View API Runs' in sources
    assert f'href="/runs?operation={slow}">View API Runs' not in sources  # not an API source
    admin.post(f"/api/v1/runs/{running}/cancel")


@SQLITE_ONLY
def test_static_files_htmx_from_its_npm_package_and_our_stylesheet(stack: RestStack) -> None:
    htmx = httpx.get(f"{stack.base_url}/static/htmx.min.js")
    css = httpx.get(f"{stack.base_url}/static/runyard.css")

    assert htmx.status_code == 200
    assert "htmx" in htmx.text
    assert len(htmx.text) > 10_000
    assert htmx.headers["content-type"].startswith("text/javascript")
    assert css.status_code == 200
    assert ".badge" in css.text
    assert "/static/" not in str(httpx.get(f"{stack.base_url}/openapi.json").json()["paths"])
