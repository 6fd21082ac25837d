"""One runyard ingest, end to end: launch a destructive run of the fixture's /employees, wait for Completed.

    python bench/runyard_ingest.py --base http://127.0.0.1:8765 [--rows N] [--limit 1000]

Runs the embedded mode in this process (SQLite store, DuckDB warehouse, local staging, the worker
pool) in a fresh temporary home, like `runyard serve` would. Prints one JSON line with rows and
seconds (measured from the launch to the run's Completed status; imports and set-up excluded), as
../shared/bench/run_bench.py expects of a bench.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

SPEC = """
configuration_type: api-to-table
configuration_id: bench-employees
base_url: {base}
endpoints:
  - name: employees
    path: /employees
    records: data
    pagination: {{style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, limit: {limit}}}
    primary_key: id
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--rows", type=int, default=0, help="expected rows (checked when given)")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="runyard-bench-"))
    os.environ["RUNYARD_HOME"] = str(home)
    try:
        print(json.dumps(run(args.base, args.limit, args.rows)), flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(base: str, limit: int, expected: int) -> dict[str, object]:
    from runyard.domain.statuses import RunStatus, RunType
    from runyard.operations.loader import load_text
    from runyard.runtime import Runtime, engine_resources, open_store, tuned_gc
    from runyard.services.accounts import bootstrap_admin
    from runyard.services.operations import deploy
    from runyard.services.runs import LaunchRequest
    from runyard.settings import Settings

    settings = Settings(heartbeat_seconds=1.0, poll_seconds=0.2)
    store = open_store(settings)
    bootstrap_admin(store, "bench-password")
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
    (deployed,) = deploy(store, load_text(SPEC.format(base=base, limit=limit)), runtime.registry)
    worker = runtime.worker("bench")
    worker.start()
    try:
        with tuned_gc():  # as `runyard serve` runs
            started = time.perf_counter()
            view = runtime.runs.launch(LaunchRequest(operation_id=deployed.operation_id, run_type=RunType.DESTRUCTIVE))
            while not (view := runtime.runs.get_run(view.id)).status.is_final:
                time.sleep(0.02)
            seconds = time.perf_counter() - started
        assert runtime.resources is not None
        warehouse = runtime.resources.warehouses.for_account("default")
        ((rows, distinct),) = warehouse.query("SELECT count(*), count(DISTINCT id) FROM employees")
    finally:
        worker.stop(5)
        runtime.close()
    if view.status is not RunStatus.COMPLETED or rows != distinct or (expected and rows != expected):
        raise SystemExit(f"run {view.id} ended {view.status.label} with {rows} rows ({distinct} distinct)")
    return {"bench": "runyard", "rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(int(rows) / seconds)}


if __name__ == "__main__":
    main()
