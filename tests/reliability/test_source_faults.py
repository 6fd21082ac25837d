"""Issue 16, faults from the source (R13, R14): real api-to-table runs through the fault proxy.

The demo HR source serves 150 employees in three pages of 50; a `FaultProxy` sits between it and runyard (an
in-process worker on a real runs store: SQLite, and PostgreSQL where the test takes the `database_url` fixture) and
breaks the answers the plan names. What runyard promises:

- a transient fault (5xx, 429, a connection reset, a body cut short in transit) is retried, and the run completes
  with exactly the source's rows and no key twice (I1-I7, `check_invariants`); a 429's Retry-After is waited for;
- a fault that does not go away (or a body that arrives whole but is not JSON) fails the run with a message naming
  the endpoint, the page and the cause, and nothing reaches the warehouse;
- a page that never comes (silence) or comes a byte at a time ends at the page deadline and is asked for again
  (test_hung_source.py covers the deadline, a cancel and the maximum run time in depth; here, only the proxy route);
- a next link or cursor that leads back to a page already read stops the walk at once, naming that page with the
  API key masked.

No test sleeps for a condition: each waits for the run to end (bounded), then reads what happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import run_tasks
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView, TaskView
from runyard.settings import Settings
from runyard.store.database import Store
from tests.reliability.fault_proxy import Fault, FaultProxy, Reset, SelfNext, Silence, Status, Trickle, Truncate
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import wait_until

EMPLOYEES = 150
LIMIT = 50
PAGES = 3
PATH = "/employees"
PROCESS = "Process [employees]"
RUN_TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
KEY_ENV = "SOURCE_FAULTS_API_KEY"
SECRET = "fault-proxy-secret-9f3"
MAX_FIRST_BACKOFF = 0.5 * 1.25  # SourceClient's first backoff: 0.5 s plus at most a quarter of jitter

PAGINATION = {
    "cursor": (
        "data",
        "{style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, limit: 50}",
    ),
    "next_url": ("results", "{style: next_url, next_url_path: next, limit_param: limit, limit: 50}"),
    "link_header": (None, "{style: link_header, limit_param: limit, limit: 50}"),
}
STYLE_PARAM = {"cursor": None, "next_url": "next_url", "link_header": "link"}  # the demo's ?style= for each


def operation_yaml(base_url: str, *, style: str = "cursor", max_retries: int = 2, deadline: float = 30.0) -> str:
    """The employees endpoint through `base_url`, its API key in the query (the demo repeats it in next links)."""
    records, pagination = PAGINATION[style]
    lines = [
        "configuration_type: api-to-table",
        "configuration_id: source-faults",
        f'base_url: "{base_url}"',
        f"max_retries: {max_retries}",
        f"request_deadline_seconds: {deadline}",
        "timeout_seconds: 600  # per read: only the page deadline may end a slow page",
        f"auth: {{type: api_key, name: api_key, in: query, value_env: {KEY_ENV}}}",
    ]
    lines += ["endpoints:", "  - name: employees", f"    path: {PATH}", "    primary_key: id"]
    lines.append(f"    pagination: {pagination}")
    if records:
        lines.append(f"    records: {records}")
    if STYLE_PARAM[style]:
        lines.append(f"    params: {{style: {STYLE_PARAM[style]}}}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# runyard in this process: one worker and a scheduler on a real store


@dataclass
class Yard:
    runtime: Runtime
    home: Path

    def run(self, text: str) -> RunView:
        """Deploy the operation, launch it and wait until its run is final."""
        (deployed,) = deploy(self.runtime.store, load_text(text), self.runtime.registry)
        run = self.runtime.runs.launch(LaunchRequest(operation_id=deployed.operation_id, run_type=RunType.DESTRUCTIVE))

        def final() -> RunView | None:
            view = self.runtime.runs.get_run(run.id)
            return view if view.status.is_final else None

        return wait_until(final, timeout=RUN_TIMEOUT, what=f"run {run.id} to end")

    def process(self, run_id: int) -> TaskView:
        with self.runtime.store.read() as conn:
            tasks = {task.name: task for task in run_tasks(conn, run_id)}
        return tasks[PROCESS]

    def texts(self, run_id: int, level: str) -> list[str]:
        with self.runtime.store.read() as conn:
            return [m.text for task in run_tasks(conn, run_id) for m in task.messages if m.level == level]

    def describe(self, run_id: int) -> str:
        with self.runtime.store.read() as conn:
            return "\n".join(
                f"  {task.name:28} {task.status.label:12} " + " | ".join(m.text for m in task.messages)
                for task in run_tasks(conn, run_id)
            )


@contextmanager
def runyard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        database_url=database_url,
        lease_seconds=3,
        heartbeat_seconds=0.3,
        poll_seconds=0.1,
        sweep_seconds=0.3,
    )
    store = open_store(settings)
    bootstrap_admin(store, "source-faults-password")
    resources = engine_resources(settings, extra_hosts=("127.0.0.1",))
    resources.environ = {**resources.environ, KEY_ENV: SECRET}
    runtime = Runtime(settings, store, resources=resources)
    worker = runtime.worker("source-faults")
    scheduler = runtime.scheduler()
    worker.start()
    scheduler.start()
    try:
        yield Yard(runtime, home)
    finally:
        worker.stop(10)
        scheduler.stop()
        runtime.close()  # lets the DuckDB file go: the invariants open it read-only


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For the tests where the store plays no part (the source's faults end inside one task): SQLite only."""
    return f"sqlite:///{tmp_path / 'runyard.db'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """The store at `sqlite_url`, for the invariants (`runyard` migrates it)."""
    store = Store(sqlite_url)
    yield store
    store.dispose()


@pytest.fixture
def source() -> Iterator[DemoSourceServer]:
    with DemoSourceServer(DemoSourceConfig(employees=EMPLOYEES, api_key=SECRET)) as server:
        yield server


def employees_in_warehouse(home: Path) -> int | None:
    """Rows of the employees table, None when there is no such table (read once the worker let the file go)."""
    path = home / "warehouse" / "default.duckdb"
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'employees'").fetchone()
        if found == (0,):
            return None
        (rows,) = con.execute("SELECT count(*) FROM main.employees").fetchone() or (0,)
        return int(rows)


def assert_completed_with_every_row_once(yard: Yard, store: Store, run: RunView) -> None:
    assert run.status is RunStatus.COMPLETED, yard.describe(run.id)
    check_invariants(
        store, yard.home / "warehouse", source_counts={"employees": EMPLOYEES}, staging_root=yard.home / "staging"
    )


def failed_process_error(yard: Yard, run: RunView) -> str:
    """The run Failed at its Process task: that task's one error message."""
    assert run.status is RunStatus.FAILED, yard.describe(run.id)
    process = yard.process(run.id)
    assert process.status is TaskStatus.FAILED, yard.describe(run.id)
    errors = [m.text for m in process.messages if m.level == "error"]
    assert len(errors) == 1, yard.describe(run.id)
    return errors[0]


