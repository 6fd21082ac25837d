"""Alert evaluation benchmark: what one pass of the leading scheduler's alert evaluation costs on a large store.

    python bench/alerts.py [--operations 100] [--runs-per-operation 1000] [--passes 20] \\
        [--postgres postgresql+psycopg://postgres@127.0.0.1:54329/postgres] [--json bench/results/alerts.json]

Fills a fresh store (SQLite in a temporary folder; with --postgres, also a fresh database on that server) with
--operations operations of --runs-per-operation runs each (100 x 1,000 = 100,000 runs by default): one run an
hour per operation, every fiftieth Failed, the newest run of every tenth operation still Running, half the
operations on an hourly schedule, and a data load for every Completed run. Then, with `AlertEvaluator` as the
scheduler holds it:

- the first pass (a new leader: it looks back an hour and reads each source's history for the first time);
- --passes steady passes, 5 s apart on the evaluation's clock (what the leader does every RUNYARD_ALERT_SECONDS).

No peer evaluates alerts against history (Airflow's deadline alerts and Prefect's SLAs are fixed thresholds), so
the reference measured in the same run is one read of the API Runs page (`list_runs`, first page of 50, newest
first) on the same store: a steady pass costs about that many page reads of database time each 5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import code_version, command_line, machine, postgres_database, sqlite_database, summarize
from runyard.domain.alert_rules import AlertSettings
from runyard.services.alert_evaluation import AlertEvaluator
from runyard.services.listing import RunQuery, list_runs
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import accounts, operations, runs

BATCH = 10_000


def fill(store: Store, operation_count: int, per_operation: int) -> tuple[int, datetime]:
    """The store's runs (see the module's docstring); the account's id and the store's now."""
    with store.read() as conn:
        now = store.now(conn)
    with store.write() as conn:
        account = conn.execute(
            accounts.insert().values(name="bench", created_at=now).returning(accounts.c.id)
        ).scalar_one()
        operation_ids = [
            conn.execute(
                operations.insert()
                .values(
                    account_id=account,
                    environment="",
                    configuration_type="tasks",
                    configuration_id=f"source-{index}",
                    spec={},
                    schedule="0 * * * *" if index % 2 else None,
                    created_at=now - timedelta(days=90),
                    updated_at=now - timedelta(days=90),
                )
                .returning(operations.c.id)
            ).scalar_one()
            for index in range(operation_count)
        ]
        batch: list[dict[str, Any]] = []
        number = 0
        for hour in range(per_operation):
            for index, operation_id in enumerate(operation_ids):
                ended = now - timedelta(hours=per_operation - hour) + timedelta(seconds=index)
                running = hour == per_operation - 1 and index % 10 == 0
                status = "running" if running else ("failed" if (index + hour) % 50 == 0 else "completed")
                number += 1
                batch.append(
                    {
                        "account_id": account,
                        "operation_id": operation_id,
                        "run_key": f"run-{number}",
                        "job_name": f"job-{number}",
                        "run_type": "incremental",
                        "trigger": "schedule",
                        "status": status,
                        "message": "",
                        "created_at": ended - timedelta(seconds=60),
                        "started_at": ended - timedelta(seconds=60),
                        "completed_at": None if running else ended,
                        "updated_at": ended,
                    }
                )
            if len(batch) >= BATCH:
                conn.execute(runs.insert(), batch)
                batch = []
        if batch:
            conn.execute(runs.insert(), batch)
        conn.execute(
            sa.text(
                "INSERT INTO data_loads (account_id, operation_id, run_id, tables, rows, created_at) "
                "SELECT account_id, operation_id, id, '[]', 1000 + id % 50, completed_at FROM runs "
                "WHERE status = 'completed'"
            )
        )
    with store.write() as conn:
        conn.execute(sa.text("ANALYZE"))
    return account, now


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def measure(url: str, operation_count: int, per_operation: int, passes: int) -> dict[str, Any]:
    store = Store(url)
    migrate.upgrade(store)
    account, now = fill(store, operation_count, per_operation)
    evaluator = AlertEvaluator(store, AlertSettings())
    first_ms = timed(lambda: evaluator.evaluate(now))
    steady = []
    for number in range(1, passes + 1):
        at = now + timedelta(seconds=5 * number)
        steady.append(timed(lambda: evaluator.evaluate(at)))  # noqa: B023 (called at once, in this iteration)

    def page() -> None:
        with store.read() as conn:
            list_runs(conn, RunQuery(account_id=account))

    page()  # warm, as the passes are
    pages = [timed(page) for _ in range(passes)]
    with store.read() as conn:
        run_count = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
        opened = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
    store.dispose()
    steady_summary, page_summary = summarize(steady), summarize(pages)
    return {
        "backend": store.backend,
        "runs": run_count,
        "alerts_opened": opened,
        "first_pass_ms": first_ms,
        "steady_pass_ms": steady_summary,
        "runs_page_ms": page_summary,
        "steady_over_page": steady_summary["median"] / page_summary["median"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--operations", type=int, default=100)
    parser.add_argument("--runs-per-operation", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--postgres", help="also measure on a fresh database of this PostgreSQL server")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    results = []
    with sqlite_database() as url:
        results.append(measure(url, args.operations, args.runs_per_operation, args.passes))
    if args.postgres:
        with postgres_database(args.postgres) as url:
            results.append(measure(url, args.operations, args.runs_per_operation, args.passes))
    print("| store | runs | first pass | steady pass: median (p90, max) | API Runs page: median | pass / page |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result in results:
        steady, page = result["steady_pass_ms"], result["runs_page_ms"]
        print(
            f"| {result['backend']} | {result['runs']:,} | {result['first_pass_ms']:.0f} ms | "
            f"{steady['median']:.1f} ms ({steady['p90']:.1f}, {steady['max']:.1f}) | {page['median']:.1f} ms | "
            f"{result['steady_over_page']:.1f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "command": command_line("bench/alerts.py", argv, args.postgres),
            "code": code_version(),
            "machine": machine(args.postgres),
            "results": results,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
