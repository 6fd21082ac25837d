"""RELIABILITY R10: a cancel that races the load's commit gives one final answer that matches the warehouse.

A real `runyard worker` is held (RUNYARD_PAUSE_AT) at `load.before_commit` (inside the warehouse transaction,
past the last checkpoint) or at `load.after_commit_before_meta` (the warehouse committed, the runs database not
told). The test cancels the run there, waits until the worker's heartbeats have twice reported the cancel to it,
then lets it go on. Whatever runyard decides, the answer must be one of the consistent ones: Completed with the
source's rows loaded once and one load record (the cancel came too late), or Canceled with no row and no load
record. I1-I7 are checked after each scenario.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus
from runyard.operations.loader import load_text
from runyard.services.operations import deploy
from runyard.services.runs import RunService
from runyard.store.database import Store
from runyard.store.tables import runs, tasks
from tests.factories import make_account
from tests.reliability.db import launch, run_state, run_status
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import HEARTBEAT_SECONDS, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
EMPLOYEES = 120
LOAD_TASK = "Data Load"


def _load_heartbeat_after_cancel(store: Store, run_id: int) -> timedelta | None:
    """How long after the cancel the load task's latest heartbeat was written (the database's clock)."""
    with store.read() as conn:
        row = conn.execute(
            sa.select(tasks.c.heartbeat_at, runs.c.cancel_requested_at)
            .join(runs, runs.c.id == tasks.c.run_id)
            .where(tasks.c.run_id == run_id, tasks.c.name.startswith(LOAD_TASK))
        ).one()
    if row.heartbeat_at is None or row.cancel_requested_at is None:
        return None
    return row.heartbeat_at - row.cancel_requested_at


def _loaded_rows(warehouse: Path) -> int:
    path = warehouse / "default.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'employees'"
        ).fetchone()
        if not found or not found[0]:
            return 0
        (count,) = con.execute("SELECT count(*) FROM main.employees").fetchone() or (0,)
    return int(count)


@pytest.mark.parametrize("point", ["load.before_commit", "load.after_commit_before_meta"])
def test_a_cancel_during_the_commit_ends_in_one_answer_the_warehouse_agrees_with(
    store: Store, tmp_path: Path, point: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    gate = tmp_path / "gate"
    pool = Workers(store.url.render_as_string(hide_password=False), home)
    config = DemoSourceConfig(employees=EMPLOYEES)
    try:
        with DemoSourceServer(config) as source:
            make_account(store)
            (deployed,) = deploy(
                store,
                load_text(
                    "configuration_type: api-to-table\nconfiguration_id: cancel-at-commit\n"
                    f'base_url: "{source.base_url}"\n'
                    "endpoints:\n  - name: employees\n    path: /employees\n    records: data\n"
                    "    primary_key: id\n    pagination: {style: cursor, cursor_param: cursor, "
                    "cursor_path: next_cursor, limit_param: limit, limit: 50}\n"
                ),
            )
            run_id = launch(store, deployed.operation_id)
            worker = pool.start(
                allowed_hosts="127.0.0.1",
                extra_env={"RUNYARD_PAUSE_AT": point, "RUNYARD_PAUSE_FILE": str(gate)},
            )
            reached = gate.with_name("gate.reached")
            wait_until(reached.exists, timeout=TIMEOUT, what=f"the worker to reach {point}", alive=[worker])

            assert RunService(store).cancel(run_id).status is RunStatus.CANCELING
            told_twice = timedelta(seconds=2 * HEARTBEAT_SECONDS + 0.1)
            wait_until(
                lambda: (gap := _load_heartbeat_after_cancel(store, run_id)) is not None and gap >= told_twice,
                timeout=TIMEOUT,
                what="two heartbeats of the load task after the cancel",
                alive=[worker],
            )
            gate.touch()
            final = wait_until(
                lambda: (status := run_status(store, run_id)).is_final and status,
                timeout=TIMEOUT,
                what=f"run {run_id} to end",
                alive=[worker],
            )
        assert worker.terminate() == 0, worker.log()
    finally:
        pool.close()

    state = run_state(store, run_id)
    loaded = _loaded_rows(home / "warehouse")
    if final is RunStatus.COMPLETED:  # the cancel came too late: the rows are in, once
        assert loaded == expected_counts(config)["employees"], state
        source_counts: dict[str, int] | None = {"employees": loaded}
    else:
        assert final is RunStatus.CANCELED, state
        assert loaded == 0, state
        source_counts = None
    if point == "load.after_commit_before_meta":  # committed before the cancel could matter
        assert final is RunStatus.COMPLETED, state
    check_invariants(store, home / "warehouse", source_counts=source_counts, staging_root=home / "staging")
