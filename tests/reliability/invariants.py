"""The invariants I1-I7 of /work/shared/RELIABILITY.md, checked by one function after every crash scenario.

`check_invariants(store, warehouse_dir, source_counts=..., staging_root=...)` reads the runs database (and, when
given, the DuckDB files of `warehouse_dir` and the staging folder) and raises one AssertionError listing every
violation, each naming the run or task at fault:

I1  at most one active run (waiting, running, canceling) per operation;
I2  each table of `source_counts` holds exactly that many rows, and no key twice;
I3  no task Running on an expired lease (nor without one), and no task Running in a run that ended;
I4  every Completed run that loads (it has a `load` task) has exactly one data_loads row and one warehouse load
    record (keyed by its run key); no Failed or Canceled run has either. A run with a stream task is exempt
    from the second half: a stream ends only when canceled, after its loads;
I5  no task past its max_attempts, in its attempt counter or its execution log;
I6  every staged file lies inside its account's root (`<staging_root>/<account>/`), and under an operation and
    run of that account;
I7  the execution log holds each (task, attempt) once, and no attempt started after its run's cancel request.

Call it once every worker has stopped: DuckDB files are opened read-only, which a live worker's lock forbids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import duckdb
import sqlalchemy as sa

from runyard.domain.graph import STREAM_STAGE
from runyard.domain.statuses import RUN_ACTIVE, RunStatus, TaskStatus
from runyard.store.database import Store
from runyard.store.tables import accounts, data_loads, operations, runs, task_attempts, tasks
from tests.reliability.procs import SWEEP_SECONDS

ACTIVE = sorted(status.value for status in RUN_ACTIVE)
UNLOADED = (RunStatus.FAILED.value, RunStatus.CANCELED.value)
LEASE_GRACE = timedelta(seconds=2 * SWEEP_SECONDS)  # the sweep may take this long to notice a lapsed lease


def check_invariants(
    store: Store,
    warehouse_dir: Path | None = None,
    *,
    source_counts: Mapping[str, int] | None = None,
    keys: Mapping[str, str] | None = None,
    account: str = "default",
    staging_root: Path | None = None,
) -> None:
    """Assert I1-I7 (see the module docstring). `source_counts` maps a table of `account`'s warehouse (`name` in
    `main`, or `schema.name`) to the rows the source holds; `keys` a table to its key column (default `id`)."""
    with store.read() as conn:
        rows = _Rows(conn, store)
    problems = [
        *_one_active_run(rows),
        *_no_expired_running(rows),
        *_attempts_within_limit(rows),
        *_no_start_after_cancel(rows),
        *_load_records(rows, warehouse_dir),
    ]
    if source_counts is not None:
        assert warehouse_dir is not None, "source_counts needs the warehouse folder"
        problems += _warehouse_counts(warehouse_dir / f"{account}.duckdb", source_counts, keys or {})
    if staging_root is not None:
        problems += _staged_inside_roots(rows, staging_root)
    assert not problems, "invariants violated:\n" + "\n".join(f"  {problem}" for problem in problems)


class _Rows:
    """One consistent read of every row the invariants look at."""

    def __init__(self, conn: sa.Connection, store: Store) -> None:
        self.now = store.now(conn)
        self.runs = list(conn.execute(sa.select(runs)).mappings())
        self.tasks = list(conn.execute(sa.select(tasks)).mappings())
        self.attempts = list(conn.execute(sa.select(task_attempts)).mappings())
        self.loads = list(conn.execute(sa.select(data_loads.c.run_id)).scalars())
        self.accounts = {row.id: row.name for row in conn.execute(sa.select(accounts.c.id, accounts.c.name))}
        self.operations = {
            row.id: row.account_id for row in conn.execute(sa.select(operations.c.id, operations.c.account_id))
        }
        self.run_by_id = {run["id"]: run for run in self.runs}
        self.task_by_id = {task["id"]: task for task in self.tasks}


def _run(run: sa.RowMapping) -> str:
    return f"run {run['id']} ({run['run_key']}, {run['status']})"


def _task(task: sa.RowMapping) -> str:
    return f"task {task['id']} {task['name']!r} of run {task['run_id']}"


def _one_active_run(rows: _Rows) -> list[str]:
    """I1."""
    active: dict[int, list[int]] = {}
    for run in rows.runs:
        if run["status"] in ACTIVE:
            active.setdefault(run["operation_id"], []).append(run["id"])
    return [f"I1: operation {op} has {len(ids)} active runs: {ids}" for op, ids in active.items() if len(ids) > 1]


def _no_expired_running(rows: _Rows) -> list[str]:
    """I3."""
    problems = []
    for task in rows.tasks:
        if task["status"] != TaskStatus.RUNNING.value:
            continue
        expires = task["lease_expires_at"]
        if expires is None or expires < rows.now - LEASE_GRACE:
            problems.append(f"I3: {_task(task)} is Running on a lease that expired at {expires} (now {rows.now})")
        run = rows.run_by_id[task["run_id"]]
        if run["status"] not in ACTIVE:
            problems.append(f"I3: {_task(task)} is Running in {_run(run)}, which ended")
    return problems


def _attempts_within_limit(rows: _Rows) -> list[str]:
    """I5."""
    logged = Counter(attempt["task_id"] for attempt in rows.attempts)
    problems = []
    for task in rows.tasks:
        limit = task["max_attempts"]
        if task["attempt"] > limit or logged[task["id"]] > limit:
            problems.append(
                f"I5: {_task(task)} is at attempt {task['attempt']} with {logged[task['id']]} logged, "
                f"over its limit of {limit}"
            )
    return problems


def _no_start_after_cancel(rows: _Rows) -> list[str]:
    """I7."""
    problems = [
        f"I7: task {task_id} attempt {attempt} is logged {count} times"
        for (task_id, attempt), count in Counter((a["task_id"], a["attempt"]) for a in rows.attempts).items()
        if count > 1
    ]
    for attempt in rows.attempts:
        task = rows.task_by_id[attempt["task_id"]]
        run = rows.run_by_id[task["run_id"]]
        canceled_at = run["cancel_requested_at"]
        if canceled_at is not None and attempt["started_at"] > canceled_at:
            problems.append(
                f"I7: {_task(task)} attempt {attempt['attempt']} started at {attempt['started_at']}, after "
                f"{_run(run)} was canceled at {canceled_at}"
            )
    return problems


def _load_records(rows: _Rows, warehouse_dir: Path | None) -> list[str]:
    """I4: the store's data_loads rows, and (given the folder) the warehouse's load records."""
    stages: dict[int, set[str]] = {}
    for task in rows.tasks:
        stages.setdefault(task["run_id"], set()).add(task["stage"])
    in_store = Counter(rows.loads)
    in_warehouse = _warehouse_load_keys(warehouse_dir, set(rows.accounts.values())) if warehouse_dir else None
    problems = []
    for run in rows.runs:
        run_stages = stages.get(run["id"], set())
        if STREAM_STAGE in run_stages:
            continue
        found = [f"{in_store[run['id']]} data_loads rows"]
        counts = [in_store[run["id"]]]
        if in_warehouse is not None:
            loaded = in_warehouse[rows.accounts[run["account_id"]]][run["run_key"]]
            found.append(f"{loaded} warehouse load records")
            counts.append(loaded)
        if run["status"] == RunStatus.COMPLETED.value and "load" in run_stages and counts != [1] * len(counts):
            problems.append(f"I4: Completed {_run(run)} has {' and '.join(found)}, not exactly one")
        if run["status"] in UNLOADED and any(counts):
            problems.append(f"I4: {_run(run)} has {' and '.join(found)}")
    return problems


def _warehouse_load_keys(warehouse_dir: Path, account_names: set[str]) -> dict[str, Counter[str]]:
    """Per account, how many `_runyard.loads` records each run key has."""
    keys: dict[str, Counter[str]] = {name: Counter() for name in account_names}
    for name in account_names:
        path = warehouse_dir / f"{name}.duckdb"
        if not path.exists():
            continue
        with duckdb.connect(str(path), read_only=True) as con:
            schemas = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_runyard' AND table_name = 'loads'"
            )
            if schemas.fetchone() != (0,):
                keys[name].update(key for (key,) in con.execute("SELECT run_key FROM _runyard.loads").fetchall())
    return keys


def _warehouse_counts(path: Path, source_counts: Mapping[str, int], keys: Mapping[str, str]) -> list[str]:
    """I2."""
    problems = []
    with duckdb.connect(str(path), read_only=True) as con:
        for table, expected in source_counts.items():
            name = table if "." in table else f"main.{table}"
            key = keys.get(table, "id")
            total, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {name}").fetchone() or (0, 0)
            if total != expected:
                problems.append(f"I2: warehouse table {name} holds {total} rows; the source holds {expected}")
            if total != distinct:
                problems.append(f"I2: warehouse table {name} holds {total - distinct} duplicate {key} values")
    return problems


def _staged_inside_roots(rows: _Rows, staging_root: Path) -> list[str]:
    """I6: `<account>/<operation_id>/<run_key>/...` of that account (or `<account>/.exports/...`), no link out."""
    if not staging_root.exists():
        return []
    root = staging_root.resolve()
    account_ids = {name: account_id for account_id, name in rows.accounts.items()}
    run_keys = {run["run_key"]: run["operation_id"] for run in rows.runs}
    problems = []
    for path in sorted(staging_root.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        parts = path.relative_to(staging_root).parts
        account = parts[0]
        where = f"I6: staged file {'/'.join(parts)}"
        if account not in account_ids or len(parts) < 3:
            problems.append(f"{where} is not under an account's root")
            continue
        if not path.resolve().is_relative_to(root / account):
            problems.append(f"{where} resolves to {path.resolve()}, outside account {account}'s root")
        if parts[1] == ".exports":
            continue
        operation_id = int(parts[1]) if parts[1].isdigit() else None
        if operation_id is None or rows.operations.get(operation_id) != account_ids[account]:
            problems.append(f"{where} is under operation {parts[1]}, not one of account {account}'s")
        elif len(parts) > 3 and run_keys.get(parts[2]) != operation_id:
            problems.append(f"{where} is under run key {parts[2]}, not a run of operation {operation_id}")
    return problems
