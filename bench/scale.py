"""Scale-out on a PostgreSQL store: small runs per minute, and launch -> first task Running, with 1, 2 and 4 real
`runyard worker` processes.

    python bench/scale.py [--postgres URL] [--workers 1,2,4] [--task-seconds S] [--quick] [--warehouse-ingest]
                          [--json out.json]

For each worker count: a fresh database on the PostgreSQL server of `--postgres` (default $RUNYARD_TEST_POSTGRES_URL;
`scripts/test-postgres.sh start` prints one), migrated and given `--in-flight` operations of `configuration_type:
tasks`, each a small run of three `noop` tasks (two roots and a `Data Load` after both); with `--task-seconds S`,
each task waits S seconds instead (the `sleep` executor), as an extraction waits on its source, so that the task
slots, not the machine's cores, bound the throughput. Then that many `runyard
worker` processes are started, each with its own RUNYARD_HOME and the default settings (RUNYARD_WORKER_CONCURRENCY
slots, or `--slots`), as separate machines would run them: the only thing they share is the store. They are woken by
PostgreSQL's LISTEN/NOTIFY, exactly as in production. The bench process launches through the service layer
(`RunService.launch`, what the API and the CLI call) and measures:

- **idle latency**: `--idle-runs` launches of one operation, one after the other (each after the previous run ended
  and a random pause of 0-50 ms): from the launch's commit (this process's clock, read as `launch()` returns, just
  after COMMIT) to the run's first task `started_at` in the store (PostgreSQL's `clock_timestamp()` at the claim).
  Both clocks are this host's: PostgreSQL runs on loopback.
- **throughput**: a closed loop for `--seconds`: every operation has one run in flight; as soon as one ends it is
  launched again (8 launching threads). Runs per minute = the runs whose `completed_at` falls within the window
  (window bounds read from the database's clock) / the window. The same runs give a **latency under load**
  (launch commit -> first task started, the same clocks), and every run must end Completed.
- the workers' CPU time per run over the window (`/proc`, all their threads), and their resident memory at the end.

`--warehouse-ingest` also runs bench/runyard_ingest.py (the ingest benchmark of docs/benchmarks.md: an api-to-table
run of ../shared/bench's 1,000,000-employee fixture, in one process) once into the default DuckDB warehouse and once
into a PostgreSQL warehouse (RUNYARD_WAREHOUSE_URL=postgresql+psycopg://<a fresh database>). While
`runyard.warehouse.provider.open_warehouses` refuses PostgreSQL URLs, it says so in one line and skips that part.

The machine's core count and load average at the start, and the command line, are printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchlib import command_line, machine, percentile, postgres_database
from runyard.operations.loader import load_text
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.work_signal import LISTENER_APPLICATION_NAME
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import runs as runs_table
from runyard.store.tables import tasks as tasks_table

PG_ENV = "RUNYARD_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RUNYARD_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
RUNYARD_INGEST = ROOT / "bench" / "runyard_ingest.py"
DEFAULT_SLOTS: int = Settings.model_fields["worker_concurrency"].default
FINAL = ("completed", "completed_with_errors", "failed", "canceled", "rejected")
LAUNCHERS = 8  # threads launching in the throughput loop (launch() mostly waits on PostgreSQL)
POLL_SECONDS = 0.01  # how often the bench looks at its runs' statuses (one query for all)
WORKER_START_SECONDS = 60.0
WORKER_STOP_SECONDS = 30.0
DRAIN_SECONDS = 60.0

OPERATION = """\
configuration_type: tasks
configuration_id: {name}
tasks:
  - {{name: "Extract [a]", {work}}}
  - {{name: "Extract [b]", {work}}}
  - {{name: "Data Load", {work}, depends_on: ["Extract [a]", "Extract [b]"]}}
"""


def task_work(seconds: float) -> str:
    """What each task of a small run does: nothing (`noop`), or wait `seconds` as an extraction waits on its source."""
    return "executor: noop" if seconds <= 0 else f"executor: sleep, params: {{seconds: {seconds}}}"


# --- the workers ---------------------------------------------------------------------------------------------------


def runyard_command() -> list[str]:
    """The `runyard` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "runyard"
    found = str(beside) if beside.exists() else shutil.which("runyard")
    if found is None:
        raise SystemExit("the `runyard` command is not installed (make install)")
    return [found]


