"""A data admin in a real browser: sign in, find the failed run, see why it failed, retry it and watch it finish.

The tests share one server (see conftest) and run in file order: the runs they read (1: demo-hr-sleep,
2: demo-hr Completed, 3: demo-stores-archive, 4: demo-hr-summaries_DEV, 5: demo-quality-check Failed (the demo's
failing check), 6: demo-badge-stream Running until the end, 7: demo-hr Failed) exist from the start, and only the
last tests launch new ones.
Each page's screenshot is written to docs/screenshots/ for the README.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.conftest import ADMIN_PASSWORD, VIEWER, VIEWPORT, UiServer, screenshot, sign_in

LIVE_SECONDS = 60_000  # ms: how long a run may take to show its next status on a live page


def rows(page: Page, table: str) -> Locator:
    return page.locator(f"#{table} tbody tr")


def task_names(page: Page) -> list[str]:
    return [name.strip() for name in page.locator("#tasks-table tbody td.task-name").all_inner_texts()]


def started_times(page: Page) -> list[datetime]:
    values = page.locator("#runs-table tbody tr td:nth-child(5) time").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('datetime'))"
    )
    return [datetime.fromisoformat(value) for value in values]


def failed_run_id(ui_server: UiServer) -> int:
    runs = ui_server.api.get("/api/v1/runs", params={"status": "failed"}).json()["items"]
    return int(runs[0]["id"])


# --- signing in -----------------------------------------------------------------------------------------------------


def test_a_wrong_password_shows_an_error_not_a_traceback(context: BrowserContext, ui_server: UiServer) -> None:
    page = context.new_page()
    page.goto(f"{ui_server.url}/runs")
    expect(page).to_have_url(re.compile(r"/login\?next=/runs$"))
    screenshot(page, "login")

    page.get_by_label("Login").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("That login and password do not match.")
    expect(page.get_by_label("Login")).to_have_value("admin")
    assert "Traceback" not in page.content()


def test_sources_list_operations_with_their_last_run(admin_page: Page, ui_server: UiServer) -> None:
    demo = admin_page.locator("#sources-table tr", has_text="Employees, departments and time off")
    sleep_demo = admin_page.locator("#sources-table tr", has_text="made of sleep tasks")

    expect(demo.get_by_role("link", name="View API Runs")).to_be_visible()
    expect(sleep_demo.get_by_role("link", name="View API Runs")).to_have_count(0)  # not an API source
    expect(demo.locator(".badge")).to_have_text("Failed")
    expect(demo.get_by_role("button", name="Launch demo-hr")).to_be_visible()
    screenshot(admin_page, "sources")

    demo.get_by_role("link", name="View API Runs").click()
    expect(admin_page).to_have_url(re.compile(rf"/runs\?operation={ui_server.operation_id('demo-hr')}$"))
    expect(rows(admin_page, "runs-table")).to_have_count(2)


def test_the_demo_runs_every_type_and_the_summaries_show_their_tables(admin_page: Page, ui_server: UiServer) -> None:
    types = admin_page.locator("#sources-table tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(types) == [
        "api-to-table",
        "api-to-table",
        "bi-view",
        "storage-to-storage",
        "table-to-table",
        "tasks",
        "tasks",
        "workflow",
    ]
    summaries = admin_page.locator("#sources-table tr", has_text="Headcount and time off by department")
    expect(summaries.locator(".badge")).to_have_text("Completed")
    expect(summaries.get_by_role("link", name="View API Runs")).to_have_count(0)  # not an API source
    # the demo's workflow launched the summaries (run 4) once demo-hr completed: its panel shows the count consumed
    workflow_row = admin_page.locator("#sources-table tr", has_text="demo-hr-summaries-after-hr")
    expect(workflow_row.get_by_role("button", name=re.compile("Launch"))).to_have_count(0)
    panel = admin_page.locator(".workflow-panel")
    expect(panel.locator("tr[data-upstream='demo-hr']")).to_have_attribute("data-successes", "0")
    expect(panel.get_by_role("link", name="run 4")).to_be_visible()
    screenshot(admin_page, "workflow-panel")
    assert ui_server.api.get("/api/v1/runs/4").json()["trigger"] == "workflow"

    admin_page.goto(f"{ui_server.url}/runs/4")
    expect(admin_page.locator("#run-status")).to_have_text("Completed")
    assert task_names(admin_page) == [
        "headcount_by_department",
        "time_off_by_department",
        "department_summary",
        "Data Load",
    ]
    summary_row = rows(admin_page, "tasks-table").filter(has_text="department_summary").first
    departments = ui_server.api.get("/api/v1/runs/4/tasks").json()["items"]
    (summary,) = [task for task in departments if task["name"] == "department_summary"]
    ((table, count),) = [(t["name"], t["record_count"]) for t in summary["tables"]]
    expect(summary_row.locator("td.tables")).to_have_text(f"{table} {count:,}")
    assert count > 0

    admin_page.goto(f"{ui_server.url}/loads")
    load = admin_page.locator("#loads-table tbody tr", has=admin_page.get_by_role("link", name="Run 4", exact=True))
    expect(load.locator("td.tables .table-name")).to_have_text(
        ["headcount_by_department", "time_off_by_department", "department_summary"]
    )


# --- the API Runs page ----------------------------------------------------------------------------------------------


def test_filter_api_runs_to_failed(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/runs")
    expect(rows(admin_page, "runs-table")).to_have_count(7)
    screenshot(admin_page, "api-runs")

    admin_page.get_by_label("Status").select_option(label="Failed")

    expect(admin_page).to_have_url(re.compile(r"status=failed"))
    expect(rows(admin_page, "runs-table")).to_have_count(2)  # demo-hr's, and the demo's failing check
    expect(rows(admin_page, "runs-table").locator("td[data-status]")).to_have_text(["Failed", "Failed"])
    expect(admin_page.get_by_role("button", name=f"Retry run {failed_run_id(ui_server)}")).to_be_visible()


def test_sort_api_runs_by_started_at_both_ways(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/runs")
    header = admin_page.get_by_role("columnheader", name=re.compile("Started At"))

    header.get_by_role("link").click()
    expect(admin_page).to_have_url(re.compile(r"sort=started_at&order=asc"))
    expect(header).to_have_attribute("aria-sort", "ascending")
    ascending = started_times(admin_page)

    header.get_by_role("link").click()
    expect(admin_page).to_have_url(re.compile(r"sort=started_at&order=desc"))
    expect(header).to_have_attribute("aria-sort", "descending")
    descending = started_times(admin_page)

    assert len(ascending) == 7
    assert ascending == sorted(ascending)
    assert descending == sorted(ascending, reverse=True)


# --- the API Run Details page ---------------------------------------------------------------------------------------


def test_open_a_failed_run_and_search_its_tasks(admin_page: Page, ui_server: UiServer) -> None:
    run_id = failed_run_id(ui_server)
    admin_page.goto(f"{ui_server.url}/runs?status=failed")
    admin_page.get_by_role("link", name=f"View run {run_id}").click()

    expect(admin_page).to_have_url(f"{ui_server.url}/runs/{run_id}")  # the run ID is in the address bar
    expect(admin_page.locator("#run-status")).to_have_text("Failed")
    expect(admin_page.locator("#tasks-table tr", has_text="Process [employees]").locator(".badge")).to_have_text(
        "Failed"
    )
    screenshot(admin_page, "api-run-details")
    search = admin_page.get_by_label("Search tasks")

    search.fill("mc")  # acronym: Metadata Consolidation
    expect(admin_page).to_have_url(re.compile(r"search=mc"))
    expect(rows(admin_page, "tasks-table")).to_have_count(3)
    assert all(name.startswith("Metadata Consolidation [") for name in task_names(admin_page))

    search.fill("pto")  # acronym with an underscore as a word boundary: Process [time_off]
    expect(rows(admin_page, "tasks-table")).to_have_count(1)
    assert task_names(admin_page) == ["Process [time_off]"]

    search.fill("fail")  # status prefix
    expect(rows(admin_page, "tasks-table").first.locator(".badge")).to_have_text("Failed")
    statuses = rows(admin_page, "tasks-table").locator("td[data-status] .badge").all_inner_texts()
    assert set(statuses) == {"Failed"}

    search.fill("skip")
    expect(rows(admin_page, "tasks-table").first.locator(".badge")).to_have_text("Skipped")
    assert "Data Load" in task_names(admin_page)


def test_search_by_table_name_change_page_size_and_read_messages(admin_page: Page, ui_server: UiServer) -> None:
    completed = ui_server.api.get(
        "/api/v1/runs", params={"status": "completed", "operation": ui_server.operation_id("demo-hr")}
    ).json()["items"]
    run_id = completed[-1]["id"]
    admin_page.goto(f"{ui_server.url}/runs/{run_id}")
    expect(rows(admin_page, "tasks-table")).to_have_count(13)

    admin_page.get_by_label("Search tasks").fill("time_of")  # table name; Data Load's own name does not match
    expect(admin_page).to_have_url(re.compile(r"search=time_of"))
    expect(rows(admin_page, "tasks-table")).to_have_count(5)
    assert sorted(task_names(admin_page)) == [
        "Data Load",
        "Ingestion [time_off]",
        "Metadata Consolidation [time_off]",
        "Process [time_off]",
        "time_off Consolidation",
    ]

    admin_page.goto(f"{ui_server.url}/runs/{run_id}")
    admin_page.get_by_label("Rows per page").select_option("10")
    expect(admin_page).to_have_url(re.compile(r"page_size=10"))
    expect(rows(admin_page, "tasks-table")).to_have_count(10)
    expect(admin_page.locator("nav.pager")).to_contain_text("Page 1 of 2")
    admin_page.get_by_role("link", name="Next →").click()
    expect(rows(admin_page, "tasks-table")).to_have_count(3)

    admin_page.goto(f"{ui_server.url}/runs/{run_id}?search=mc")
    admin_page.locator("a.message-count").first.click()
    expect(admin_page.locator("#messages-panel")).to_contain_text("Messages of Metadata Consolidation")
    expect(admin_page.locator("#messages-panel ol.messages li").first).to_be_visible()
    expect(admin_page).to_have_url(re.compile(r"search=mc$"))  # shown in place, no navigation


# --- the other pages ------------------------------------------------------------------------------------------------


def test_needs_attention_data_loads_and_run_time_history(admin_page: Page, ui_server: UiServer) -> None:
    run_id = failed_run_id(ui_server)
    admin_page.goto(f"{ui_server.url}/attention")
    failing = admin_page.locator(f'#attention-table tr[data-run-id="{run_id}"]')
    expect(failing).to_contain_text("Process [employees]")
    expect(failing).to_contain_text("the source answered HTML, not JSON")
    screenshot(admin_page, "needs-attention")

    admin_page.get_by_role("link", name="Data Loads").click()
    hr_load = rows(admin_page, "loads-table").filter(has_text="demo-hr ").filter(has_text="Run 2")
    expect(hr_load.locator("td.tables .table-name")).to_have_text(["employees", "departments", "time_off"])

    admin_page.goto(f"{ui_server.url}/sources/{ui_server.operation_id('demo-hr')}/history")
    expect(admin_page.locator("#history-summary tr[data-type='destructive'] td.num").first).to_have_text("1")
    expect(admin_page.locator("figure.chart svg rect")).to_have_count(1)
    screenshot(admin_page, "run-time-history")


def test_keyboard_labels_and_visible_focus(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/runs")
    admin_page.keyboard.press("Tab")
    skip = admin_page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    outline = skip.evaluate("node => getComputedStyle(node).outlineStyle")
    assert outline != "none"
    for label in ("Data Source", "Status", "Type", "Rows per page"):
        expect(admin_page.get_by_label(label)).to_be_visible()

    admin_page.get_by_label("Status").focus()
    admin_page.keyboard.press("Tab")
    expect(admin_page.get_by_label("Type")).to_be_focused()


# --- roles ----------------------------------------------------------------------------------------------------------


def test_a_viewer_sees_no_retry_launch_or_cancel(context: BrowserContext, ui_server: UiServer) -> None:
    page = context.new_page()
    sign_in(page, ui_server.url, *VIEWER)
    run_id = failed_run_id(ui_server)

    expect(page.locator("#sources-table tbody tr")).to_have_count(8)
    expect(page.get_by_role("button", name=re.compile("Launch"))).to_have_count(0)
    page.goto(f"{ui_server.url}/runs")
    expect(rows(page, "runs-table")).to_have_count(7)
    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    page.goto(f"{ui_server.url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("Failed")
    expect(page.get_by_role("button")).to_have_text(["Sign out", "Search"])


# --- retry, live --------------------------------------------------------------------------------------------------


def test_retry_then_watch_the_new_run_go_from_running_to_completed_without_a_reload(
    admin_page: Page, ui_server: UiServer
) -> None:
    run_id = failed_run_id(ui_server)
    ui_server.faults(slow_rate=1.0, slow_ms=700)  # every page of the source takes 0.7 s: the run lasts seconds
    try:
        admin_page.goto(f"{ui_server.url}/runs")
        admin_page.evaluate("window.__sameDocument = true")

        admin_page.get_by_role("button", name=f"Retry run {run_id}").click()

        expect(admin_page.locator(".flash-notice")).to_contain_text(f"a retry of run {run_id}")
        new_row = rows(admin_page, "runs-table").first
        expect(new_row.locator("td[data-status]")).to_have_text("Running", timeout=LIVE_SECONDS)
        new_id = int(new_row.get_attribute("data-run-id") or 0)
        assert new_id > run_id
        expect(new_row.locator("td[data-status]")).to_have_text("Completed", timeout=LIVE_SECONDS)
        assert admin_page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
        expect(admin_page.get_by_role("button", name=f"Retry run {run_id}")).to_have_count(0)
    finally:
        ui_server.faults()
    assert ui_server.run(new_id)["retry_of"] == run_id


def test_a_run_page_updates_live_while_its_tasks_progress(admin_page: Page, ui_server: UiServer) -> None:
    ui_server.faults(slow_rate=1.0, slow_ms=500)
    try:
        run_id = ui_server.launch("demo-hr", "destructive")
        admin_page.goto(f"{ui_server.url}/runs/{run_id}")
        admin_page.evaluate("window.__sameDocument = true")

        expect(admin_page.locator("#run-status")).to_have_text("Running", timeout=LIVE_SECONDS)
        loads = admin_page.context.new_page()
        loads.goto(f"{ui_server.url}/loads")
        info = loads.get_by_role("link", name=f"Open run {run_id}, still running")
        expect(info).to_be_visible()
        screenshot(loads, "data-loads")
        info.click()
        expect(loads).to_have_url(f"{ui_server.url}/runs/{run_id}")
        loads.close()
        expect(admin_page.locator("#run-status")).to_have_text("Completed", timeout=LIVE_SECONDS)
        expect(rows(admin_page, "tasks-table").locator("td[data-status] .badge")).to_have_text(["Completed"] * 13)
        assert admin_page.evaluate("window.__sameDocument") is True
    finally:
        ui_server.faults()


def test_sign_out(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.get_by_role("button", name="Sign out").click()
    expect(admin_page.get_by_role("status")).to_have_text("You are signed out.")
    admin_page.goto(f"{ui_server.url}/runs")
    expect(admin_page).to_have_url(re.compile(r"/login\?next=/runs$"))
    assert ADMIN_PASSWORD not in admin_page.content()


# --- untrusted text ---------------------------------------------------------------------------------------------------

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def test_untrusted_names_and_messages_render_as_text_and_never_run(
    admin_page: Page, ui_server: UiServer, tmp_path: Path
) -> None:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "configuration_type": "tasks",
                "configuration_id": "hostile",
                "description": XSS,
                "tasks": [
                    {"name": f"Process [{XSS}]", "executor": "fail", "max_attempts": 1, "params": {"message": XSS}}
                ],
            }
        )
    )
    ui_server.cli("deploy", str(spec))
    run_id = ui_server.launch("hostile")
    assert ui_server.wait_final(run_id)["status"] == "failed"
    dialogs: list[str] = []
    admin_page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    for path in ("/sources", f"/runs/{run_id}", "/attention"):
        admin_page.goto(f"{ui_server.url}{path}")
        expect(admin_page.get_by_text(XSS).first).to_be_visible()
        assert admin_page.evaluate("window.__xss") is None, path
    admin_page.goto(f"{ui_server.url}/runs/{run_id}")
    admin_page.locator("a.message-count").first.click()
    expect(admin_page.locator("#messages-panel")).to_contain_text(XSS)
    assert admin_page.evaluate("window.__xss") is None
    assert dialogs == []


# --- environments, activation and archiving ---------------------------------------------------------------------------

TOGGLE = """\
configuration_type: tasks
configuration_id: toggle
description: switched on and off from the Sources page
tasks:
  - {name: "Data Load", executor: noop}
