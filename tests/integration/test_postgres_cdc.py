"""postgres-cdc end to end on the embedded default (SQLite store, DuckDB warehouse, an in-process worker) against a
real PostgreSQL source database (wal_level=logical, wal2json) of its own."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView
from tests.integration.api_harness import ApiHarness, api_harness, wait_for
from tests.integration.cdc_source import SourceDb, cdc_source, warehouse_rows

URL_ENV = "CDC_TEST_SOURCE_URL"
SLOT = "runyard_test_cdc"
STREAM = f"Stream Changes [{SLOT}]"
CATCH_UP = 30.0

ORDERS = """
CREATE TABLE public.orders (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12, 2),
    price numeric,
    qty integer,
    rush boolean,
    ratio double precision,
    due date,
    placed timestamp,
    placed_tz timestamptz,
    doc jsonb,
    tags text[]
)
"""


def insert_orders(first: int, count: int) -> str:
    return (
        "INSERT INTO public.orders SELECT i, 'customer ' || i, i * 1.25, i / 3.0, i % 7, i % 2 = 0, i / 8.0, "
        "DATE '2024-01-01' + i, TIMESTAMP '2024-01-01 10:00:00.123456' + i * INTERVAL '1 hour', "
        "TIMESTAMPTZ '2024-01-01 10:00:00+02' + i * INTERVAL '1 minute', "
        f"jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)), ARRAY['x', i::text] "
        f"FROM generate_series({first}, {first + count - 1}) AS i"
    )


@pytest.fixture
def source() -> Iterator[SourceDb]:
    with cdc_source() as db:
        yield db


@pytest.fixture
def harness(tmp_path: Path, source: SourceDb, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    monkeypatch.setenv(URL_ENV, source.url)  # read when the harness builds its engine resources
    with api_harness(tmp_path) as running:
        yield running


def operation(tables: str = "[public.orders]", url_env: str = URL_ENV, **extra: Any) -> str:
    lines = "".join(f"{key}: {value}\n" for key, value in extra.items())
    return (
        textwrap.dedent(f"""\
        configuration_type: postgres-cdc
        configuration_id: orders_cdc
        source:
          url_env: {url_env}
        tables: {tables}
        slot: {SLOT}
        poll_seconds: 0.1
        """)
        + lines
    )


def launch(harness: ApiHarness, operation_id: int, run_type: RunType = RunType.INCREMENTAL) -> RunView:
    return harness.runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=run_type))


def wait_in_step(harness: ApiHarness, source: SourceDb, table: str = "orders") -> None:
    """Until the warehouse table equals the source table, row by row, every column but the load time."""

    def equal() -> bool:
        names = [name for name, _, _ in source.columns(table)]
        return source.rows(table) == warehouse_rows(harness.warehouse, table, names)

    wait_for(equal, timeout=CATCH_UP, what=f"the warehouse table {table} to equal the source's", poll=0.1)


def messages(harness: ApiHarness, run_id: int, task: str) -> list[str]:
    return [message.text for message in harness.task(run_id, task).messages]


def cancel(harness: ApiHarness, run_id: int) -> RunView:
    harness.runtime.runs.cancel(run_id)
    return harness.wait(run_id)


def test_snapshot_then_changes_stream_in_until_cancel_and_a_second_launch_resumes(
    harness: ApiHarness, source: SourceDb
) -> None:
    source.execute(ORDERS, insert_orders(1, 500), "CREATE TABLE public.ignored (id int PRIMARY KEY, v text)")
    operation_id = harness.deploy_text(operation())

    run = launch(harness, operation_id)
    harness.wait_task(run.id, STREAM, TaskStatus.RUNNING)

    snapshot = harness.task(run.id, "Initial Snapshot")
    assert snapshot.status is TaskStatus.COMPLETED, harness.describe(run.id)
    assert snapshot.tables == (("orders", 500),)
    assert any("Snapshot of public.orders: 500 rows" in text for text in messages(harness, run.id, "Initial Snapshot"))
    wait_in_step(harness, source)
    assert harness.column_types("orders") == {
        "id": "BIGINT",
        "customer": "VARCHAR",
        "amount": "DECIMAL(12,2)",
        "price": "VARCHAR",
        "qty": "INTEGER",
        "rush": "BOOLEAN",
        "ratio": "DOUBLE",
        "due": "DATE",
        "placed": "TIMESTAMP",
        "placed_tz": "TIMESTAMP WITH TIME ZONE",
        "doc": "VARCHAR",
        "tags": "VARCHAR",
        "_runyard_loaded_at": "TIMESTAMP",
    }

    rounds = [
        (insert_orders(501, 200), "UPDATE public.orders SET customer = customer || ' (moved)' WHERE id % 10 = 0"),
        ("DELETE FROM public.orders WHERE id % 7 = 3", "UPDATE public.orders SET amount = NULL WHERE id < 50"),
        # One transaction updating a row twice, deleting one and re-inserting it, moving a key.
        (
            "BEGIN; UPDATE public.orders SET qty = 100 WHERE id = 1; UPDATE public.orders SET qty = 101 WHERE id = 1;"
            " DELETE FROM public.orders WHERE id = 2; INSERT INTO public.orders (id, customer) VALUES (2, 'back');"
            " UPDATE public.orders SET id = 100000 WHERE id = 4; COMMIT",
            "INSERT INTO public.ignored VALUES (1, 'not replicated')",
        ),
    ]
    for statements in rounds:
        source.execute(*statements)
        wait_in_step(harness, source)

    source.execute("ALTER TABLE public.orders ADD COLUMN note varchar(20)")
    source.execute("UPDATE public.orders SET note = 'n' || id WHERE id % 5 = 0", insert_orders(2000, 10))
    wait_in_step(harness, source)
    assert "note" in (harness.warehouse.columns("orders") or {})
    assert "ignored" not in harness.table_names()

    ended = cancel(harness, run.id)
    assert ended.status is RunStatus.CANCELED, harness.describe(run.id)
    stream = harness.task(run.id, STREAM)
    assert stream.status is TaskStatus.CANCELED
    assert stream.records_processed > 0
    assert any("resumed from LSN" in text for text in messages(harness, run.id, STREAM))
    wait_in_step(harness, source)  # every batch it received was loaded

    # Changes while no run streams are kept by the slot, and the next launch applies them without a snapshot.
    source.execute(insert_orders(3000, 5), "DELETE FROM public.orders WHERE id BETWEEN 100 AND 120")
    again = launch(harness, operation_id)
    harness.wait_task(again.id, STREAM, TaskStatus.RUNNING)
    skipped = messages(harness, again.id, "Initial Snapshot")
    assert any("Snapshot skipped" in text for text in skipped), skipped
    wait_in_step(harness, source)
    assert cancel(harness, again.id).status is RunStatus.CANCELED
    assert int(harness.scalar("SELECT count(*) - count(DISTINCT id) FROM orders")) == 0


def test_a_destructive_run_drops_the_slot_and_snapshots_again(harness: ApiHarness, source: SourceDb) -> None:
    source.execute(ORDERS, insert_orders(1, 20))
    operation_id = harness.deploy_text(operation())
    first = launch(harness, operation_id)
    harness.wait_task(first.id, STREAM, TaskStatus.RUNNING)
    assert cancel(harness, first.id).status is RunStatus.CANCELED
    harness.query("DELETE FROM orders WHERE id < 10")  # the warehouse drifted (edited by hand)

    second = launch(harness, operation_id, RunType.DESTRUCTIVE)
    harness.wait_task(second.id, STREAM, TaskStatus.RUNNING)

    snapshot = messages(harness, second.id, "Initial Snapshot")
    assert any(f"Dropped the replication slot {SLOT}" in text for text in snapshot), snapshot
    wait_in_step(harness, source)
    assert cancel(harness, second.id).status is RunStatus.CANCELED


def test_a_table_without_a_primary_key_fails_the_snapshot_with_what_to_do(
    harness: ApiHarness, source: SourceDb
) -> None:
    source.execute("CREATE TABLE public.events (id int, v text)")
    run = harness.wait(launch(harness, harness.deploy_text(operation("[public.events]"))).id)

    assert run.status is RunStatus.FAILED
    (error,) = [m.text for m in harness.task(run.id, "Initial Snapshot").messages if m.level == "error"]
    assert "the table public.events has no primary key" in error
    assert "ADD PRIMARY KEY" in error
    assert source.slot_confirmed(SLOT) is None  # no slot left behind


def test_a_missing_table_is_named(harness: ApiHarness, source: SourceDb) -> None:
    run = harness.wait(launch(harness, harness.deploy_text(operation("[public.nowhere]"))).id)

    assert run.status is RunStatus.FAILED
    errors = [m.text for m in harness.task(run.id, "Initial Snapshot").messages if m.level == "error"]
    assert any("the table public.nowhere does not exist on the CDC source" in text for text in errors), errors


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "the environment variable CDC_BAD_URL (source.url_env) is not set"),
        ("mysql://root:s3cret-pw@db/shop", "holds a mysql:// URL: it must hold a postgresql:// URL"),
        (
            "postgresql://cdc:s3cret-pw@127.0.0.1:1/shop",
            "cannot connect to the CDC source (CDC_BAD_URL): connection failed",
        ),
    ],
    ids=["unset", "not-postgresql", "refused"],
)
def test_a_bad_url_env_fails_with_a_clear_message_and_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    if value is None:
        monkeypatch.delenv("CDC_BAD_URL", raising=False)
    else:
        monkeypatch.setenv("CDC_BAD_URL", value)
    with api_harness(tmp_path) as harness:
        run = harness.wait(launch(harness, harness.deploy_text(operation(url_env="CDC_BAD_URL"))).id)

        assert run.status is RunStatus.FAILED
        (error,) = [m.text for m in harness.task(run.id, "Initial Snapshot").messages if m.level == "error"]
        assert expected in error
        assert "s3cret-pw" not in error
        assert "s3cret-pw" not in harness.describe(run.id)
