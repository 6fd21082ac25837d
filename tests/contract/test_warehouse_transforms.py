"""The warehouse contract, transforms: a table-to-table run's steps build tables in a session where the tables this
run already built hide the published ones, and nothing is published before the run's load."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, QueryFailed, TableLoad, Warehouse, WarehouseError
from tests.contract.conftest import replace, stage_load, utc, utc_now

SLOW = (
    "SELECT count(*) AS n FROM generate_series(1, 1000000) AS a(x), generate_series(1, 1000000) AS b(y) "
    "WHERE a.x + b.y < 0"
)
STOPPED_WITHIN = 10.0


@pytest.fixture
def orders(warehouse: Warehouse) -> Warehouse:
    """The warehouse with a published table `orders`: ids 1, 2, 3."""
    stage_load(warehouse, "r0", (replace("orders"), {"id": [1, 2, 3], "amount": [10, 20, 30]}))
    warehouse.drop_staging("r0")
    return warehouse


def publish(wh: Warehouse, run_key: str, *tables: str) -> None:
    stamped = tuple(TableLoad(name=t, mode="replace", loaded_at_column=LOADED_AT_COLUMN) for t in tables)
    assert wh.load(LoadRequest(run_key, 1, stamped)).already_loaded is False


def test_inputs_read_the_tables_the_run_built_not_the_published_ones(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        assert session.build("orders", "SELECT id, amount FROM orders WHERE id > ?", [1]) == 2  # the published one
    with orders.transform("r1", ["orders"]) as session:
        assert session.build("totals", "SELECT count(*) AS n, sum(amount) AS total FROM orders", []) == 1

    assert orders.query("SELECT id FROM orders ORDER BY id") == [(1,), (2,), (3,)]  # nothing published yet
    assert orders.columns("totals") is None
    assert [table.name for table in orders.tables()] == ["orders"]
    assert orders.staged_runs() == {"r1"}

    publish(orders, "r1", "orders", "totals")

    assert orders.query("SELECT id FROM orders ORDER BY id") == [(2,), (3,)]
    assert orders.query("SELECT n, total FROM totals") == [(2, 50)]
    assert [table.name for table in orders.tables()] == ["orders", "totals"]


def test_another_runs_built_tables_are_not_inputs(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        session.build("mine", "SELECT id FROM orders", [])

    with pytest.raises(WarehouseError, match="mine"), orders.transform("r2", ["mine"]):
        pass
    with pytest.raises(WarehouseError, match="orders"), orders.transform("r1", ["orders"]):
        pass  # published, but not built by this run


def test_a_rebuilt_table_replaces_the_runs_earlier_build(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        assert session.build("big", "SELECT id FROM orders", []) == 3
        assert session.build("big", "SELECT id, amount FROM orders WHERE amount > ?", [15]) == 2

    publish(orders, "r1", "big")

    assert orders.query("SELECT id, amount FROM big ORDER BY id") == [(2, 20), (3, 30)]


def test_parameters_are_values(orders: Warehouse) -> None:
    evil = "x' OR '1' = '1"
    with orders.transform("r1", []) as session:
        assert session.build("picked", "SELECT id, ? AS label FROM orders WHERE id = ?", [evil, 2]) == 1

    publish(orders, "r1", "picked")

    assert orders.query("SELECT id, label FROM picked") == [(2, evil)]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders",
        "DROP TABLE orders",
        "CREATE TABLE z AS SELECT 1 AS one",
        "SELECT 1 AS one; DROP TABLE orders",
        "UPDATE orders SET amount = 0",
    ],
)
def test_a_step_is_one_select(orders: Warehouse, sql: str) -> None:
    with pytest.raises(QueryFailed), orders.transform("r1", []) as session:
        session.build("x", sql, [])

    assert orders.query("SELECT id, amount FROM orders ORDER BY id") == [(1, 10), (2, 20), (3, 30)]
    assert orders.columns("z") is None


def test_a_failing_select_names_the_reason_and_its_line(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        with pytest.raises(QueryFailed, match=r"(?i)syntax error") as syntax:
            session.build("x", "SELECT id\nFROM orders\nWHER id > 1", [])
        with pytest.raises(QueryFailed, match="nowhere") as unknown:
            session.build("x", "SELECT id\nFROM nowhere", [])

    assert syntax.value.line == 3
    assert syntax.value.interrupted is False
    assert unknown.value.interrupted is False


def test_interrupt_stops_a_build_from_another_thread(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        done = threading.Event()

        def stop_until_done() -> None:
            time.sleep(0.2)
            while not done.is_set():  # an interrupt that comes before the statement runs may be forgotten
                session.interrupt()
                done.wait(0.05)

        stopper = threading.Thread(target=stop_until_done)
        stopper.start()
        started = time.monotonic()
        try:
            with pytest.raises(QueryFailed) as failed:
                session.build("slow", SLOW, [])
        finally:
            done.set()
            stopper.join(STOPPED_WITHIN)

    assert failed.value.interrupted is True
    assert time.monotonic() - started < STOPPED_WITHIN
    assert orders.count("orders") == 3  # the warehouse answers as before


def test_drop_staging_drops_the_runs_built_tables(orders: Warehouse) -> None:
    with orders.transform("r1", []) as session:
        session.build("a", "SELECT id FROM orders", [])
    with orders.transform("r2", []) as session:
        session.build("a", "SELECT id FROM orders", [])

    orders.drop_staging("r1")

    assert orders.staged_runs() == {"r2"}
    with pytest.raises(WarehouseError), orders.transform("r1", ["a"]):
        pass
    with orders.transform("r2", ["a"]) as session:
        assert session.build("b", "SELECT id FROM a", []) == 3


def test_a_built_table_gets_its_own_load_time(orders: Warehouse) -> None:
    """A table built from a loaded table carries that table's load time column: the new load stamps it anew."""
    with orders.transform("r1", []) as session:
        session.build("stamped", "SELECT id FROM orders", [])
    publish(orders, "r1", "stamped")
    first: set[datetime] = {utc(at) for (at,) in orders.query(f"SELECT {LOADED_AT_COLUMN} FROM stamped")}
    time.sleep(0.05)
    before = utc_now()

    with orders.transform("r2", []) as session:
        session.build("copied", "SELECT * FROM stamped", [])
    publish(orders, "r2", "copied")

    assert list(orders.columns("copied") or {}) == ["id", LOADED_AT_COLUMN]
    (copied,) = {utc(at) for (at,) in orders.query(f"SELECT {LOADED_AT_COLUMN} FROM copied")}
    assert len(first) == 1
    assert copied > max(first)
    assert (copied - before).total_seconds() > -2.0