class WorkerProcesses:
    """`count` real `runyard worker` processes on the store at `url`, each with a home of its own."""

    def __init__(self, url: str, count: int, slots: int, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        base = {key: value for key, value in os.environ.items() if not key.startswith("RUNYARD_")}
        for number in range(count):
            home = folder / f"worker-{number + 1}"
            home.mkdir(parents=True)
            log = folder / f"worker-{number + 1}.log"
            env = {
                **base,
                "RUNYARD_DATABASE_URL": url,
                "RUNYARD_HOME": str(home),
                "RUNYARD_WORKER_CONCURRENCY": str(slots),
                "PYTHONUNBUFFERED": "1",
            }
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen([*runyard_command(), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
                )
            self.logs.append(log)

    def wait_listening(self, store: Store) -> float:
        """Until every worker's LISTEN session is up (pg_stat_activity); the seconds it took."""
        started = time.monotonic()
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name"
        )
        while True:
            self.expect_alive("start")
            with store.read() as conn:
                listening = conn.execute(query, {"name": LISTENER_APPLICATION_NAME}).scalar_one()
            if listening >= len(self.processes):
                return time.monotonic() - started
            if time.monotonic() - started > WORKER_START_SECONDS:
                raise SystemExit(
                    f"{listening} of {len(self.processes)} workers listening after {WORKER_START_SECONDS:g} s"
                )
            time.sleep(0.1)

    def expect_alive(self, when: str) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"worker {process.pid} exited ({process.returncode}) during {when}:\n{tail}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of every worker process so far (all its threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def rss_mb(self) -> list[float]:
        sizes = []
        for process in self.processes:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except FileNotFoundError:
                continue
            line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
            sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self) -> list[int | None]:
        """SIGTERM (runyard's graceful stop), SIGKILL if one outlives WORKER_STOP_SECONDS; their exit codes."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(WORKER_STOP_SECONDS))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                codes.append(None)
        return codes


# --- measuring ---------------------------------------------------------------------------------------------------


def db_now(store: Store) -> datetime:
    with store.read() as conn:
        return store.now(conn)


def statuses(store: Store, run_ids: Sequence[int]) -> dict[int, str]:
    with store.read() as conn:
        rows = conn.execute(sa.select(runs_table.c.id, runs_table.c.status).where(runs_table.c.id.in_(run_ids)))
        return {row.id: row.status for row in rows}


def first_started(store: Store, run_ids: Sequence[int]) -> dict[int, datetime]:
    """Each run's first task start (the claim, on the database's clock)."""
    query = (
        sa.select(tasks_table.c.run_id, sa.func.min(tasks_table.c.started_at).label("started"))
        .where(tasks_table.c.run_id.in_(run_ids))
        .group_by(tasks_table.c.run_id)
    )
    with store.read() as conn:
        return {row.run_id: row.started for row in conn.execute(query) if row.started is not None}


def latencies_ms(store: Store, commits: dict[int, float]) -> list[float]:
    """Per run: its first task's started_at minus the moment its launch committed (both this host's clock)."""
    started = first_started(store, list(commits))
    return [(started[run_id].timestamp() - committed) * 1000 for run_id, committed in commits.items()]


def launch(service: RunService, operation_id: int) -> tuple[int, float, float]:
    """Launch through the service layer; (run id, time.time() before launch(), time.time() as launch() returns: just
    after its COMMIT)."""
    before = time.time()
    view = service.launch(LaunchRequest(operation_id=operation_id))
    return view.id, before, time.time()


def wait_final(store: Store, run_id: int, workers: WorkerProcesses, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := statuses(store, [run_id])[run_id]) not in FINAL:
        if time.monotonic() > deadline:
            workers.expect_alive(f"run {run_id}")
            raise SystemExit(f"run {run_id} is still {status} after {timeout} s")
        time.sleep(0.005)
    return status


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all the machine's cores so far (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all the cores that was busy between two machine_cpu() readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


def measure_idle(
    store: Store, service: RunService, operation_id: int, runs: int, workers: WorkerProcesses, seed: int
) -> tuple[list[float], list[float]]:
    """One run at a time: launch commit -> first task started, and (the store's clock alone) the run's created_at,
    read at the start of the launch transaction -> first task started."""
    rng = random.Random(seed)
    commits: dict[int, float] = {}
    for _ in range(runs):
        time.sleep(rng.uniform(0, 0.05))
        run_id, _, committed = launch(service, operation_id)
        status = wait_final(store, run_id, workers)
        if status != "completed":
            raise SystemExit(f"run {run_id} ended {status}")
        commits[run_id] = committed
    started = first_started(store, list(commits))
    with store.read() as conn:
        rows = conn.execute(
            sa.select(runs_table.c.id, runs_table.c.created_at).where(runs_table.c.id.in_(list(commits)))
        )
        created = {row.id: row.created_at for row in rows}
    store_ms = [(started[run_id] - created[run_id]).total_seconds() * 1000 for run_id in commits]
    return latencies_ms(store, commits), store_ms


def measure_throughput(
    store: Store, service: RunService, operation_ids: Sequence[int], seconds: float, workers: WorkerProcesses
) -> dict[str, Any]:
    """Every operation keeps one run in flight for `seconds`; the runs completed within the window, per minute."""
    commits: dict[int, float] = {}
    active: dict[int, int] = {}  # run id -> operation id
    launching: dict[Future[tuple[int, float, float]], int] = {}
    launch_ms: dict[int, float] = {}
    cpu_before, own_before, machine_before = workers.cpu_seconds(), time.process_time(), machine_cpu()
    with ThreadPoolExecutor(LAUNCHERS, thread_name_prefix="launch") as pool:
        window_start = db_now(store)
        deadline = time.monotonic() + seconds
        for operation_id in operation_ids:
            launching[pool.submit(launch, service, operation_id)] = operation_id
        while time.monotonic() < deadline:
            for future in [f for f in launching if f.done()]:
                run_id, before, committed = future.result()
                commits[run_id], launch_ms[run_id] = committed, (committed - before) * 1000
                active[run_id] = launching.pop(future)
            if active:
                for run_id, status in statuses(store, list(active)).items():
                    if status in FINAL:  # ended: launch its operation again
                        operation_id = active.pop(run_id)
                        launching[pool.submit(launch, service, operation_id)] = operation_id
            time.sleep(POLL_SECONDS)
        window_end = db_now(store)
        cpu, own = workers.cpu_seconds() - cpu_before, time.process_time() - own_before
        busy = machine_busy(machine_before, machine_cpu())
        for future in list(launching):  # the launches under way still count as runs in flight
            run_id, before, committed = future.result()
            commits[run_id], launch_ms[run_id] = committed, (committed - before) * 1000
            active[run_id] = launching.pop(future)
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while active and time.monotonic() < drain_deadline:
        for run_id, status in statuses(store, list(active)).items():
            if status in FINAL:
                active.pop(run_id)
        time.sleep(POLL_SECONDS)
    workers.expect_alive("the throughput window")
    if active:
        raise SystemExit(f"{len(active)} runs did not end within {DRAIN_SECONDS} s of the window's end")
    with store.read() as conn:
        rows = conn.execute(
            sa.select(runs_table.c.id, runs_table.c.status, runs_table.c.completed_at).where(
                runs_table.c.id.in_(list(commits))
            )
        ).all()
    not_completed = [f"{row.id}: {row.status}" for row in rows if row.status != "completed"]
    if not_completed:
        raise SystemExit(f"runs that did not end Completed: {', '.join(not_completed[:10])}")
    in_window = [row.id for row in rows if window_start <= row.completed_at <= window_end]
    window = (window_end - window_start).total_seconds()
    return {
        "window_seconds": window,
        "runs_launched": len(commits),
        "runs_in_window": len(in_window),
        "runs_per_minute": len(in_window) / window * 60,
        "worker_cpu_ms_per_run": cpu / max(len(in_window), 1) * 1000,
        "worker_cpu_share": cpu / window,  # cores' worth of CPU the workers used
        "bench_cpu_share": own / window,  # the launching and polling process's
        "machine_busy": busy,  # of all the cores, every process (PostgreSQL's and other sessions' included)
        "latency_ms": latencies_ms(store, {run_id: commits[run_id] for run_id in in_window}),
        "launch_ms": [launch_ms[run_id] for run_id in in_window],
    }


def measure_workers(admin_url: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """One worker count on a fresh database: start the workers, warm up, idle latency, throughput, stop."""
    with postgres_database(admin_url) as url, tempfile.TemporaryDirectory(prefix="runyard-scale-") as folder:
        store = Store(url)
        workers: WorkerProcesses | None = None
        try:
            migrate.upgrade(store)  # as `runyard db upgrade` does, once, before any worker starts
            bootstrap_admin(store, "bench-admin-password")
            work = task_work(args.task_seconds)
            texts = [OPERATION.format(name=f"scale-{i:02d}", work=work) for i in range(args.in_flight)]
            specs = [spec for text in texts for spec in load_text(text)]
            operation_ids = [item.operation_id for item in deploy(store, specs)]
            service = RunService(store)
            workers = WorkerProcesses(url, count, args.slots, Path(folder))
            startup = workers.wait_listening(store)
            print(f"  {count} worker(s) listening after {startup:.1f} s; warming up", file=sys.stderr)
            measure_idle(store, service, operation_ids[0], args.warmup, workers, seed=count + 1000)
            print(f"  idle latency: {args.idle_runs} runs one at a time", file=sys.stderr)
            idle, idle_store = measure_idle(store, service, operation_ids[0], args.idle_runs, workers, seed=count)
            print(f"  throughput: {args.seconds:g} s with {args.in_flight} runs in flight", file=sys.stderr)
            loaded = measure_throughput(store, service, operation_ids, args.seconds, workers)
            rss = workers.rss_mb()
        finally:
            codes = workers.stop() if workers is not None else []
            store.dispose()
    if any(code != 0 for code in codes):
        print(f"  warning: worker exit codes {codes} (0 expected after SIGTERM)", file=sys.stderr)
    return {
        "workers": count,
        "slots_per_worker": args.slots,
        "worker_start_seconds": startup,
        "idle_latency_ms": idle,
        "idle_created_to_started_ms": idle_store,
        "throughput": loaded,
        "worker_rss_mb": rss,
        "exit_codes": codes,
    }


# --- the ingest into a PostgreSQL warehouse ------------------------------------------------------------------------


def postgres_warehouse_refusal(url: str) -> str | None:
    """Why open_warehouses refuses `url`, or None when it opens it."""
    from runyard.errors import ConfigError
    from runyard.warehouse.provider import open_warehouses

    try:
        provider = open_warehouses(url)
    except ConfigError as error:
        return str(error)
    provider.close_all()
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    """`name` set to `value` (unset when None) for the child processes started within."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def warehouse_ingest(admin_url: str, rows: int) -> list[dict[str, Any]]:
    """bench/runyard_ingest.py once into DuckDB and once into a PostgreSQL warehouse (skipped while refused)."""
    sys.path.insert(0, str(SHARED))
    import run_bench  # type: ignore[import-not-found]  # the shared harness of bench/ingest.py

    results: list[dict[str, Any]] = []
    with postgres_database(admin_url) as warehouse_url:
        refusal = postgres_warehouse_refusal(warehouse_url)
        if refusal is not None:
            print(
                "--warehouse-ingest: PostgreSQL warehouse skipped: open_warehouses still refuses "
                f"postgresql+psycopg:// URLs ({refusal}); measuring DuckDB only"
            )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        print(f"ingest: starting the {rows:,}-row fixture on port {port}", file=sys.stderr)
        fixture = run_bench.start_fixture(sys.executable, rows, port)
        try:
            targets = [("duckdb", None)] + ([] if refusal else [("postgresql", warehouse_url)])
            for name, url in targets:
                print(f"ingest: {rows:,} rows into {name}", file=sys.stderr)
                with environment("RUNYARD_WAREHOUSE_URL", url):
                    try:
                        run = run_bench.run_once(sys.executable, [str(RUNYARD_INGEST), "--rows", str(rows)], base, 900)
                    except SystemExit as failed:
                        results.append({"warehouse": name, "rows": rows, "error": str(failed)[-2000:]})
                        continue
                results.append({"warehouse": name, **run})
        finally:
            fixture.terminate()
            fixture.wait(10)
    if refusal is not None:
        results.append({"warehouse": "postgresql", "rows": rows, "skipped": refusal})
    return results


# --- report --------------------------------------------------------------------------------------------------------


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| Workers | Slots each | Runs/min | Runs in window | Idle p50 ms | Idle p95 ms | Loaded p50 ms "
        "| Loaded p95 ms | Launch p50 ms | Worker CPU ms/run | Workers' CPU (cores) | Bench CPU (cores) | Machine busy "
        "| RSS MB per worker |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r["throughput"]
        idle, loaded = r["idle_latency_ms"], t["latency_ms"]
        rss = r["worker_rss_mb"]
        lines.append(
            f"| {r['workers']} | {r['slots_per_worker']} | {t['runs_per_minute']:,.0f} | {t['runs_in_window']} | "
            f"{percentile(idle, 50):.1f} | {percentile(idle, 95):.1f} | {percentile(loaded, 50):.1f} | "
            f"{percentile(loaded, 95):.1f} | {percentile(t['launch_ms'], 50):.1f} | "
            f"{t['worker_cpu_ms_per_run']:.1f} | {t['worker_cpu_share']:.2f} | "
            f"{t['bench_cpu_share']:.2f} | {t['machine_busy']:.0%} | {max(rss) if rss else float('nan'):.0f} |"
        )
    return "\n".join(lines)


def ingest_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| Warehouse | Rows | Run s | Rows/s | Wall s (with start-up) | Peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['warehouse']} | {r['rows']:,} | skipped: {r['skipped']} | | | |")
        elif "error" in r:
            lines.append(f"| {r['warehouse']} | {r['rows']:,} | failed (see the JSON) | | | |")
        else:
            lines.append(
                f"| {r['warehouse']} | {r['rows']:,} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {r['wall']:.2f} | "
                f"{r['rss_mb']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get(PG_ENV), help=f"default: ${PG_ENV}")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to measure (default 1,2,4)")
    parser.add_argument("--slots", type=int, default=DEFAULT_SLOTS, help="task slots per worker (runyard default)")
    parser.add_argument("--in-flight", type=int, default=24, help="runs kept in flight in the throughput loop")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput window per worker count")
    parser.add_argument("--idle-runs", type=int, default=30, help="launches measured one at a time")
    parser.add_argument(
        "--task-seconds",
        type=float,
        default=0.0,
        help="each task waits this long (the sleep executor), as an extraction waits on its source; 0: noop tasks",
    )
    parser.add_argument("--warmup", type=int, default=3, help="launches before measuring, not counted")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 idle runs and a 4 s window each")
    parser.add_argument(
        "--warehouse-ingest", action="store_true", help="also the 1,000,000-row ingest into DuckDB and PostgreSQL"
    )
    parser.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows of the --warehouse-ingest fixture")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write every sample here")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle_runs, args.seconds, args.warmup = min(args.idle_runs, 8), min(args.seconds, 4.0), 2
    if not args.postgres:
        parser.error(f"a PostgreSQL server is needed: --postgres URL or ${PG_ENV} (scripts/test-postgres.sh start)")
    counts = [int(part) for part in args.workers.split(",") if part.strip()]

    started_at = datetime.now(UTC)
    cores, load = os.cpu_count(), os.getloadavg()
    command = command_line("bench/scale.py", argv if argv is not None else sys.argv[1:], args.postgres)
    print(
        f"{command}\ncores (os.cpu_count()): {cores}; load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    results = []
    for count in counts:
        print(f"measuring {count} worker process(es)...", file=sys.stderr)
        results.append(measure_workers(args.postgres, count, args))
    ingest = warehouse_ingest(args.postgres, args.ingest_rows) if args.warehouse_ingest else []
    elapsed = (datetime.now(UTC) - started_at).total_seconds()

    print()
    print(markdown_table(results))
    if ingest:
        print()
        print(ingest_table(ingest))
    info = machine(args.postgres)
    print(
        f"\n{started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s; cores {cores}; load at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, at the end {os.getloadavg()[0]:.2f}; {json.dumps(info)}"
    )
    if args.json:
        report = {
            "date": started_at.isoformat(timespec="seconds"),
            "elapsed_seconds": elapsed,
            "command": command,
            "cores": cores,
            "load_average_at_start": load,
            "machine": info,
            "results": results,
            "warehouse_ingest": ingest,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
