"""Browser tests: Playwright (Python) drives Debian's chromium against a real `runyard serve --demo`.

The server is one subprocess for the whole module, with the demo's runs in the order `runyard serve --demo` launches
them (runyard.serve.DEMO_FAILING): 1 demo-hr-sleep, 2 demo-hr, 3 demo-stores-archive (launched at once), 4
demo-hr-summaries_DEV (launched by the demo workflow once demo-hr completed), all four Completed; 5 demo-quality-check,
the demo's failing check, Failed (its "Failed run" alert is the demo's first); 6 demo-badge-stream, the live stream,
running; then a viewer user, and a seventh run, of demo-hr, that Failed (the demo source was told to answer HTML for
employees, then healed).
Chromium is /usr/bin/chromium, installed by `make test` (scripts/install-system-deps.sh); without it these
tests fail, they never skip.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.integration.cli_helpers import Background, Runyard, answers_health, free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags chromium keeps trying (and failing)
# to reach Google's hosts from a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's screenshots are rewritten only on request (`make screenshots`), so that a test run leaves the
# working tree as it found it; otherwise they go to a temporary folder (still taken, so still tested).
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("RUNYARD_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "runyard-screenshots"
)
ADMIN_PASSWORD = "admin-password-e2e"
VIEWER = ("vera", "viewer-password-e2e")
STARTUP_SECONDS = 30.0
RUN_SECONDS = 60.0
VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class UiServer:
    url: str
    source_url: str
    process: Background
    api: httpx.Client
    cli: Runyard

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.api.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_final(self, run_id: int) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] not in ("waiting_to_start", "running", "canceling") else None

        return wait_until(final, timeout=RUN_SECONDS, what=f"run {run_id} to end")

    def operation_id(self, configuration_id: str) -> int:
        operations = self.api.get("/api/v1/operations").json()
        return next(int(op["id"]) for op in operations if op["configuration_id"] == configuration_id)

    def launch(self, configuration_id: str, run_type: str = "incremental") -> int:
        response = self.api.post(
            f"/api/v1/operations/{self.operation_id(configuration_id)}/runs", json={"type": run_type}
        )
        assert response.status_code == 202, response.text
        return int(response.json()["id"])

    def faults(self, **settings: Any) -> None:
        """Change the demo source's fault switches (none given: clear them all)."""
        if settings:
            response = httpx.post(f"{self.source_url}/_admin/faults", json=settings, timeout=10)
        else:
            response = httpx.delete(f"{self.source_url}/_admin/faults", timeout=10)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    directory = tmp_path_factory.mktemp("e2e")
    cli = Runyard(directory / "home", extra_env={"RUNYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    port = free_port()
    process = cli.spawn("serve", "--demo", "--port", str(port), log=directory / "serve")
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, timeout=15)
    try:
        wait_until(lambda: answers_health(url, process), timeout=STARTUP_SECONDS, what="runyard serve --demo to answer")
        found = re.search(r"demo HR API \(the demo operations' source\) at (\S+)", process.stdout)
        assert found is not None, process.describe()
        token = api.post("/api/v1/auth/token", json={"login": "admin", "password": ADMIN_PASSWORD})
        assert token.status_code == 200, token.text
        api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        server = UiServer(url=url, source_url=found.group(1), process=process, api=api, cli=cli)
        # The demo launches three runs at once, and the summaries once demo-hr's run has completed: run 4.
        summaries = wait_until(lambda: _run_of(api, "demo-hr-summaries_DEV"), timeout=RUN_SECONDS, what="run 4")
        assert summaries == 4
        # Then its failing check (run 5), and the live stream, which runs until canceled (run 6).
        failing = wait_until(lambda: _run_of(api, "demo-quality-check"), timeout=RUN_SECONDS, what="run 5")
        assert failing == 5
        stream = wait_until(lambda: _run_of(api, "demo-badge-stream"), timeout=RUN_SECONDS, what="run 6")
        assert stream == 6
        for run in api.get("/api/v1/runs").json()["items"]:
            if run["id"] != stream:
                expected = "failed" if run["id"] == failing else "completed"
                assert server.wait_final(run["id"])["status"] == expected
        created = api.post("/api/v1/users", json={"login": VIEWER[0], "password": VIEWER[1], "role": "viewer"})
        assert created.status_code == 201, created.text
        server.faults(html_endpoints=["employees"])
        assert server.wait_final(server.launch("demo-hr"))["status"] == "failed"
        server.faults()
        yield server
    finally:
        api.close()
        process.stop(signal.SIGTERM)
    assert "Traceback" not in process.stderr, process.describe()


def _run_of(api: httpx.Client, configuration_id: str) -> int | None:
    runs = api.get("/api/v1/runs").json()["items"]
    return next((run["id"] for run in runs if run["configuration_id"] == configuration_id), None)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/install-system-deps.sh)")
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    opened.set_default_timeout(15_000)
    yield opened
    opened.close()


def sign_in(page: Page, url: str, login: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/sources$"))


@pytest.fixture
def admin_page(context: BrowserContext, ui_server: UiServer) -> Page:
    page = context.new_page()
    sign_in(page, ui_server.url, "admin", ADMIN_PASSWORD)
    return page


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(b"\x89PNG"), path
