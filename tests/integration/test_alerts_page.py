"""The Alerts page, the alert badges on Sources and API Runs, and the alerts on Needs attention, over real HTTP.

The alerts come from real runs: a run Fails, the leading scheduler's evaluation (every RUNYARD_ALERT_SECONDS, short
here) raises its "Failed run" alert, and a later successful run of the same operation resolves it. One stack for
the module (rest_harness.rest_stack, SQLite); the tests read the alerts in place first, then silence and resolve
them, in file order. test_alerts_show_on_postgres_too runs the page's path on PostgreSQL with a stack of its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.domain.alerts import Alert
from runyard.services.accounts import account_id
from runyard.services.alerts import list_alerts
from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, rest_stack, wait_for
from tests.integration.ui_client import UiClient, csrf_of, signed_in

ALERT_SECONDS = 0.2
ALERT_TIMEOUT = 30.0
FAILING = [
    sleep_task("Process [employees]", 0.05, params={"records_per_unit": 5, "table": "employees"}),
    {
        "name": "Ingestion [employees]",
        "executor": "fail",
        "max_attempts": 1,
        "depends_on": ["Process [employees]"],
        "params": {"message": "the warehouse refused the load"},
    },
]
PASSING = [sleep_task("Process [employees]", 0.05, params={"records_per_unit": 5, "table": "employees"})]


def sqlite_url(directory: Path) -> str:
    from runyard.store import migrate
    from runyard.store.database import Store

    url = f"sqlite:///{directory / 'runyard.db'}"
    store = Store(url)
    migrate.upgrade(store)
    store.dispose()
    return url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    directory = tmp_path_factory.mktemp("alerts-page")
    with rest_stack(directory / "home", sqlite_url(directory), alert_seconds=ALERT_SECONDS) as running:
        yield running


@pytest.fixture(scope="module")
def failed(stack: RestStack) -> tuple[int, int]:
    """(operation id, run id) of `flaky`, whose one run Failed and whose "Failed run" alert is open."""
    return fail_once(stack, "flaky")


@pytest.fixture
def clients() -> Iterator[list[UiClient]]:
    opened: list[UiClient] = []
    yield opened
    for client in opened:
        client.close()


def as_ui(stack: RestStack, clients: list[UiClient], role: str = "administrator", account: str = "default") -> UiClient:
    client = signed_in(stack, account, role)
    clients.append(client)
    return client


def fail_once(stack: RestStack, name: str, account: str = "default") -> tuple[int, int]:
    """Deploy `name` (its tasks fail), launch it, and wait for the run to Fail and for its alert to open."""
    op_id = stack.deploy(name, FAILING, account=account)
    admin = stack.as_user(account, "administrator")
    run_id = stack.launch(admin, op_id)["id"]
    assert stack.wait_status(admin, run_id)["status"] == "failed"
    client = signed_in(stack, account, "administrator")
    try:
        wait_for(
            lambda: alert_rows(client.get(f"/alerts?operation_id={op_id}").text) or None,
            timeout=ALERT_TIMEOUT,
            what=f"the Failed run alert of {name}",
        )
    finally:
        client.close()
    return op_id, run_id


def stored(stack: RestStack, op_id: int) -> Alert:
    """The operation's newest alert as the store holds it (what the pages must show)."""
    with stack.store.read() as conn:
        account = account_id(conn, "default")
        found, _ = list_alerts(conn, account, now=stack.store.now(conn), operation_id=op_id, page_size=1)
    assert found, f"operation {op_id} has no alert"
    assert found[0].evidence, "an alert without evidence"
    return found[0]


def alert_rows(page: str) -> list[dict[str, str]]:
    """The rows of the page's alerts table: id, kind and state from each row's data attributes."""
    return [
        {"id": found[0], "kind": found[1], "state": found[2]}
        for found in re.findall(r'<tr id="alert-\d+" data-alert-id="(\d+)" data-kind="(\w+)" data-state="(\w+)"', page)
    ]


