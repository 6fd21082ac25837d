"""Spec 004's activity queues over real HTTP, with the timers shrunk: every move a session makes, on both stores.

A session stays active only while its export runs, so the queue tests export `stuck`: a warehouse view whose one row
needs a sum over 10^12 numbers. Its page 1 is never cached (until the export is stopped), and the session's
activity is only what the test's requests make. The waits poll the status endpoint, which is no activity.

The stale queue is tested on a second stack whose timers are a minute long, moved by backdating the session's
timestamps: `stuck` keeps every core busy, so a window of a second could pass unseen between two polls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.services.export_format import NOT_CACHED
from runyard.store.tables import export_sessions
from tests.integration.rest_harness import RestStack, database, rest_stack, wait_for

BACKENDS = ["sqlite", "postgresql"]
BIVIEWS = "/api/integrations/v2/biviews"
STATUS = "/api/integrations/v2/biviews-status"
TOKEN = "continuation-token"
TIMERS = {
    "export_completed_seconds": 1.0,
    "export_draining_seconds": 0.5,
    "export_stale_after_seconds": 0.6,
    "export_stale_seconds": 1.2,
    "export_first_page_seconds": 0.2,
}
# The stale queue's test moves time itself (World.age): nothing moves in the minute its steps may take.
MINUTE_TIMERS = {
    **TIMERS,
    "export_stale_after_seconds": 60.0,
    "export_stale_seconds": 60.0,
    "export_draining_seconds": 60.0,
}


@dataclass
class World:
    stack: RestStack
    operator: httpx.Client

    def session(self, token: str) -> dict[str, Any] | None:
        response = self.operator.get(f"{STATUS}/{token}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_queue(self, token: str, queue: str | None) -> dict[str, Any] | None:
        """The session once it is in `queue` (None: once it is removed)."""

        def reached() -> dict[str, Any] | bool | None:
            found = self.session(token)
            if queue is None:
                return found is None
            return found if found is not None and found["queue"] == queue else None

        found = wait_for(reached, timeout=30, what=f"session to reach {queue or 'removal'}", poll=0.02)
        return found if isinstance(found, dict) else None

    def age(self, token: str, seconds: float) -> None:
        """Move the session `seconds` into the past, as if that long had gone by without a request."""
        shift = timedelta(seconds=seconds)
        moments = [export_sessions.c.initiated_at, export_sessions.c.last_activity, export_sessions.c.queue_since]
        where = export_sessions.c.id == token.split(".")[0]
        with self.stack.runtime.store.write() as conn:
            row = conn.execute(sa.select(*moments).where(where)).one()
            conn.execute(
                export_sessions.update()
                .where(where)
                .values({column.name: value - shift for column, value in zip(moments, row, strict=True)})
            )

    def exporting(self) -> int:
        """How many background exports run in the stack's process."""
        return len(self.stack.runtime.exports._running)

    def cached_pages(self, token: str) -> list[str]:
        folder = self.stack.settings.home / "staging" / "default" / ".exports" / token.split(".")[0]
        return sorted(path.name for path in folder.glob("page-*")) if folder.exists() else []

    def start_stuck(self) -> str:
        response = self.operator.get(f"{BIVIEWS}/stuck", params={"pagenum": 1})
        assert response.status_code == 400
        assert response.json()["detail"] == NOT_CACHED
        return response.headers[TOKEN]


@contextmanager
def _world(kind: str, directory: Path, pg_template: Callable[[], str], timers: dict[str, float]) -> Iterator[World]:
    with (
        database(kind, directory, pg_template) as url,
        rest_stack(directory / "home", url, **timers) as stack,
    ):
        warehouses = stack.runtime.warehouses
        assert warehouses is not None
        warehouse = warehouses.for_account("default")
        warehouse.query("CREATE VIEW stuck AS SELECT sum(hash(range)) AS n FROM range(1000000000000)")
        warehouse.query("CREATE TABLE small AS SELECT range AS id FROM range(10)")
        warehouse.query("CREATE TABLE many AS SELECT range AS id FROM range(1000000)")
        world = World(stack, stack.as_user("default", "operator"))
        yield world
        wait_for(lambda: world.exporting() == 0, timeout=30, what="every export to stop")


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"export-queues-{kind}")
    with _world(kind, directory, lambda: str(request.getfixturevalue("pg_template")), TIMERS) as world:
        yield world


@pytest.fixture(params=BACKENDS)
def minute_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"export-stale-{kind}")
    with _world(kind, directory, lambda: str(request.getfixturevalue("pg_template")), MINUTE_TIMERS) as world:
        yield world


def test_a_slow_first_page_answers_not_cached_with_the_token_and_the_session_is_active(world: World) -> None:
    token = world.start_stuck()

    session = world.session(token)
    assert session is not None
    assert (session["queue"], session["status"], session["accumulate"], session["metric"]) == (
        "active",
        "ADDED-TO-QUEUE",
        0,
        None,
    )
    again = world.operator.get(f"{BIVIEWS}/stuck", params={"pagenum": 1}, headers={TOKEN: token})
    assert (again.status_code, again.json()["detail"]) == (400, NOT_CACHED)
    world.operator.delete(f"{STATUS}/{token}")


