"""What a new user tripped on (issue 17), checked in a real browser on every page of the UI at 420 px and 1280 px.

Every page: axe-core (WCAG 2.1 A and AA, and best practice) finds nothing; the page never scrolls sideways (wide
tables scroll in a box of their own); the header keeps the user's name and Sign out inside its bar; every time
shown says its zone (UTC, or a schedule's own zone); and a screenshot `<page>-<width>.png` goes to SCREENSHOTS.
Then the particular trips: dates and names on one line, the Status filter's width, a task's messages opening right
under the task clicked, and the Rejected flash linking to the run that blocked the launch.

The pages come from the navigation itself (so a page added to it, such as Alerts, is checked without a change
here) plus the pages reached from them. The server is conftest's demo, one per module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ADMIN_PASSWORD, UiServer, screenshot, sign_in

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
NARROW, WIDE = 420, 1280
WIDTHS = (NARROW, WIDE)
#: Screenshot names of the navigation's pages; a page not named here is named after its address.
NAV_NAMES = {
    "/sources": "sources",
    "/runs": "api-runs",
    "/loads": "data-loads",
    "/attention": "needs-attention",
    "/alerts": "alerts",
    "/sql": "sql-explorer",
    "/exports": "exports",
}
#: A date and time as the pages write them, and what must follow it: UTC, or a schedule's own zone
#: ("next 2026-12-07 06:00 Europe/Paris": a schedule's ticks are on its clock, and say which).
TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
ZONE = re.compile(r"\s+(?:UTC|[A-Z][A-Za-z_]+/[A-Za-z_+-]+(?:/[A-Za-z_+-]+)?)\b")
# Live pages refresh every 1.5 s; axe and the measurements read a page that holds still.
FREEZE = "document.addEventListener('htmx:beforeRequest', (event) => event.preventDefault())"


@dataclass(frozen=True)
class UiPage:
    name: str  # the screenshot's name, before "-<width>.png"
    path: str


def demo_run(ui_server: UiServer, configuration_id: str, status: str) -> int:
    runs = ui_server.api.get("/api/v1/runs", params={"operation": ui_server.operation_id(configuration_id)})
    return next(int(run["id"]) for run in runs.json()["items"] if run["status"] == status)


def task_with_messages(ui_server: UiServer, run_id: int) -> int:
    tasks = ui_server.api.get(f"/api/v1/runs/{run_id}/tasks", params={"page_size": 200}).json()["items"]
    return next(int(task["id"]) for task in tasks if task["messages"])


def nav_pages(page: Page) -> list[UiPage]:
    hrefs: list[str] = page.locator("header.top nav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return [UiPage(NAV_NAMES.get(href, href.strip("/").replace("/", "-")), href) for href in hrefs]


def reached_pages(ui_server: UiServer) -> list[UiPage]:
    """The pages the navigation leads to: a run's details, a task's messages, a workflow, a source's run times."""
    run_id = demo_run(ui_server, "demo-hr", "completed")
    workflow = next(
        op for op in ui_server.api.get("/api/v1/operations").json() if op["configuration_type"] == "workflow"
    )
    return [
        UiPage("api-run-details", f"/runs/{run_id}"),
        UiPage("task-messages", f"/runs/{run_id}/tasks/{task_with_messages(ui_server, run_id)}/messages"),
        UiPage("workflow", f"/sources/{workflow['id']}/workflow"),
        UiPage("run-times", f"/sources/{ui_server.operation_id('demo-hr')}/history"),
    ]


def open_context(browser: Browser, width: int) -> BrowserContext:
    # The pages' CSP allows no inline script: bypassed here, for axe's <script> tag and nothing else.
    opened = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    opened.set_default_timeout(15_000)
    return opened


@pytest.fixture
def wide_context(browser: Browser) -> Iterator[BrowserContext]:
    opened = open_context(browser, WIDE)
    yield opened
    opened.close()


@pytest.fixture
def narrow_context(browser: Browser) -> Iterator[BrowserContext]:
    opened = open_context(browser, NARROW)
    yield opened
    opened.close()


def signed_in(context: BrowserContext, ui_server: UiServer) -> Page:
    page = context.new_page()
    sign_in(page, ui_server.url, "admin", ADMIN_PASSWORD)
    return page


