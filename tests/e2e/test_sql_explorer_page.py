"""The SQL Explorer in a real browser, against `runyard serve --demo` (see conftest): the demo's runs have loaded
employees, departments and time_off into the default account's warehouse.

Sign in, open the page from the navigation, find a table in the schema browser and insert its name, run a query
with Ctrl+Enter without a reload, see the rows, the count and the time, an error for a bad query, stop a slow
query, download the CSV; and the same page without JavaScript.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ADMIN_PASSWORD, VIEWER, VIEWPORT, UiServer, screenshot, sign_in

SLOW = "SELECT count(*) FROM range(1_000_000) a, range(1_000_000) b WHERE a.range + b.range < 0"


def open_explorer(page: Page) -> None:
    page.get_by_role("link", name="SQL Explorer").click()
    expect(page).to_have_url(re.compile(r"/sql$"))
    expect(page.get_by_role("heading", name="SQL Explorer")).to_be_visible()


def employee_count(ui_server: UiServer) -> int:
    response = ui_server.api.post("/api/v1/sql", json={"sql": "SELECT count(*) FROM employees"})
    assert response.status_code == 200, response.text
    return int(response.json()["rows"][0][0])


def test_browse_the_tables_run_a_query_and_see_rows_count_and_time(admin_page: Page, ui_server: UiServer) -> None:
    open_explorer(admin_page)
    schema = admin_page.locator("#schema")
    for table in ("departments", "employees", "time_off"):
        expect(schema.locator(f"li[data-table='{table}']")).to_be_visible()
    employees = schema.locator("li[data-table='employees']")
    employees.locator("summary").click(position={"x": 4, "y": 8})  # the disclosure arrow opens the columns
    expect(employees.locator("ul.columns")).to_be_visible()
    expect(employees.locator("ul.columns")).to_contain_text("_runyard_loaded_at")

    editor = admin_page.get_by_label("Query")
    editor.fill("SELECT count(*) AS n FROM ")
    editor.press("End")
    employees.get_by_role("button", name="employees", exact=True).click()  # inserts the name at the cursor
    expect(editor).to_have_value("SELECT count(*) AS n FROM employees")

    admin_page.evaluate("window.__notReloaded = true")
    editor.press("Control+Enter")
    expect(admin_page.locator("#sql-count")).to_contain_text(re.compile(r"^1 row in [\d.,]+ (ms|s)$"))
    expect(admin_page.locator("#sql-rows thead th")).to_have_text(["n BIGINT"])
    expect(admin_page.locator("#sql-rows tbody td")).to_have_text([str(employee_count(ui_server))])
    assert admin_page.evaluate("window.__notReloaded") is True  # ran without a page load
    expect(admin_page.locator("#sql-truncated")).to_have_count(0)
    screenshot(admin_page, "sql-explorer")


def test_the_row_limit_says_truncated(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/sql")
    admin_page.get_by_label("Query").fill("SELECT * FROM employees ORDER BY 1")
    admin_page.get_by_label("Max rows").fill("3")
    admin_page.get_by_role("button", name="Run").click()
    expect(admin_page.locator("#sql-count")).to_contain_text("3 rows in")
    expect(admin_page.locator("#sql-rows tbody tr")).to_have_count(3)
    expect(admin_page.locator("#sql-truncated")).to_contain_text("only the first 3 are shown")


def test_a_bad_query_shows_the_databases_message(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/sql")
    editor = admin_page.get_by_label("Query")
    editor.fill("SELECT nope FROM employees")
    editor.press("Control+Enter")
    error = admin_page.locator("#sql-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text('Binder Error: Referenced column "nope" not found in FROM clause!')
    expect(admin_page.get_by_role("alert")).to_contain_text("The query failed.")

    editor.fill("DROP TABLE employees")
    admin_page.get_by_role("button", name="Run").click()
    expect(error).to_contain_text("this is a DROP statement")
    assert employee_count(ui_server) > 0


def test_stop_a_slow_query(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/sql")
    admin_page.get_by_label("Query").fill(SLOW)
    admin_page.get_by_role("button", name="Run").click()
    stop = admin_page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    expect(admin_page.get_by_role("button", name="Run")).to_be_disabled()
    stop.click()
    expect(admin_page.locator("#sql-error")).to_contain_text("the query was stopped", timeout=10_000)
    expect(stop).to_be_hidden()
    expect(admin_page.get_by_role("button", name="Run")).to_be_enabled()


def test_download_csv_of_the_query(admin_page: Page, ui_server: UiServer, tmp_path: Path) -> None:
    admin_page.goto(f"{ui_server.url}/sql")
    admin_page.get_by_label("Query").fill("SELECT count(*) AS n, 'a,b' AS text FROM employees")
    admin_page.get_by_role("button", name="Run").click()
    expect(admin_page.locator("#sql-count")).to_contain_text("1 row in")
    with admin_page.expect_download() as download_info:
        admin_page.get_by_role("button", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == "query.csv"
    saved = tmp_path / "query.csv"
    download.save_as(saved)
    assert list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8")))) == [
        ["n", "text"],
        [str(employee_count(ui_server)), "a,b"],
    ]
    expect(admin_page).to_have_url(re.compile(r"/sql$"))  # still on the page


def test_without_javascript_the_form_posts_and_the_server_renders(browser: Browser, ui_server: UiServer) -> None:
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        sign_in(page, ui_server.url, "admin", ADMIN_PASSWORD)
        open_explorer(page)
        expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        page.get_by_label("Query").fill("SELECT name FROM departments ORDER BY name LIMIT 2")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#sql-count")).to_contain_text("2 rows in")
        expect(page.locator("#sql-rows tbody tr")).to_have_count(2)
        expect(page.get_by_label("Query")).to_have_value("SELECT name FROM departments ORDER BY name LIMIT 2")
        page.get_by_label("Query").fill("SELECT nope")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#sql-error")).to_contain_text("Binder Error")
    finally:
        context.close()


def test_a_viewer_has_no_link_and_is_refused(context: BrowserContext, ui_server: UiServer) -> None:
    page = context.new_page()
    sign_in(page, ui_server.url, *VIEWER)
    expect(page.get_by_role("link", name="SQL Explorer")).to_have_count(0)
    page.goto(f"{ui_server.url}/sql")
    expect(page.get_by_role("alert")).to_contain_text("Your role (viewer) cannot run SQL queries")
    expect(page.get_by_label("Query")).to_have_count(0)
