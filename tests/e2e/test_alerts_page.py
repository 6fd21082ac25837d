"""Alerts in a real browser, against `runyard serve --demo` (see conftest): the demo's failing check (run 5) raises
the demo's first alert within its first minute, the Alerts page shows it live with its evidence, Sources and API Runs
carry its badge, and an administrator silences it. The tests run in file order on one server; only the last one
changes anything (the silence).
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import UiServer, screenshot

#: ms: the demo promises an alert within its first minute; the page is live, so it appears without a reload.
DEMO_MINUTE = 60_000
FAILING_CHECK = "demo-quality-check"
FAILING_RUN = 5  # conftest: the demo's fifth run is its failing check


def alert_rows(page: Page) -> Locator:
    return page.locator("#alerts-table tbody tr")


def alert_of_run(page: Page, run_id: int) -> Locator:
    return alert_rows(page).filter(has=page.get_by_role("link", name=f"Run {run_id}", exact=True))


def test_the_demo_raises_an_alert_within_its_first_minute(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/alerts")

    row = alert_of_run(admin_page, FAILING_RUN)
    expect(row).to_be_visible(timeout=DEMO_MINUTE)

    expect(row.locator(".badge")).to_have_text("Failed run")
    expect(row.get_by_role("link", name=FAILING_CHECK)).to_have_attribute(
        "href", f"/runs?operation={ui_server.operation_id(FAILING_CHECK)}"
    )
    expect(row.locator(".summary")).to_contain_text(f"run {FAILING_RUN} Failed")
    expect(row.locator(".evidence")).not_to_be_empty()
    expect(row.locator("time")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    expect(admin_page.locator("#tab-open")).to_have_attribute("aria-current", "page")
    # conftest's failed demo-hr run (run 7) raised the second: both are open, newest first
    expect(alert_rows(admin_page)).to_have_count(2, timeout=DEMO_MINUTE)
    expect(alert_rows(admin_page).first).to_contain_text("demo-hr")
    expect(admin_page.locator("#nav-alerts")).to_have_text("Alerts 2 open")  # the nav and tabs follow, live too
    expect(admin_page.locator("#tab-open")).to_have_text("Open 2")
    screenshot(admin_page, "alerts")


def test_sources_and_api_runs_link_to_the_alert(admin_page: Page, ui_server: UiServer) -> None:
    operation = ui_server.operation_id(FAILING_CHECK)
    source = admin_page.locator("#sources-table tbody tr", has_text=FAILING_CHECK)

    badge = source.locator("a.alert-count")
    expect(badge).to_have_text("1 open alert")
    badge.click()

    expect(admin_page).to_have_url(f"{ui_server.url}/alerts?operation_id={operation}")
    expect(alert_rows(admin_page)).to_have_count(1)
    expect(alert_of_run(admin_page, FAILING_RUN)).to_be_visible()
    expect(admin_page.get_by_label("Data Source")).to_have_value(str(operation))

    admin_page.goto(f"{ui_server.url}/runs")
    run_badge = admin_page.locator(f'#runs-table tr[data-run-id="{FAILING_RUN}"] a.badge')
    expect(run_badge).to_have_text("Failed run alert")
    expect(run_badge).to_have_attribute("title", re.compile(rf"run {FAILING_RUN} Failed"))


def test_needs_attention_shows_the_alert_and_its_evidence(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/attention")

    alert = admin_page.locator("#attention-alerts tbody tr", has_text=FAILING_CHECK)
    expect(alert.locator(".evidence")).not_to_be_empty()
    failing = admin_page.locator(f'#attention-table tr[data-run-id="{FAILING_RUN}"]')
    expect(failing).to_contain_text("This demo check always fails")  # the failing task's message
    expect(failing.get_by_role("link", name="Failed run")).to_be_visible()  # and its alert, with the evidence


def test_an_administrator_silences_the_demo_s_alert(admin_page: Page, ui_server: UiServer) -> None:
    admin_page.goto(f"{ui_server.url}/alerts?operation_id={ui_server.operation_id(FAILING_CHECK)}")
    expect(alert_of_run(admin_page, FAILING_RUN)).to_be_visible()

    admin_page.get_by_role("button", name=re.compile(r"^Silence alert \d+ for 1 day$")).click()

    expect(admin_page.locator(".flash-notice")).to_contain_text("is silenced for 1 day, until")
    expect(admin_page.get_by_text("No open alert matches these filters.")).to_be_visible()
    admin_page.get_by_role("link", name=re.compile(r"^Silenced")).click()
    expect(admin_page).to_have_url(re.compile(r"state=silenced"))
    silenced = alert_of_run(admin_page, FAILING_RUN)
    expect(silenced).to_have_attribute("data-state", "silenced")
    expect(silenced.get_by_role("button", name=re.compile(r"^Unsilence alert \d+$"))).to_be_visible()
    expect(admin_page.locator("#nav-alerts")).to_have_text("Alerts 1 open")  # demo-hr's alert is still open

    admin_page.goto(f"{ui_server.url}/sources")
    source = admin_page.locator("#sources-table tbody tr", has_text=FAILING_CHECK)
    expect(source.locator("a.alert-count")).to_have_count(0)