def test_active_to_stale_back_to_active_on_a_request_then_stale_to_draining_to_removed(minute_world: World) -> None:
    world = minute_world
    token = world.start_stuck()

    world.age(token, 61)  # idle past stale_after_seconds
    assert _queue(world, token) == "stale"
    back = world.operator.get(f"{BIVIEWS}/stuck", params={"pagenum": 1}, headers={TOKEN: token})
    assert back.json()["detail"] == NOT_CACHED  # a request within stale_seconds: activity
    assert _queue(world, token) == "active"

    world.age(token, 61)
    assert _queue(world, token) == "stale"
    world.age(token, 61)  # stale past stale_seconds, with no request
    draining = world.session(token)
    assert draining is not None
    assert (draining["queue"], draining["status"]) == ("draining", "ADDED-TO-QUEUE")
    refused = world.operator.get(f"{BIVIEWS}/stuck", params={"pagenum": 1}, headers={TOKEN: token})
    assert refused.status_code == 404  # draining takes no more pages
    # Draining stops the export; a session past draining_seconds is removed, and its token then answers 404.
    wait_for(lambda: world.exporting() == 0, timeout=30, what="the drained export to stop")
    world.age(token, 61)
    assert world.session(token) is None
    gone = world.operator.get(f"{BIVIEWS}/stuck", params={"pagenum": 1}, headers={TOKEN: token})
    assert gone.status_code == 404


def _queue(world: World, token: str) -> str:
    session = world.session(token)
    assert session is not None
    return str(session["queue"])


def test_completed_stays_while_paged_then_drains_and_is_removed_with_its_pages(world: World) -> None:
    first = world.operator.get(f"{BIVIEWS}/small", params={"pagenum": 1, "pageSize": 4})
    token = first.headers[TOKEN]
    completed = world.wait_queue(token, "completed")
    assert completed is not None
    assert (completed["status"], completed["accumulate"], completed["metric"]) == ("COMPLETED", 10, 2)
    assert world.cached_pages(token) == ["page-00000001", "page-00000002", "page-00000003"]

    # A client still paging keeps it completed past completed_seconds from its completion.
    for number in (2, 3, 2, 3):
        page = world.operator.get(f"{BIVIEWS}/small", params={"pagenum": number}, headers={TOKEN: token})
        assert page.status_code == 200
        session = world.session(token)
        assert session is not None
        assert session["queue"] == "completed"
        wait_for(lambda: _idle_for(world, token, 0.5), timeout=10, what="half a second without activity")

    draining = world.wait_queue(token, "draining")
    assert draining is not None
    assert draining["status"] == "COMPLETED"
    refused = world.operator.get(f"{BIVIEWS}/small", params={"pagenum": 2}, headers={TOKEN: token})
    assert refused.status_code == 404
    world.wait_queue(token, None)
    wait_for(lambda: world.cached_pages(token) == [], timeout=10, what="the cache to be deleted")


def test_cancel_mid_export_stops_the_caching_and_deletes_the_pages(world: World) -> None:
    first = world.operator.get(f"{BIVIEWS}/many", params={"pagenum": 1, "pageSize": 1})
    token = first.headers[TOKEN]
    wait_for(lambda: len(world.cached_pages(token)) > 20, timeout=30, what="the export to cache pages")
    session = world.session(token)
    assert session is not None
    assert (session["queue"], session["status"]) == ("active", "IN-PROGRESS")

    canceled = world.operator.delete(f"{STATUS}/{token}")

    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["queue"], canceled.json()["status"]) == ("draining", "CANCELED")
    wait_for(lambda: world.exporting() == 0, timeout=30, what="the export to stop")
    assert world.cached_pages(token) == []
    session = world.session(token)
    assert session is None or session["status"] == "CANCELED"
    assert session is None or session["accumulate"] < 1_000_000
    world.wait_queue(token, None)


def test_cancel_stops_a_query_that_has_not_given_its_first_page(world: World) -> None:
    token = world.start_stuck()
    assert world.exporting() == 1

    canceled = world.operator.delete(f"{STATUS}/{token}")

    assert canceled.json()["status"] == "CANCELED"
    wait_for(lambda: world.exporting() == 0, timeout=30, what="the interrupted query to end")


def _idle_for(world: World, token: str, seconds: float) -> bool:
    session = world.session(token)
    assert session is not None
    elapsed = session["activity_tracker"]
    from datetime import datetime

    last = datetime.fromisoformat(elapsed["last_activity"])
    initiated = datetime.fromisoformat(elapsed["initated_time"])
    since_start = _seconds(elapsed["elapsed_time"])
    return since_start - (last - initiated).total_seconds() >= seconds


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
