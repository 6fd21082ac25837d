"""R2 on the PostgreSQL warehouse: a worker SIGKILLed inside the Data Load leaves all of it or nothing, and the run
then loads every row exactly once.

Real `runyard worker` processes on a PostgreSQL store and a PostgreSQL warehouse (two databases of the test server):
the first runs with RUNYARD_CRASH_AT at the point and dies there; the warehouse is read while nothing runs; a second
worker completes the run. Before the commit nothing of the run is visible, not even its load record; after it the
whole load is, and the retried Data Load loads nothing twice.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus
from runyard.operations.loader import load_text
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.store.database import Store
from runyard.store.tables import runs
from runyard.warehouse.provider import open_warehouses
from tests.reliability.db import launch, run_status
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a worker's start on a busy machine, a lease to lapse, the run's own time: a bound, not a speed
EMPLOYEES = 230  # five pages of 50


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    bootstrap_admin(store, "warehouse-crash-password")
    yield store
    store.dispose()


def run_key(store: Store, run_id: int) -> str:
    with store.read() as conn:
        return str(conn.execute(sa.select(runs.c.run_key).where(runs.c.id == run_id)).scalar_one())


@pytest.mark.parametrize(
    ("point", "committed"), [("load.before_commit", False), ("load.after_commit_before_meta", True)]
)
def test_a_worker_killed_in_the_postgres_load_leaves_all_or_nothing_and_the_run_loads_once(
    store: Store, pg_warehouse_url: str, tmp_path: Path, point: str, committed: bool
) -> None:
    config = DemoSourceConfig(employees=EMPLOYEES)
    pool = Workers(store.url.render_as_string(hide_password=False), tmp_path)
    env = {"RUNYARD_WAREHOUSE_URL": pg_warehouse_url}
    warehouses = open_warehouses(pg_warehouse_url)
    try:
        with DemoSourceServer(config) as source:
            (deployed,) = deploy(
                store,
                load_text(
                    "configuration_type: api-to-table\nconfiguration_id: pg-crash\n"
                    f'base_url: "{source.base_url}"\n'
                    "endpoints:\n  - name: employees\n    path: /employees\n    records: data\n    primary_key: id\n"
                    "    pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, "
                    "limit_param: limit, limit: 50}\n"
                ),
            )
            run_id = launch(store, deployed.operation_id)
            doomed = pool.start(crash_at=point, allowed_hosts="127.0.0.1", extra_env=env)
            code = wait_until(lambda: doomed.returncode, timeout=TIMEOUT, what=f"the worker to die at {point}")
            assert code == -signal.SIGKILL, doomed.log()

            warehouse = warehouses.for_account("default")
            key = run_key(store, run_id)
            assert warehouse.has_load(key) is committed
            loaded = warehouse.count("employees") if warehouse.columns("employees") is not None else 0
            assert loaded == (expected_counts(config)["employees"] if committed else 0), f"at {point}: {loaded} rows"

            survivor = pool.start(allowed_hosts="127.0.0.1", extra_env=env)
            status = wait_until(
                lambda: (found := run_status(store, run_id)).is_final and found,
                timeout=TIMEOUT,
                what="the run to end",
                alive=[survivor],
            )
            assert status is RunStatus.COMPLETED, survivor.log()
            assert survivor.terminate() == 0, survivor.log()
    finally:
        pool.close()

    try:
        warehouse = warehouses.for_account("default")
        ((rows, distinct),) = warehouse.query("SELECT count(*), count(DISTINCT id) FROM employees")
        assert rows == distinct == expected_counts(config)["employees"]
        assert warehouse.has_load(key)
    finally:
        warehouses.close_all()
    check_invariants(store)