# --- what every page must do ---------------------------------------------------------------------------------------


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it stands, one line each: id, impact and the elements."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """tags => axe.run(document, {runOnly: {type: "tag", values: tags}}).then(result => result.violations.map(
             v => ({id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(" "))})))""",
        AXE_TAGS,
    )
    return [f"{v['id']} ({v['impact']}): {', '.join(v['targets'])}" for v in found]


def sideways_scroll(page: Page) -> list[str]:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    return [] if width <= inner else [f"the page scrolls sideways: {width} px wide in a {inner} px window"]


def header_problems(page: Page) -> list[str]:
    """The signed-in user's name and Sign out: visible, and inside the header bar's box."""
    problems = []
    bar = page.locator("header.top").bounding_box()
    assert bar is not None
    for what, part in (
        ("user name", page.locator("header.top .who > span").first),
        ("Sign out", page.get_by_role("button", name="Sign out")),
    ):
        box = part.bounding_box()
        if not part.is_visible() or box is None:
            problems.append(f"the header's {what} is not visible")
        elif not (
            box["x"] >= bar["x"]
            and box["y"] >= bar["y"]
            and box["x"] + box["width"] <= bar["x"] + bar["width"]
            and box["y"] + box["height"] <= bar["y"] + bar["height"]
        ):
            problems.append(f"the header's {what} spills out of the bar: {box} outside {bar}")
    return problems


def times_without_zone(page: Page) -> list[str]:
    text = page.locator("body").inner_text()
    problems = [
        f"a time without its zone: {text[m.start() : m.end() + 20]!r}"
        for m in TIME.finditer(text)
        if not ZONE.match(text, m.end())
    ]
    return problems + (["a time says UTC twice"] if re.search(r"UTC\s+UTC", text) else [])


def check_page(page: Page, ui_page: UiPage, width: int, *, signed_in: bool = True) -> list[str]:
    page.evaluate(FREEZE)
    screenshot(page, f"{ui_page.name}-{width}")
    problems = axe_violations(page) + sideways_scroll(page) + times_without_zone(page)
    if signed_in:
        problems += header_problems(page)
    if width == WIDE:  # at a laptop's width the tables fit: nothing scrolls, not even inside its box
        boxes: list[list[Any]] = page.locator(".table-scroll").evaluate_all(
            "boxes => boxes.map(b => [b.id, b.scrollWidth, b.clientWidth])"
        )
        problems += [
            f"table box {id_} scrolls at {width} px ({wide} > {shown})" for id_, wide, shown in boxes if wide > shown
        ]
    return [f"{ui_page.path} at {width} px: {problem}" for problem in problems]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_passes_axe_fits_the_width_and_says_utc(browser: Browser, ui_server: UiServer, width: int) -> None:
    context, anonymous = open_context(browser, width), open_context(browser, width)
    try:
        page = signed_in(context, ui_server)
        pages = nav_pages(page)
        assert {"/sources", "/runs", "/loads", "/attention", "/sql", "/exports"} <= {p.path for p in pages}
        problems: list[str] = []
        for ui_page in pages + reached_pages(ui_server):
            response = page.goto(f"{ui_server.url}{ui_page.path}")
            assert response is not None, ui_page
            assert response.status == 200, ui_page
            problems += check_page(page, ui_page, width)

        login = anonymous.new_page()
        login.goto(f"{ui_server.url}/login")
        problems += check_page(login, UiPage("login", "/login"), width, signed_in=False)
    finally:
        context.close()
        anonymous.close()
    assert not problems, "\n".join(problems)


# --- the particular trips ------------------------------------------------------------------------------------------


def line_counts(page: Page, selector: str) -> list[int]:
    """How many lines each match's text takes (an inline element has one client rect per line)."""
    counts: list[int] = page.locator(selector).evaluate_all("nodes => nodes.map(n => n.getClientRects().length)")
    return counts


def test_dates_and_names_stay_on_one_line_at_420_px(narrow_context: BrowserContext, ui_server: UiServer) -> None:
    page = signed_in(narrow_context, ui_server)
    page.goto(f"{ui_server.url}/sources")
    page.evaluate(FREEZE)
    for selector in ("#sources-table td time", "#sources-table .source-name", "#sources-table .when"):
        counts = line_counts(page, selector)
        assert counts, selector
        assert set(counts) == {1}, (selector, counts)

    page.goto(f"{ui_server.url}/runs")
    page.evaluate(FREEZE)
    names = page.locator("#runs-table .source-name")
    assert "demo-hr-summaries_DEV" in names.all_inner_texts()  # a name with hyphens
    for selector in ("#runs-table .source-name", "#runs-table td time"):
        counts = line_counts(page, selector)
        assert counts, selector
        assert set(counts) == {1}, (selector, counts)
    for text in page.locator("#runs-table td time").all_inner_texts():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", text), text


