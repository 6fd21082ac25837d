"""A postgres-cdc stream whose worker is SIGKILLed mid-batch, again and again, while changes keep arriving.

Real `runyard worker` processes on a SQLite store with a short lease: five in a row run with
RUNYARD_CRASH_AT=cdc.mid_batch and die after staging a batch, before its load commits; a sixth, without the
setting, takes the stream over. Once the slot holds no change left, the run is canceled, the worker stopped,
and the DuckDB file read directly: the warehouse table equals the source table row by row, no key twice.

The writer commits a fixed number of transactions while each crashing worker runs, never more: a writer left
running for as long as the crashes take would leave the survivor a backlog that grows with the machine's load.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest

from runyard.domain.statuses import RunStatus
from runyard.operations.loader import load_text
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.services.runs import RunService
from runyard.store import migrate
from runyard.store.database import Store
from tests.integration.cdc_source import SourceDb, cdc_source
from tests.reliability.db import launch, messages, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import Workers, wait_until

pytestmark = pytest.mark.slow

URL_ENV = "CDC_CRASH_SOURCE_URL"
SLOT = "runyard_crash_cdc"
STREAM = f"Stream Changes [{SLOT}]"
CRASHES = 5
TRANSACTIONS_PER_CRASH = 30
TIMEOUT = 20.0
STARTUP_SECONDS = 60.0  # a worker process's start and a dead worker's lease: the machine's load sets them
OPERATION = f"""\
configuration_type: postgres-cdc
configuration_id: crash_cdc
source: {{url_env: {URL_ENV}}}
tables: [public.items]
slot: {SLOT}
batch_max_changes: 40
poll_seconds: 0.05
"""


class Writer(threading.Thread):
    """Inserts, updates and deletes rows of public.items in small transactions, as many as `allow` permits."""

    def __init__(self, url: str, first_id: int) -> None:
        super().__init__(name="cdc-writer", daemon=True)
        self.url = url
        self.ids = set(range(1, first_id))
        self.next_id = first_id
        self.stop = threading.Event()
        self.permits = threading.Semaphore(0)
        self.transactions = 0
        self.error: BaseException | None = None
        self.random = random.Random(7)

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    if not self.permits.acquire(timeout=0.1):
                        continue
                    with conn.transaction():
                        for _ in range(self.random.randint(1, 4)):
                            self._change(conn)
                    self.transactions += 1
                    self.stop.wait(0.01)  # a steady trickle of commits, not a condition
        except BaseException as error:
            self.error = error

    def allow(self, transactions: int) -> None:
        """Let the writer commit `transactions` more transactions (it goes on with them at once)."""
        self.permits.release(transactions)

    def _change(self, conn: psycopg.Connection) -> None:
        roll = self.random.random()
        if roll < 0.5 or not self.ids:
            conn.execute("INSERT INTO public.items VALUES (%s, 0, %s)", (self.next_id, f"item {self.next_id}"))
            self.ids.add(self.next_id)
            self.next_id += 1
        elif roll < 0.85:
            key = self.random.choice(sorted(self.ids))
            conn.execute("UPDATE public.items SET version = version + 1, note = note || '+' WHERE id = %s", (key,))
        else:
            key = self.random.choice(sorted(self.ids))
            conn.execute("DELETE FROM public.items WHERE id = %s", (key,))
            self.ids.discard(key)


@pytest.fixture
def source() -> Iterator[SourceDb]:
    with cdc_source() as db:
        yield db


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    migrate.upgrade(store)
    bootstrap_admin(store, "crash-test-password")
    yield store
    store.dispose()


@pytest.fixture
def workers(store: Store, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(store.url.render_as_string(hide_password=False), tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def test_a_stream_killed_mid_batch_five_times_loses_and_repeats_no_change(
    source: SourceDb, store: Store, workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, source.url)  # the workers inherit every variable but RUNYARD_*
    source.execute(
        "CREATE TABLE public.items (id bigint PRIMARY KEY, version int NOT NULL, note text)",
        "INSERT INTO public.items SELECT i, 0, 'item ' || i FROM generate_series(1, 300) AS i",
    )
    (deployed,) = deploy(store, load_text(OPERATION))
    run_id = launch(store, deployed.operation_id)
    writer = Writer(source.url, first_id=301)
    writer.start()
    try:
        for crash in range(CRASHES):
            worker = workers.start(crash_at="cdc.mid_batch", allowed_hosts="127.0.0.1")
            # The process's start (imports, seconds on a busy machine) and the dead one's lease first, bounded
            # apart: TIMEOUT bounds what the stream does once this worker holds it.
            wait_until(
                lambda attempt=crash + 1: task_row(store, run_id, STREAM)["attempt"] >= attempt,  # type: ignore[misc]
                timeout=STARTUP_SECONDS,
                what=f"worker {crash + 1} to take the stream over",
                alive=[worker],
            )
            # Changes committed before the stream creates its slot are in its snapshot, not in a batch.
            wait_until(lambda: source.slot_confirmed(SLOT), timeout=TIMEOUT, what="the stream's slot")
            writer.allow(TRANSACTIONS_PER_CRASH)
            code = wait_until(
                lambda w=worker: w.returncode,  # type: ignore[misc]
                timeout=TIMEOUT,
                what=f"crash {crash + 1} of {CRASHES} (the worker to die mid-batch)",
            )
            assert code == -signal.SIGKILL, worker.log()
            assert "Traceback" not in worker.log()
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None, writer.error
    assert writer.transactions > 0

    survivor = workers.start(allowed_hosts="127.0.0.1")
    source.flush()
    try:
        wait_until(
            lambda: source.pending_changes(SLOT, ["public.items"]) == 0,
            timeout=TIMEOUT,
            what="the surviving worker to confirm every change",
            alive=[survivor],
        )
    except AssertionError as error:
        pending = source.pending_changes(SLOT, ["public.items"])
        said = messages(store, task_row(store, run_id, STREAM)["id"])
        raise AssertionError(
            f"{error}; {pending} changes pending; the stream said {said}; its log:\n{survivor.log()}"
        ) from None
    stream = task_row(store, run_id, STREAM)
    assert stream["attempt"] == CRASHES + 1
    RunService(store).cancel(run_id)
    wait_until(lambda: run_status(store, run_id).is_final, timeout=TIMEOUT, what="the run to end", alive=[survivor])
    assert run_status(store, run_id) is RunStatus.CANCELED
    assert survivor.terminate() == 0  # it lets the DuckDB file go

    expected = source.query("SELECT id, version, note FROM public.items ORDER BY id")
    with duckdb.connect(str(tmp_path / "warehouse" / "default.duckdb"), read_only=True) as warehouse:
        loaded = warehouse.execute("SELECT id, version, note FROM main.items ORDER BY id").fetchall()
        duplicates = warehouse.execute("SELECT count(*) - count(DISTINCT id) FROM main.items").fetchall()
    assert duplicates == [(0,)]
    assert len(loaded) == len(expected)
    assert loaded == expected
    check_invariants(
        store, tmp_path / "warehouse", source_counts={"items": len(expected)}, staging_root=tmp_path / "staging"
    )
