"""The Exports page over real HTTP: start an export from the form, watch it reach Completed, download a cached page,
cancel a session; viewers see no data."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rest_harness import RestStack, rest_stack, wait_for
from tests.integration.ui_client import signed_in


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", f"sqlite:///{tmp_path / 'runyard.db'}") as running:
        warehouses = running.runtime.warehouses
        assert warehouses is not None
        warehouses.for_account("default").query(
            "CREATE TABLE sales AS SELECT range AS id, TIMESTAMP '2024-01-01' + to_hours(range) AS _runyard_loaded_at "
            "FROM range(250)"
        )
        yield running


def section(page: str, queue: str) -> str:
    found = re.search(rf'<section class="export-queue" id="queue-{queue}".*?</section>', page, re.S)
    assert found is not None, page
    return found.group()


def session_rows(page: str, queue: str) -> list[str]:
    return re.findall(r'<tr data-task-id="([^"]+)"', section(page, queue))


def test_start_watch_download_and_cancel(stack: RestStack) -> None:
    client = signed_in(stack, "default", "operator")
    try:
        page = client.get("/exports")
        assert page.status_code == 200
        assert '<option value="sales">sales</option>' in page.text
        assert "No active export." in page.text

        started = client.follow(
            client.post_form("/exports", "/exports", {"view": "sales", "pageSize": "100", "outputType": "csv"})
        )
        assert "Export of sales started" in html.unescape(started.text)

        def completed() -> list[str]:
            return session_rows(client.get("/exports").text, "completed")

        (token,) = wait_for(completed, timeout=30, what="the export to complete")
        done = section(client.get("/exports").text, "completed")
        assert "COMPLETED" in done
        assert "250" in done  # rows cached
        last = client.get(f"/exports/{token}/pages/3")
        assert last.status_code == 200
        assert last.headers["content-disposition"] == 'attachment; filename="sales-page-3.csv"'
        assert [row["id"] for row in csv.DictReader(io.StringIO(last.text))] == [str(n) for n in range(200, 250)]

        canceled = client.follow(client.post_form("/exports", f"/exports/{token}/cancel", {}))
        assert "Export canceled" in html.unescape(canceled.text)
        assert session_rows(canceled.text, "draining") == [token]
        assert "/pages/" not in section(canceled.text, "draining")
    finally:
        client.close()


def test_a_bad_window_is_refused_with_the_reason(stack: RestStack) -> None:
    client = signed_in(stack, "default", "operator")
    try:
        refused = client.follow(
            client.post_form(
                "/exports", "/exports", {"view": "sales", "fromDate": "2024-02-01", "toDate": "2024-01-01"}
            )
        )
        assert "Not started: toDate must be later than fromDate" in html.unescape(refused.text)
    finally:
        client.close()


def test_a_viewer_sees_no_export_and_cannot_start_one(stack: RestStack) -> None:
    client = signed_in(stack, "default", "viewer")
    try:
        page = client.get("/exports")
        assert page.status_code == 200
        assert "cannot export data" in page.text
        assert "export-queue" not in page.text
        refused = client.follow(client.post_form("/exports", "/exports", {"view": "sales"}))
        assert "Your role (viewer) cannot export data." in html.unescape(refused.text)
        assert client.get("/exports/x.y/pages/1").status_code == 404
    finally:
        client.close()