def flash(page: str) -> str:
    found = re.search(r'<p class="flash flash-(?:notice|error)"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, "the page shows no message"
    return html.unescape(found.group(1))


def nav_count(page: str) -> int:
    """The open-alert count in the nav's Alerts link (0 when the link shows none)."""
    link = re.search(r'<a href="/alerts" id="nav-alerts"[^>]*>(.*?)</a>', page, re.S)
    assert link is not None, "the page has no Alerts link"
    count = re.search(r'class="nav-count">(\d+)<', link.group(1))
    return int(count.group(1)) if count else 0


# --- reading: every role, every page ------------------------------------------------------------------------------


def test_a_failed_run_s_alert_is_open_with_its_evidence(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, run_id = failed
    client = as_ui(stack, clients, "viewer")

    page = client.get("/alerts")

    assert page.status_code == 200
    rows = alert_rows(page.text)
    assert [(row["kind"], row["state"]) for row in rows] == [("failed", "open")]
    text = html.unescape(page.text)
    assert "Failed run" in text
    assert f'<a href="/runs/{run_id}">Run {run_id}</a>' in page.text
    assert f'href="/runs?operation={op_id}"' in page.text  # the source: its runs
    assert f'<p class="evidence">{html.escape(stored(stack, op_id).evidence)}</p>' in page.text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", page.text)  # opened, its zone shown
    assert nav_count(page.text) == 1
    assert nav_count(client.get("/sources").text) == 1  # every page's nav carries the count
    empty = client.get("/alerts?state=resolved").text
    assert alert_rows(empty) == []
    assert "No resolved alert." in empty
    assert alert_rows(client.get("/alerts?state=silenced").text) == []


def test_a_viewer_has_no_silence_button_and_a_forged_post_is_refused(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    viewer = as_ui(stack, clients, "viewer")
    operator = as_ui(stack, clients, "operator")
    page = viewer.get("/alerts").text
    alert_id = alert_rows(page)[0]["id"]

    assert "/silence" not in page
    assert "/silence" not in operator.get("/alerts").text
    for client in (viewer, operator):  # a valid session and CSRF token, but not an administrator's
        forged = client.http.post(f"/alerts/{alert_id}/silence", data={"csrf_token": csrf_of(page), "for": "1h"})
        if client is operator:
            forged = client.post_form("/alerts", f"/alerts/{alert_id}/silence", {"for": "1h"})
        assert "cannot silence alerts" in flash(client.follow(forged).text)
    unsilence = viewer.post_form("/alerts", f"/alerts/{alert_id}/unsilence")
    assert "cannot unsilence alerts" in flash(viewer.follow(unsilence).text)
    no_token = viewer.http.post(f"/alerts/{alert_id}/silence", data={"for": "1h"})
    assert no_token.status_code == 403  # no CSRF token: refused before the role is even looked at
    assert [row["state"] for row in alert_rows(viewer.get("/alerts").text)] == ["open"]


def test_another_account_sees_none_of_it_and_its_posts_are_404(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, _ = failed
    mine = alert_rows(as_ui(stack, clients).get("/alerts").text)[0]["id"]
    other = as_ui(stack, clients, "administrator", "other")

    page = other.get("/alerts").text
    silenced = other.post_form("/alerts", f"/alerts/{mine}/silence", {"for": "1d"})
    unsilenced = other.post_form("/alerts", f"/alerts/{mine}/unsilence")

    assert alert_rows(page) == []
    assert "No open alert." in page
    assert nav_count(page) == 0
    assert alert_rows(other.get(f"/alerts?operation_id={op_id}").text) == []
    assert (silenced.status_code, unsilenced.status_code) == (404, 404)
    assert f"There is no alert {mine} in your account." in silenced.text
    assert "/alerts?operation_id=" not in other.get("/sources").text


def test_sources_and_api_runs_show_the_alert_badges(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, run_id = failed
    client = as_ui(stack, clients, "viewer")

    sources = client.get("/sources").text
    runs = client.get("/runs").text

    badge = re.search(rf'<a class="alert-count" href="/alerts\?operation_id={op_id}"[^>]*>(.*?)</a>', sources, re.S)
    assert badge is not None, sources
    assert re.sub(r"<[^>]+>", "", badge.group(1)) == "1 open alert"
    row = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', runs, re.S)
    assert row is not None
    kind = re.search(
        r'<a class="badge alert-open" href="([^"]+)" title="([^"]+)" data-alert-kind="failed">', row.group(1)
    )
    assert kind is not None, row.group(1)
    assert html.unescape(kind.group(1)).startswith(f"/alerts?operation_id={op_id}#alert-")
    assert html.unescape(kind.group(2)) == alert_summary(client, op_id)
    assert ">Failed run<" in row.group(1)


def alert_summary(client: UiClient, op_id: int) -> str:
    found = re.search(r'<strong class="summary">(.*?)</strong>', client.get(f"/alerts?operation_id={op_id}").text)
    assert found is not None
    return html.unescape(found.group(1))


def test_needs_attention_shows_each_open_alert_s_evidence(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, run_id = failed
    client = as_ui(stack, clients, "operator")

    page = client.get("/attention").text

    section = re.search(r'<table class="grid" id="attention-alerts">(.*?)</table>', page, re.S)
    assert section is not None, page
    assert alert_summary(client, op_id) in html.unescape(section.group(1))
    assert html.escape(stored(stack, op_id).evidence) in section.group(1)
    failing = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', page, re.S)
    assert failing is not None
    assert f">Failed run</a>: {stored(stack, op_id).evidence}</p>" in html.unescape(failing.group(1))
    assert "the warehouse refused the load" in failing.group(1)  # and the failing task's first message


def test_bad_filters_answer_400_with_the_reason(stack: RestStack, clients: list[UiClient]) -> None:
    client = as_ui(stack, clients, "viewer")

    for query, reason in (
        ("state=closed", "state 'closed' is not one of: open, silenced, resolved"),
        ("kind=fire", "kind 'fire' is not one of"),
        ("operation_id=abc", "operation_id must be a whole number"),
        ("page_size=1000", "page_size: must be between 1 and 200"),
    ):
        page = client.get(f"/alerts?{query}")
        assert page.status_code == 400, query
        assert reason in html.unescape(page.text), query


def test_paging_walks_the_alerts_newest_first(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    fail_once(stack, "flaky-two")
    client = as_ui(stack, clients, "viewer")

    first = client.get("/alerts?page_size=1")
    second = client.get("/alerts?page_size=1&page=2")

    assert [len(alert_rows(page.text)) for page in (first, second)] == [1, 1]
    assert int(alert_rows(first.text)[0]["id"]) > int(alert_rows(second.text)[0]["id"])
    assert "Page 1 of 2" in first.text
    assert 'rel="next"' in first.text
    assert nav_count(first.text) == 2


# --- changing: silence, unsilence, resolve -----------------------------------------------------------------------


def test_an_administrator_silences_an_alert_then_ends_the_silence(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, _ = failed
    admin = as_ui(stack, clients)
    (row,) = alert_rows(admin.get(f"/alerts?operation_id={op_id}").text)
    assert f'aria-label="Silence alert {row["id"]} for 1 hour"' in admin.get("/alerts").text

    silenced = admin.post_form("/alerts", f"/alerts/{row['id']}/silence", {"for": "1w", "next": "/alerts"})
    notice = flash(admin.follow(silenced).text)

    assert re.fullmatch(
        rf"Alert {row['id']} \(.+\) is silenced for 1 week, until \d{{4}}-\d\d-\d\d \d\d:\d\d UTC\.", notice
    )
    assert alert_rows(admin.get(f"/alerts?operation_id={op_id}").text) == []  # not open any more
    quiet = admin.get(f"/alerts?state=silenced&operation_id={op_id}").text
    assert [r["state"] for r in alert_rows(quiet)] == ["silenced"]
    assert "Silenced until" in quiet
    assert f'aria-label="Unsilence alert {row["id"]}"' in quiet
    assert f"/alerts?operation_id={op_id}" not in admin.get("/sources").text  # no badge while silenced
    forever = admin.post_form("/alerts", f"/alerts/{row['id']}/silence", {"for": "forever"})
    assert flash(admin.follow(forever).text) == "Choose how long to silence the alert: 1 hour, 1 day or 1 week."

    back = admin.post_form("/alerts", f"/alerts/{row['id']}/unsilence", {"next": "/alerts?state=silenced"})

    assert flash(admin.follow(back).text) == f"Alert {row['id']} ({alert_summary(admin, op_id)}) is no longer silenced."
    assert [r["state"] for r in alert_rows(admin.get(f"/alerts?operation_id={op_id}").text)] == ["open"]


def test_a_later_successful_run_resolves_the_alert(
    stack: RestStack, failed: tuple[int, int], clients: list[UiClient]
) -> None:
    op_id, run_id = failed
    assert stack.deploy("flaky", PASSING) == op_id  # the same operation, fixed
    admin_api = stack.as_user("default", "administrator")
    fixed = stack.launch(admin_api, op_id)["id"]
    assert stack.wait_status(admin_api, fixed)["status"] == "completed"
    client = as_ui(stack, clients, "viewer")

    def resolved_page() -> str | None:
        page = client.get(f"/alerts?state=resolved&operation_id={op_id}").text
        return page if alert_rows(page) else None

    resolved = wait_for(resolved_page, timeout=ALERT_TIMEOUT, what="the alert to resolve")

    assert [r["state"] for r in alert_rows(resolved)] == ["resolved"]
    assert '<th scope="col">Resolved</th>' in resolved
    assert alert_rows(client.get(f"/alerts?operation_id={op_id}").text) == []
    runs = client.get(f"/runs?operation={op_id}").text
    old = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', runs, re.S)
    assert old is not None
    assert 'class="badge alert-resolved"' in old.group(1)
    assert "/silence" not in resolved
    assert "/unsilence" not in resolved


# --- PostgreSQL -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_alerts_show_on_postgres_too(tmp_path: Path, database_url: str) -> None:
    with rest_stack(tmp_path / "home", database_url, alert_seconds=ALERT_SECONDS) as pg:
        op_id, _ = fail_once(pg, "flaky-pg")
        client = signed_in(pg, "default", "administrator")
        try:
            page = client.get("/alerts").text
            (row,) = alert_rows(page)
            assert f'<p class="evidence">{html.escape(stored(pg, op_id).evidence)}</p>' in page
            assert nav_count(page) == 1
            assert f'href="/alerts?operation_id={op_id}"' in client.get("/sources").text
            assert 'data-alert-kind="failed"' in client.get("/runs").text
            assert "attention-alerts" in client.get("/attention").text
            silenced = client.post_form("/alerts", f"/alerts/{row['id']}/silence", {"for": "1h"})
            assert "is silenced for 1 hour" in flash(client.follow(silenced).text)
            assert [r["state"] for r in alert_rows(client.get("/alerts?state=silenced").text)] == ["silenced"]
        finally:
            client.close()