def assert_nothing_loaded(yard: Yard, store: Store) -> None:
    assert employees_in_warehouse(yard.home) is None  # no table, so no partial rows
    check_invariants(store, yard.home / "warehouse", staging_root=yard.home / "staging")  # I4: no load record


# --------------------------------------------------------------------------------------------------
# Transient faults: retried, and the run loads exactly the source


TRANSIENT: dict[str, tuple[Fault, str]] = {
    "503": (Status(503), "answered 503"),
    "connection reset after 200 bytes": (Reset(after_bytes=200), "failed to connect or read"),
    "body cut short in transit": (Truncate(keep=0.5), "failed to connect or read (peer closed connection"),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_a_transient_fault_is_retried_and_the_run_loads_exactly_the_source(
    fault: str, tmp_path: Path, database_url: str, store: Store, source: DemoSourceServer
) -> None:
    injected, cause = TRANSIENT[fault]
    with FaultProxy(source.base_url) as proxy, runyard(tmp_path, database_url) as yard:
        proxy.plan(PATH, injected, after=1, times=1)  # page 2, once
        run = yard.run(operation_yaml(proxy.base_url))
        warnings = yard.texts(run.id, "warning")
        seen = proxy.requests(PATH)

    assert_completed_with_every_row_once(yard, store, run)
    assert [s.fault for s in seen] == [None, injected, None, None]  # page 2 was asked for again, once
    assert seen[1].params == seen[2].params  # the same page
    assert len(warnings) == 1, warnings
    assert cause in warnings[0], warnings
    assert "retry 1 of 2" in warnings[0], warnings
    assert SECRET not in " ".join(warnings)


def test_a_429_is_retried_no_sooner_than_its_retry_after(
    tmp_path: Path, sqlite_url: str, sqlite_store: Store, source: DemoSourceServer
) -> None:
    throttled = Status(429, retry_after="1")
    with FaultProxy(source.base_url) as proxy, runyard(tmp_path, sqlite_url) as yard:
        proxy.plan(PATH, throttled, after=1, times=1)  # page 2, once
        run = yard.run(operation_yaml(proxy.base_url))
        warnings = yard.texts(run.id, "warning")
        seen = proxy.requests(PATH)

    assert_completed_with_every_row_once(yard, sqlite_store, run)
    assert [s.fault for s in seen] == [None, throttled, None, None]
    assert seen[1].params == seen[2].params
    assert seen[1].answered is not None
    waited = seen[2].received - seen[1].answered
    # Retry-After asked for 1 s, longer than the backoff runyard would have chosen on its own: the header was obeyed.
    assert waited >= 1.0 > MAX_FIRST_BACKOFF, waited
    assert len(warnings) == 1, warnings
    assert "answered 429; retry 1 of 2 in 1.0 s" in warnings[0], warnings


# --------------------------------------------------------------------------------------------------
# Persistent faults: the run fails naming the cause, and loads nothing


PERSISTENT: dict[str, tuple[Fault, int, str]] = {  # the fault, the requests runyard makes for page 2, the cause
    "503 for ever": (Status(503), 2, "answered 503; gave up after 2 attempt(s) (max_retries 1)"),
    "429 for ever": (Status(429, retry_after="0"), 2, "answered 429; gave up after 2 attempt(s) (max_retries 1)"),
    "reset for ever": (Reset(after_bytes=0), 2, "failed to connect or read"),
    "a whole answer of malformed JSON": (
        Truncate(keep=0.5, honest_length=True),
        1,
        "the source answered malformed JSON",
    ),
}


@pytest.mark.parametrize("fault", list(PERSISTENT))
def test_a_persistent_fault_fails_the_run_naming_the_cause_and_loads_nothing(
    fault: str, tmp_path: Path, sqlite_url: str, sqlite_store: Store, source: DemoSourceServer
) -> None:
    injected, requests, cause = PERSISTENT[fault]
    with FaultProxy(source.base_url) as proxy, runyard(tmp_path, sqlite_url) as yard:
        proxy.plan(PATH, injected, after=1, times=None)  # page 2 and every later request
        run = yard.run(operation_yaml(proxy.base_url, max_retries=1))
        error = failed_process_error(yard, run)
        seen = proxy.requests(PATH)

    assert error.startswith("employees, page 2: "), error
    assert cause in error, error
    assert f"{proxy.base_url}{PATH}?" in error, error  # which URL it was
    assert SECRET not in error, error
    assert len(seen) == 1 + requests, seen  # retried as often as max_retries allows (a malformed page: never)
    assert_nothing_loaded(yard, sqlite_store)


# --------------------------------------------------------------------------------------------------
# Silence and trickle: the page deadline ends the wait (see test_hung_source.py for the rest)


SLOW: dict[str, tuple[Fault, str]] = {
    "silence": (Silence(), "was too slow: the source did not answer within the 1.5 s deadline for one page"),
    "trickle": (Trickle(interval=0.2), "was too slow: the source sent "),
}


@pytest.mark.parametrize("fault", list(SLOW))
def test_a_silent_or_trickling_page_ends_at_its_deadline_and_is_asked_for_again(
    fault: str, tmp_path: Path, sqlite_url: str, sqlite_store: Store, source: DemoSourceServer
) -> None:
    injected, cause = SLOW[fault]
    with FaultProxy(source.base_url) as proxy, runyard(tmp_path, sqlite_url) as yard:
        proxy.plan(PATH, injected, after=1, times=1)
        run = yard.run(operation_yaml(proxy.base_url, deadline=1.5))
        warnings = yard.texts(run.id, "warning")
        seen = proxy.requests(PATH)

    assert_completed_with_every_row_once(yard, sqlite_store, run)
    assert [s.fault for s in seen] == [None, injected, None, None]
    assert not seen[1].complete  # the slow answer never finished: the deadline cut it
    assert seen[1].params == seen[2].params
    assert len(warnings) == 1, warnings
    assert cause in warnings[0], warnings


# --------------------------------------------------------------------------------------------------
# A next link pointing back to its own page


@pytest.mark.parametrize("style", list(PAGINATION))
def test_a_next_link_pointing_at_its_own_page_fails_the_run_naming_the_page_without_the_key(
    style: str, tmp_path: Path, sqlite_url: str, sqlite_store: Store, source: DemoSourceServer
) -> None:
    with FaultProxy(source.base_url) as proxy, runyard(tmp_path, sqlite_url) as yard:
        proxy.plan(PATH, SelfNext(), after=1, times=None)  # page 2 points at itself
        run = yard.run(operation_yaml(proxy.base_url, style=style))
        error = failed_process_error(yard, run)
        texts = " ".join(yard.texts(run.id, "error") + yard.texts(run.id, "warning") + yard.texts(run.id, "info"))
        seen = proxy.requests(PATH)

    assert len(seen) == 2, seen  # the loop is caught before page 2 is asked for again
    link = "next cursor" if style == "cursor" else "next link"
    found = re.fullmatch(
        rf"employees, page 2: the source's {link} points back to a page already read: (\S+); "
        "stopped instead of reading the same pages for ever",
        error,
    )
    assert found, error
    shown = urlsplit(found.group(1))
    assert f"{shown.scheme}://{shown.netloc}{shown.path}" == f"{proxy.base_url}{PATH}"
    page_two = {name: [value] for name, value in seen[1].params.items()}
    assert parse_qs(shown.query) == {**page_two, "api_key": ["***"]}  # page 2, its key masked
    assert SECRET not in texts
    assert_nothing_loaded(yard, sqlite_store)