"""


def test_filter_sources_then_deactivate_archive_and_see_a_change_made_elsewhere_live(
    admin_page: Page, ui_server: UiServer, tmp_path: Path
) -> None:
    spec = tmp_path / "toggle.yaml"
    spec.write_text(TOGGLE)
    ui_server.cli("deploy", str(spec), "--env", "STAGE")
    op_id = ui_server.operation_id("toggle")
    admin_page.goto(f"{ui_server.url}/sources")
    toggle = admin_page.locator(f'#sources-table tr[data-operation-id="{op_id}"]')

    admin_page.get_by_label("Environment", exact=True).select_option("STAGE")  # submits the GET form at once

    expect(admin_page).to_have_url(re.compile(r"/sources\?type=&environment=STAGE&state=$"))
    expect(rows(admin_page, "sources-table")).to_have_count(1)
    expect(toggle.locator("td.state")).to_have_text("Active")
    toggle.get_by_role("button", name="Deactivate toggle").click()

    expect(admin_page.locator(".flash-notice")).to_have_text("Source toggle (STAGE) is now Inactive.")
    expect(admin_page).to_have_url(re.compile(r"environment=STAGE"))  # back to the same filtered view
    expect(toggle.locator("td.state")).to_have_text("Inactive")
    expect(toggle.get_by_role("button", name="Launch toggle")).to_have_count(0)
    refused = ui_server.api.post(f"/api/v1/operations/{op_id}/runs", json={"type": "incremental"})
    assert (refused.status_code, refused.json()) == (
        409,
        {"detail": "operation toggle is deactivated; activate it to launch it"},
    )

    admin_page.evaluate("window.__sameDocument = true")
    activated = ui_server.api.post(f"/api/v1/operations/{op_id}/status", json={"activated": True, "archived": False})
    assert activated.status_code == 200, activated.text
    expect(toggle.locator("td.state")).to_have_text("Active", timeout=LIVE_SECONDS)  # the live refresh, in place
    expect(toggle.get_by_role("button", name="Launch toggle")).to_be_visible()
    assert admin_page.evaluate("window.__sameDocument") is True

    toggle.get_by_role("button", name="Archive toggle").click()

    expect(admin_page.locator(".flash-notice")).to_contain_text("Source toggle (STAGE) is now Archived.")
    expect(rows(admin_page, "sources-table")).to_have_count(0)
    admin_page.get_by_label("State", exact=True).select_option(label="Archived")
    expect(admin_page).to_have_url(re.compile(r"environment=STAGE&state=archived"))
    expect(toggle.locator("td.state")).to_have_text("Archived")
    expect(toggle.get_by_role("button", name="Activate toggle")).to_be_visible()
    assert ui_server.api.get("/api/v1/operations", params={"environment": "STAGE"}).json() == []


@pytest.fixture
def browser_without_js(browser: Browser) -> Iterator[BrowserContext]:
    """A browser context with JavaScript off: the pages must work in it, only without live updates."""
    opened = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)  # type: ignore[arg-type]
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


def test_sources_filters_work_without_javascript_and_viewers_get_no_state_buttons(
    browser_without_js: BrowserContext, context: BrowserContext, ui_server: UiServer
) -> None:
    page = browser_without_js.new_page()
    sign_in(page, ui_server.url, "admin", ADMIN_PASSWORD)

    page.get_by_label("Type", exact=True).select_option("tasks")
    page.get_by_label("State", exact=True).select_option(label="All, archived too")
    page.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"/sources\?type=tasks&environment=&state=all$"))
    expect(page.locator("#sources-table td.state", has_text="Archived")).to_have_count(1)  # toggle, archived above
    expect(page.get_by_role("link", name="View API Runs")).to_have_count(0)  # tasks are not API sources

    viewer = context.new_page()
    sign_in(viewer, ui_server.url, *VIEWER)
    viewer.goto(f"{ui_server.url}/sources?state=all")
    expect(viewer.locator("#sources-table tbody tr").first).to_be_visible()
    expect(viewer.get_by_role("button", name=re.compile(r"^(Activate|Deactivate|Archive|Unarchive) "))).to_have_count(0)


# --- the Exports page -----------------------------------------------------------------------------------------------


def test_the_demo_export_shows_completed_then_a_cancel_drains_it(admin_page: Page, ui_server: UiServer) -> None:
    employees = ui_server.api.get("/api/v1/sql/tables").json()["tables"]
    assert any(table["name"] == "employees" for table in employees)
    admin_page.goto(f"{ui_server.url}/exports")
    # The demo exported EMPLOYEES_V once demo-hr had loaded: 500 rows a page, every page cached.
    demo = admin_page.locator("#queue-completed tbody tr", has_text="EMPLOYEES_V")
    expect(demo.locator(".badge")).to_have_text("COMPLETED")
    (session,) = [
        s
        for s in ui_server.api.get("/api/integrations/v2/biviews-status").json()["completed"]
        if s["query_config"]["object_name"] == "EMPLOYEES_V"
    ]
    expect(demo.get_by_role("link", name="Page 1")).to_be_visible()
    assert session["accumulate"] > 0
    screenshot(admin_page, "exports")

    demo.get_by_role("button", name=re.compile("Cancel export")).click()

    expect(admin_page.locator(".flash")).to_contain_text("Export canceled")
    draining = admin_page.locator("#queue-draining tbody tr", has_text="EMPLOYEES_V")
    expect(draining.locator(".badge")).to_have_text("CANCELED")
