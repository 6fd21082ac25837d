"""postgres-cdc: how many changes per second the stream applies, and how long a change takes to reach the warehouse.

An in-process runyard (SQLite store, DuckDB warehouse, one worker) streams a source table of a fresh database on
the PostgreSQL server of --postgres (or RUNYARD_TEST_POSTGRES_URL). Once the stream runs, --changes rows are
inserted in transactions of --per-transaction rows, as fast as one connection commits them. Every row carries
`written_at` (clock_timestamp() when it was written, just before its commit); every warehouse row carries
`_runyard_loaded_at` (the commit time of the load that brought it). So:

- throughput: changes / (last load's commit - first row written), over the whole burst;
- latency: _runyard_loaded_at - written_at for each row (a burst: queueing in the slot included).

    .venv/bin/python bench/cdc.py --changes 100000 --json /tmp/cdc.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchlib import code_version, machine, percentile, postgres_database
from runyard.domain.statuses import RunType, TaskStatus
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import run_tasks
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.settings import Settings

URL_ENV = "RUNYARD_BENCH_CDC_SOURCE"
SLOT = "runyard_bench_cdc"
STREAM = f"Stream Changes [{SLOT}]"
HANG_LIMIT = 600.0


def _dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _wait(check: Any, what: str, timeout: float = HANG_LIMIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def measure(source: str, changes: int, per_transaction: int, batch_max_changes: int, home: Path) -> dict[str, Any]:
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.bench_changes (id bigint PRIMARY KEY, payload text NOT NULL, "
            "amount numeric(12, 2), written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
    os.environ[URL_ENV] = source
    settings = Settings(home=home, lease_seconds=10, heartbeat_seconds=1, poll_seconds=0.1, sweep_seconds=1)
    store = open_store(settings)
    bootstrap_admin(store, "bench-password-1")
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
    worker = runtime.worker("bench")
    worker.start()
    try:
        text = (
            f"configuration_type: postgres-cdc\nconfiguration_id: bench_cdc\nsource: {{url_env: {URL_ENV}}}\n"
            f"tables: [public.bench_changes]\nslot: {SLOT}\nbatch_max_changes: {batch_max_changes}\npoll_seconds: 0.1\n"
        )
        (deployed,) = deploy(store, load_text(text), runtime.registry)
        run = runtime.runs.launch(LaunchRequest(operation_id=deployed.operation_id, run_type=RunType.DESTRUCTIVE))

        def streaming() -> bool:
            with store.read() as conn:
                tasks = {task.name: task for task in run_tasks(conn, run.id)}
            return STREAM in tasks and tasks[STREAM].status is TaskStatus.RUNNING

        _wait(streaming, "the stream to start")
        started = time.perf_counter()
        with psycopg.connect(source, autocommit=True) as conn:
            for first in range(1, changes + 1, per_transaction):
                last = min(first + per_transaction - 1, changes)
                conn.execute(
                    "INSERT INTO public.bench_changes (id, payload, amount) "
                    "SELECT i, repeat('x', 40) || i, i * 0.01 FROM generate_series(%s::bigint, %s::bigint) AS i",
                    (first, last),
                )
            written = time.perf_counter() - started
            # Logical decoding reads flushed WAL only; the test server commits with synchronous_commit off.
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                conn.execute("SELECT txid_current()")
        warehouse = runtime.resources.warehouses.for_account("default")  # type: ignore[union-attr]

        def loaded() -> bool:
            if warehouse.columns("bench_changes") is None:
                return False
            return warehouse.count("bench_changes") >= changes

        _wait(loaded, f"{changes} rows in the warehouse")
        elapsed = time.perf_counter() - started
        rows = warehouse.query("SELECT epoch_us(_runyard_loaded_at) - epoch_us(written_at) FROM main.bench_changes")
        span = warehouse.query(
            "SELECT epoch_us(max(_runyard_loaded_at)) - epoch_us(min(written_at)) FROM main.bench_changes"
        )
        runtime.runs.cancel(run.id)
        _wait(lambda: runtime.runs.get_run(run.id).status.is_final, "the run to end")
        with store.read() as conn:
            stream = {task.name: task for task in run_tasks(conn, run.id)}[STREAM]
    finally:
        worker.stop(10)
        runtime.close()
    latencies = [float(value) / 1000 for (value,) in rows]  # type: ignore[arg-type]
    seconds = float(span[0][0]) / 1e6  # type: ignore[arg-type]
    return {
        "changes": changes,
        "per_transaction": per_transaction,
        "batch_max_changes": batch_max_changes,
        "write_seconds": round(written, 3),
        "wall_seconds": round(elapsed, 3),
        "span_seconds": round(seconds, 3),
        "changes_per_second": round(changes / seconds, 1),
        "latency_ms": {
            "median": round(percentile(latencies, 50), 1),
            "p90": round(percentile(latencies, 90), 1),
            "p99": round(percentile(latencies, 99), 1),
            "max": round(max(latencies), 1),
        },
        "rows_loaded": len(latencies),
        "stream_records": stream.records_processed,
        "run_status": str(runtime.runs.get_run(run.id).status),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=os.environ.get("RUNYARD_TEST_POSTGRES_URL"))
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--per-transaction", type=int, default=100)
    parser.add_argument("--batch-max-changes", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.postgres:
        parser.error("give --postgres URL or set RUNYARD_TEST_POSTGRES_URL (a server with wal_level=logical)")
    with postgres_database(args.postgres) as database, tempfile.TemporaryDirectory() as home:
        try:
            result = measure(_dsn(database), args.changes, args.per_transaction, args.batch_max_changes, Path(home))
        finally:
            with psycopg.connect(_dsn(args.postgres), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE database = %s AND NOT active",
                    (sa.make_url(database).database,),
                )
    report = {"cdc": result, "machine": machine(args.postgres), "commit": code_version()}
    latency = result["latency_ms"]
    print(
        f"{'changes':>10} {'per tx':>7} {'seconds':>8} {'changes/s':>10} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}"
    )
    print(
        f"{result['changes']:>10,} {result['per_transaction']:>7} {result['span_seconds']:>8.2f} "
        f"{result['changes_per_second']:>10,.0f} {latency['median']:>10.1f} {latency['p99']:>8.1f} "
        f"{latency['max']:>8.1f}"
    )
    print(f"rows loaded: {result['rows_loaded']:,} of {result['changes']:,}; run {result['run_status']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if result["rows_loaded"] == result["changes"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