def test_the_status_filter_is_narrower_than_the_longest_status(
    wide_context: BrowserContext, ui_server: UiServer
) -> None:
    page = signed_in(wide_context, ui_server)
    page.goto(f"{ui_server.url}/runs")
    status = page.get_by_label("Status")
    values = status.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert values == [
        "",
        "waiting_to_start",
        "running",
        "completed",
        "completed_with_errors",
        "failed",
        "canceling",
        "canceled",
        "rejected",
    ]  # spec 000's statuses, unchanged in the address
    assert "Rejected" in status.locator("option").all_inner_texts()
    longest = page.evaluate(
        """select => { const probe = document.createElement("span"); probe.style.font = getComputedStyle(select).font;
             probe.textContent = "Rejected - previous load still running"; document.body.append(probe);
             const width = probe.getBoundingClientRect().width; probe.remove(); return width; }""",
        status.element_handle(),
    )
    assert status.bounding_box()["width"] < longest  # type: ignore[index]

    status.select_option("rejected")
    expect(page).to_have_url(re.compile(r"status=rejected"))
    expect(page.get_by_label("Status")).to_have_value("rejected")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_tasks_messages_open_right_under_the_task_clicked(browser: Browser, ui_server: UiServer, width: int) -> None:
    context = open_context(browser, width)
    try:
        page = signed_in(context, ui_server)
        run_id = demo_run(ui_server, "demo-hr", "completed")
        page.goto(f"{ui_server.url}/runs/{run_id}")
        with_messages = page.locator("#tasks-table tbody tr", has=page.locator("a.message-count"))
        expect(with_messages.first).to_be_visible()
        assert with_messages.count() >= 2
        row = with_messages.last  # far down a 13-task table: its messages used to open below the table
        row.scroll_into_view_if_needed()
        row.locator("a.message-count").click()

        opened = page.locator("tr.messages-row")
        expect(opened).to_have_count(1)
        expect(page.locator("#messages-panel")).to_be_focused()
        expect(page.locator("#messages-panel")).to_contain_text(row.locator("td.task-name").inner_text())
        expect(page.locator("#messages-panel ol.messages li").first).to_be_visible()
        row_box, panel_box = row.bounding_box(), page.locator("#messages-panel").bounding_box()
        assert row_box is not None
        assert panel_box is not None
        assert opened.evaluate("node => node.previousElementSibling.dataset.taskId") == row.get_attribute(
            "data-task-id"
        )
        assert row_box["y"] + row_box["height"] <= panel_box["y"] <= row_box["y"] + row_box["height"] + 2
        assert 0 <= panel_box["y"] < page.viewport_size["height"]  # type: ignore[index]
        assert not axe_violations(page)
        screenshot(page, f"task-messages-open-{width}")

        first = with_messages.first
        first.locator("a.message-count").click()  # another task's: one open at a time, under that task
        expect(page.locator("#messages-panel")).to_contain_text(first.locator("td.task-name").inner_text())
        expect(opened).to_have_count(1)
        first.locator("a.message-count").click()  # the open task's count again: closes them
        expect(opened).to_have_count(0)
        first.locator("a.message-count").click()
        expect(opened).to_have_count(1)
        page.get_by_role("button", name="Close messages").click()
        expect(opened).to_have_count(0)
        expect(first.locator("a.message-count")).to_be_focused()
    finally:
        context.close()


def test_the_rejected_flash_links_to_the_run_that_blocked_it(wide_context: BrowserContext, ui_server: UiServer) -> None:
    page = signed_in(wide_context, ui_server)
    stream = demo_run(ui_server, "demo-badge-stream", "running")  # a live stream: Running until canceled

    page.get_by_role("button", name="Launch demo-badge-stream").click()

    flash = page.locator("p.flash-error")
    expect(flash).to_contain_text("Rejected - previous load still running")
    link = flash.get_by_role("link", name=f"Open run {stream}, still active")
    expect(link).to_have_attribute("href", f"/runs/{stream}")
    assert not axe_violations(page)
    screenshot(page, "rejected-flash-1280")
    link.click()
    expect(page).to_have_url(f"{ui_server.url}/runs/{stream}")
    expect(page.locator("#run-status")).to_have_text("Running")


LIVE_MESSAGES = """\
configuration_type: tasks
configuration_id: live-messages
description: a run that stays Running while one of its tasks has already failed with a message
tasks:
  - {name: "Check [quick]", executor: fail, max_attempts: 1, params: {message: "the check found a problem"}}
  - {name: "Wait [long]", executor: sleep, params: {seconds: 120, units: 120}}
"""


def test_open_messages_stay_under_their_task_while_a_live_run_page_refreshes(
    wide_context: BrowserContext, ui_server: UiServer, tmp_path: Path
) -> None:
    spec = tmp_path / "live-messages.yaml"
    spec.write_text(LIVE_MESSAGES)
    ui_server.cli("deploy", str(spec))
    run_id = ui_server.launch("live-messages")
    page = signed_in(wide_context, ui_server)
    try:
        page.goto(f"{ui_server.url}/runs/{run_id}")  # live: its task table is redrawn every 1.5 s
        link = page.get_by_role("link", name="1 message of Check [quick]")
        expect(link).to_be_visible(timeout=60_000)
        link.click()
        expect(page.locator("#messages-panel")).to_be_focused()
        expect(page.locator("#messages-panel")).to_contain_text("the check found a problem")
        page.evaluate(
            """() => { window.__tasksRedrawn = 0;
                 document.addEventListener("htmx:afterSettle", (event) => {
                   const config = event.detail.requestConfig;
                   if (config && config.elt && config.elt.id === "tasks") window.__tasksRedrawn += 1;
                 }); }"""
        )

        page.wait_for_function("window.__tasksRedrawn >= 2")

        opened = page.locator("tr.messages-row")
        expect(opened).to_have_count(1)
        above = opened.evaluate("node => node.previousElementSibling.textContent")
        assert "Check [quick]" in above
        expect(page.locator("#messages-panel")).to_be_focused()
        expect(page.locator("#run-status")).to_have_text("Running")  # it was live all along
    finally:
        ui_server.api.post(f"/api/v1/runs/{run_id}/cancel")
