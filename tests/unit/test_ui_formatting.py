"""What the pages print, without a browser: times in UTC and saying so, the Status filter's labels, the Rejected
flash's link (escaped, local only), and a task's messages as a table row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from runyard.domain.statuses import RunStatus
from runyard.errors import RunRejected
from runyard.ui.routes.runs import STATUS_CHOICES, TASK_COLUMNS
from runyard.ui.routes.sources import blocking_run_link
from runyard.ui.sessions import Flash, FlashLink, SessionSigner
from runyard.ui.web import format_datetime, templates, time_element

PARIS_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (datetime(2026, 12, 5, 14, 3, 12, tzinfo=UTC), "2026-12-05 14:03:12 UTC"),
        (datetime(2026, 12, 5, 15, 3, 12, 999_999, tzinfo=PARIS_WINTER), "2026-12-05 14:03:12 UTC"),
        (datetime(2026, 12, 5, 14, 3, 12), "2026-12-05 14:03:12 UTC"),  # naive: the store's UTC, not local time
    ],
)
def test_every_time_is_shown_in_utc_and_says_so(value: datetime | None, text: str) -> None:
    assert format_datetime(value) == text
    assert templates.from_string("{{ value | dt }}").render(value=value) == text


def test_the_when_filter_wraps_the_time_in_a_time_element_with_its_iso_form() -> None:
    value = datetime(2026, 12, 5, 15, 3, 12, tzinfo=PARIS_WINTER)

    html = templates.from_string("<td>{{ value | when }}</td>").render(value=value)

    assert html == '<td><time datetime="2026-12-05T14:03:12+00:00">2026-12-05 14:03:12 UTC</time></td>'
    assert str(time_element(None)) == "—"


def test_the_status_filter_keeps_spec_000s_values_with_labels_that_fit_a_select() -> None:
    assert [value for value, _ in STATUS_CHOICES] == [status.value for status in RunStatus]
    labels = dict(STATUS_CHOICES)
    assert labels["rejected"] == "Rejected"  # its badge keeps "Rejected - previous load still running"
    assert labels["completed_with_errors"] == "Completed with Errors"
    assert max(len(label) for label in labels.values()) < len(RunStatus.REJECTED.label)


def test_a_rejected_launch_links_to_the_run_that_blocked_it() -> None:
    assert blocking_run_link(RunRejected("demo-hr", 9, 5)) == FlashLink("Open run 5, still active", "/runs/5")
    assert blocking_run_link(RunRejected("demo-hr", 9, None)) is None  # the race left no blocker to name


def test_a_flash_link_round_trips_signed_and_only_to_a_local_path() -> None:
    signer = SessionSigner(b"k" * 32, lifetime_seconds=3600)
    link = FlashLink("Open run 5, still active", "/runs/5")

    assert signer.read_flash(signer.flash("error", "Rejected", link)) == Flash("error", "Rejected", link)
    assert signer.read_flash(signer.flash("notice", "Started")) == Flash("notice", "Started")
    for href in ("https://evil.example/", "//evil.example/", "javascript:alert(1)", "/\\evil.example", "/a\r\nb"):
        assert signer.read_flash(signer.flash("error", "x", FlashLink("go", href))) == Flash("error", "x"), href


def test_the_flash_renders_its_text_and_link_escaped() -> None:
    flash = Flash("error", "<b>Rejected</b>", FlashLink("<i>run 5</i>", "/runs/5?a=1&b=2"))

    html = templates.get_template("base.html").render(flash=flash, viewer=None, htmx=False, active="")

    expected = '&lt;b&gt;Rejected&lt;/b&gt; <a href="/runs/5?a=1&amp;b=2">&lt;i&gt;run 5&lt;/i&gt;</a></p>'
    assert '<p class="flash flash-error" role="alert">' + expected in html


def test_a_tasks_messages_render_as_a_row_spanning_the_task_table() -> None:
    task = SimpleNamespace(
        id=12,
        name="Metadata Consolidation [time_off]",
        messages=[SimpleNamespace(level="info", text="<columns>", created_at=datetime(2026, 12, 5, tzinfo=UTC))],
    )

    html = templates.get_template("messages_fragment.html").render(task=task, run=SimpleNamespace(id=2))

    assert '<tr class="messages-row" data-messages-for="12">' in html
    assert f'<td colspan="{len(TASK_COLUMNS)}">' in html
    assert '<time datetime="2026-12-05T00:00:00+00:00">2026-12-05 00:00:00 UTC</time>' in html
    assert "&lt;columns&gt;" in html
