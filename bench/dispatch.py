"""Dispatch latency in the embedded mode: from `launch()` to the run's first task running.

One process holds the store, a worker pool and the launching thread. Each launch is of a
one-task operation whose task is a probe executor: the probe records `perf_counter()` the
moment the worker hands it the task, so the wall-clock sample is the time from just before
`RunService.launch()` is called to the task's code starting. The store-clock sample is
`tasks.claimed_at - runs.created_at`, both written by the database's clock (SQLite: this
process's clock; PostgreSQL: clock_timestamp()). The next launch waits until the previous
run is final (one active run per operation), then an optional random pause so that launches
land at random points of the workers' poll cycle.

Two variants of the same worker: with the in-process wakeup (runyard's default) and without
it, where idle slots only poll every `--poll-seconds` (the poll-based peer).

    python bench/dispatch.py [--runs N] [--postgres URL] [--json out.json]

PostgreSQL is measured too when `--postgres URL` is given or RUNYARD_TEST_POSTGRES_URL is
set: the benchmark creates a fresh database for each variant on that server and drops it after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchlib import code_version, command_line, machine, postgres_database, sqlite_database, summarize
from runyard.engine.context import TaskContext
from runyard.engine.executors import Executor
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.operations.workflow.spec import WorkflowOperation
from runyard.runtime import default_registry
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.tasks import TaskLeases
from runyard.services.wakeup import Wakeup
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import runs as runs_table
from runyard.store.tables import tasks as tasks_table
from runyard.worker.worker import Worker, default_worker_id

PG_ENV = "RUNYARD_TEST_POSTGRES_URL"
PROBE = "bench_probe"
END_PROBE = "bench_end_probe"
TARGET_MS = 100.0
_DEFAULTS = Settings.model_fields
DEFAULT_CONCURRENCY: int = _DEFAULTS["worker_concurrency"].default
DEFAULT_POLL_SECONDS: float = _DEFAULTS["poll_seconds"].default
DEFAULT_HEARTBEAT_SECONDS: float = _DEFAULTS["heartbeat_seconds"].default
DEFAULT_LEASE_SECONDS: float = _DEFAULTS["lease_seconds"].default
STATS = ("median", "p90", "p99", "max")
CLOCKS = {"wall_ms": "wall (perf_counter)", "store_ms": "store (claimed_at - created_at)"}


class Probe:
    """An executor that notes when the worker started it, keyed by run id (`clock`: perf_counter by default;
    time.time to compare with cron ticks)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: dict[int, float] = {}
        self._condition = threading.Condition()

    def run(self, ctx: TaskContext) -> None:
        started = self._clock()
        with self._condition:
            self._started[ctx.identity.run_id] = started
            self._condition.notify_all()
        ctx.checkpoint()

    def wait(self, run_id: int, timeout: float) -> float:
        with self._condition:
            if not self._condition.wait_for(lambda: run_id in self._started, timeout=timeout):
                raise RuntimeError(f"run {run_id}: its task did not start within {timeout} s")
            return self._started.pop(run_id)

    def wait_any(self, timeout: float) -> tuple[int, float]:
        """(run id, start) of the first run whose task started (a run launched by something else)."""
        with self._condition:
            if not self._condition.wait_for(lambda: bool(self._started), timeout=timeout):
                raise RuntimeError(f"no task started within {timeout} s")
            run_id = next(iter(self._started))
            return run_id, self._started.pop(run_id)


class EndProbe:
    """An executor that notes when its code ends, keyed by run id: the last moment before the task's end is
    written (an upstream job's success)."""

    def __init__(self) -> None:
        self._ended: dict[int, float] = {}
        self._lock = threading.Lock()

    def run(self, ctx: TaskContext) -> None:
        ctx.checkpoint()
        with self._lock:
            self._ended[ctx.identity.run_id] = time.perf_counter()

    def ended(self, run_id: int) -> float:
        with self._lock:
            return self._ended.pop(run_id)


def _deploy_probe_operation(
    store: Store, registry: dict[str, Executor], configuration_id: str = "bench_dispatch", schedule: str | None = None
) -> int:
    bootstrap_admin(store, "bench-admin-password")
    spec = TaskGraphOperation.model_validate(
        {
            "configuration_type": "tasks",
            "configuration_id": configuration_id,
            "account": "default",
            "schedule": schedule,
            "tasks": [{"name": "probe", "executor": PROBE}],
        }
    )
    return deploy(store, [spec], registry)[0].operation_id


def _wait_final(service: RunService, run_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        run = service.get_run(run_id)
        if run.status.is_final:
            if run.status.value != "completed":
                raise RuntimeError(f"run {run_id} ended {run.status.value}: {run.message}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish within {timeout} s")
        time.sleep(0.002)


def _store_latencies(store: Store, run_ids: Sequence[int]) -> list[float]:
    query = (
        sa.select(runs_table.c.id, runs_table.c.created_at, tasks_table.c.claimed_at)
        .join(tasks_table, tasks_table.c.run_id == runs_table.c.id)
        .where(runs_table.c.id.in_(run_ids))
    )
    with store.read() as conn:
        rows = {row.id: (row.claimed_at - row.created_at).total_seconds() * 1000 for row in conn.execute(query)}
    return [rows[run_id] for run_id in run_ids]


def measure(
    url: str,
    runs: int,
    wakeup: bool,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_pause: float = 0.0,
    warmup: int = 3,
    seed: int = 0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Launch `runs` one-task runs one after the other on the database at `url` (migrated here).

    Returns the per-run samples in milliseconds (`samples`: wall_ms, store_ms, launch_ms) and
    their median/p90/p99/max (`summary`). `warmup` launches before them are not counted.
    """
    store = Store(url)
    worker: Worker | None = None
    try:
        migrate.upgrade(store)
        probe = Probe()
        registry = {**default_registry(), PROBE: Executor(PROBE, probe.run, "benchmark probe")}
        operation_id = _deploy_probe_operation(store, registry)
        signal = Wakeup() if wakeup else None
        leases = TaskLeases(store, lease_seconds=DEFAULT_LEASE_SECONDS, wakeup=signal)
        worker = Worker(
            leases,
            registry,
            concurrency=concurrency,
            heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS,
            poll_seconds=poll_seconds,
            wakeup=signal,
            worker_id=default_worker_id("bench"),
        )
        service = RunService(store, signal)
        worker.start()
        rng = random.Random(seed)
        wall_ms: list[float] = []
        launch_ms: list[float] = []
        run_ids: list[int] = []
        for index in range(warmup + runs):
            if max_pause > 0:
                time.sleep(rng.uniform(0, max_pause))
            begin = time.perf_counter()
            run = service.launch(LaunchRequest(operation_id=operation_id))
            returned = time.perf_counter()
            started = probe.wait(run.id, timeout)
            _wait_final(service, run.id, timeout)
            if index >= warmup:
                wall_ms.append((started - begin) * 1000)
                launch_ms.append((returned - begin) * 1000)
                run_ids.append(run.id)
        store_ms = _store_latencies(store, run_ids)
    finally:
        if worker is not None:
            worker.stop(grace_seconds=5.0)
        store.dispose()
    samples = {"wall_ms": wall_ms, "store_ms": store_ms, "launch_ms": launch_ms}
    return {
        "backend": sa.make_url(url).get_backend_name(),
        "wakeup": wakeup,
        "variant": "wakeup" if wakeup else f"polling {poll_seconds:g} s",
        "runs": runs,
        "warmup": warmup,
        "concurrency": concurrency,
        "poll_seconds": poll_seconds,
        "max_pause_seconds": max_pause,
        "samples": samples,
        "summary": {name: summarize(values) for name, values in samples.items()},
    }


def measure_workflow(url: str, runs: int, *, warmup: int = 3, timeout: float = 30.0) -> dict[str, Any]:
    """A workflow's last upstream success -> its target's task running, `runs` times, with the default worker.

    The upstream's one task notes when its code ends (`wall_ms` starts there: its end is then written, the success
    counted, the workflow evaluated, the target launched and claimed); the target's task notes when it starts.
    The store clock is the target task's claimed_at minus the upstream run's completed_at.
    """
    store = Store(url)
    worker: Worker | None = None
    try:
        migrate.upgrade(store)
        start_probe, end_probe = Probe(), EndProbe()
        registry = {
            **default_registry(),
            PROBE: Executor(PROBE, start_probe.run, "benchmark probe"),
            END_PROBE: Executor(END_PROBE, end_probe.run, "benchmark upstream"),
        }
        bootstrap_admin(store, "bench-admin-password")
        jobs = [
            TaskGraphOperation.model_validate(
                {
                    "configuration_type": "tasks",
                    "configuration_id": name,
                    "tasks": [{"name": "probe", "executor": kind}],
                }
            )
            for name, kind in (("bench_upstream", END_PROBE), ("bench_target", PROBE))
        ]
        workflow = WorkflowOperation.model_validate(
            {
                "configuration_type": "workflow",
                "configuration_id": "bench_workflow",
                "authorized_job_ids": ["tasks|default|bench_upstream|DEV"],
                "target_dag": {"configuration_type": "tasks", "configuration_id": "bench_target"},
            }
        )
        upstream_id = deploy(store, [*jobs, workflow], registry)[0].operation_id
        signal = Wakeup()
        worker = _default_worker(store, registry, signal)
        service = RunService(store, signal)
        worker.start()
        wall_ms: list[float] = []
        pairs: list[tuple[int, int]] = []
        for index in range(warmup + runs):
            upstream = service.launch(LaunchRequest(operation_id=upstream_id)).id
            target, started = start_probe.wait_any(timeout)
            ended = end_probe.ended(upstream)
            _wait_final(service, upstream, timeout)
            _wait_final(service, target, timeout)
            if index >= warmup:
                wall_ms.append((started - ended) * 1000)
                pairs.append((upstream, target))
        store_ms = _trigger_latencies(store, pairs)
    finally:
        if worker is not None:
            worker.stop(grace_seconds=5.0)
        store.dispose()
    samples = {"wall_ms": wall_ms, "store_ms": store_ms}
    return {
        "backend": sa.make_url(url).get_backend_name(),
        "variant": "workflow: upstream success -> target running",
        "runs": runs,
        "samples": samples,
        "summary": {name: summarize(values) for name, values in samples.items()},
    }


def measure_schedule(url: str, runs: int, *, warmup: int = 1, timeout: float = 30.0) -> dict[str, Any]:
    """A cron tick -> its run's task running, `runs` times, with the default scheduler and worker.

    The operation's schedule fires every second (croniter's sixth field, seconds), so its tick is the second its
    run was created in. `wall_ms` is the task's start (time.time()) minus the tick; the store clock is the task's
    claimed_at minus the tick.
    """
    from runyard.worker.scheduler import Scheduler

    store = Store(url)
    worker: Worker | None = None
    scheduler: Scheduler | None = None
    try:
        migrate.upgrade(store)
        probe = Probe(clock=time.time)
        registry = {**default_registry(), PROBE: Executor(PROBE, probe.run, "benchmark probe")}
        _deploy_probe_operation(store, registry, "bench_scheduled", schedule="* * * * * *")  # every second
        signal = Wakeup()
        worker = _default_worker(store, registry, signal)
        service = RunService(store, signal)
        scheduler = Scheduler(
            store,
            sweep_seconds=_DEFAULTS["sweep_seconds"].default,
            cancel_timeout_seconds=_DEFAULTS["cancel_timeout_seconds"].default,
            runs=service,
            tick_seconds=_DEFAULTS["scheduler_seconds"].default,
        )
        worker.start()
        scheduler.start()
        wall_ms: list[float] = []
        run_ids: list[int] = []
        while len(run_ids) < warmup + runs:
            run_id, started = probe.wait_any(timeout)
            run_ids.append(run_id)
            wall_ms.append((started - _tick_of(service.get_run(run_id).created_at).timestamp()) * 1000)
        with store.read() as conn:
            rows = conn.execute(
                sa.select(runs_table.c.id, runs_table.c.created_at, tasks_table.c.claimed_at)
                .join(tasks_table, tasks_table.c.run_id == runs_table.c.id)
                .where(runs_table.c.id.in_(run_ids[warmup:]))
            ).all()
        claimed = {row.id: (row.claimed_at - _tick_of(row.created_at)).total_seconds() * 1000 for row in rows}
        store_ms = [claimed[run_id] for run_id in run_ids[warmup:]]
    finally:
        if scheduler is not None:
            scheduler.stop()
        if worker is not None:
            worker.stop(grace_seconds=5.0)
        store.dispose()
    samples = {"wall_ms": wall_ms[warmup:], "store_ms": store_ms}
    return {
        "backend": sa.make_url(url).get_backend_name(),
        "variant": "schedule: cron tick -> run running",
        "runs": runs,
        "samples": samples,
        "summary": {name: summarize(values) for name, values in samples.items()},
    }


def _tick_of(created_at: datetime) -> datetime:
    """The every-second tick a scheduled run was created for: the second it was created in."""
    return created_at.replace(microsecond=0)


def _default_worker(store: Store, registry: dict[str, Executor], signal: Wakeup) -> Worker:
    leases = TaskLeases(store, lease_seconds=DEFAULT_LEASE_SECONDS, wakeup=signal)
    return Worker(
        leases,
        registry,
        concurrency=DEFAULT_CONCURRENCY,
        heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS,
        poll_seconds=DEFAULT_POLL_SECONDS,
        wakeup=signal,
        worker_id=default_worker_id("bench"),
    )


def _trigger_latencies(store: Store, pairs: Sequence[tuple[int, int]]) -> list[float]:
    """Per (upstream run, target run): the target task's claimed_at minus the upstream run's completed_at."""
    ids = [run_id for pair in pairs for run_id in pair]
    with store.read() as conn:
        completed = dict(
            conn.execute(sa.select(runs_table.c.id, runs_table.c.completed_at).where(runs_table.c.id.in_(ids))).all()
        )
        claimed = dict(
            conn.execute(
                sa.select(tasks_table.c.run_id, tasks_table.c.claimed_at).where(tasks_table.c.run_id.in_(ids))
            ).all()
        )
    return [(claimed[target] - completed[upstream]).total_seconds() * 1000 for upstream, target in pairs]


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| Database | Dispatch | Clock | Runs | Median ms | p90 ms | p99 ms | Max ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for clock, label in CLOCKS.items():
            stats = result["summary"][clock]
            cells = " | ".join(f"{stats[name]:.1f}" for name in STATS)
            lines.append(f"| {result['backend']} | {result['variant']} | {label} | {result['runs']} | {cells} |")
    return "\n".join(lines)


TRIGGER_TARGET_MS = 1000.0


def trigger_table(results: Sequence[dict[str, Any]]) -> str:
    """Workflow and schedule triggers: from the event (upstream success, cron tick) to the task running."""
    lines = [
        "| Database | Trigger | Clock | Runs | Median ms | p90 ms | p99 ms | Max ms | Within 1 s |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    clocks = {"wall_ms": "wall", "store_ms": "store (claimed_at)"}
    for result in results:
        for clock, label in clocks.items():
            stats = result["summary"][clock]
            cells = " | ".join(f"{stats[name]:.1f}" for name in STATS)
            within = "yes" if stats["max"] <= TRIGGER_TARGET_MS else "no"
            lines.append(
                f"| {result['backend']} | {result['variant']} | {label} | {result['runs']} | {cells} | {within} |"
            )
    return "\n".join(lines)


def ratios(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per database: median and p99 of the polling variant over the wakeup one (wall clock)."""
    lines = []
    for backend in dict.fromkeys(r["backend"] for r in results):
        by_variant = {r["wakeup"]: r["summary"]["wall_ms"] for r in results if r["backend"] == backend}
        if True in by_variant and False in by_variant:
            woken, polled = by_variant[True], by_variant[False]
            lines.append(
                f"{backend}: polling / wakeup = {polled['median'] / woken['median']:.0f}x at the median, "
                f"{polled['p99'] / woken['p99']:.0f}x at p99; wakeup median {woken['median']:.1f} ms "
                f"({'within' if woken['p99'] <= TARGET_MS else 'over'} the {TARGET_MS:.0f} ms target at p99)"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="launches measured with wakeup (default 200)")
    parser.add_argument(
        "--polling-runs", type=int, default=40, help="launches measured without wakeup (default 40: ~1 s each)"
    )
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get(PG_ENV), help=f"default: ${PG_ENV}")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write every sample and summary here")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="worker slots (runyard default)")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS, help="idle slots' poll period")
    parser.add_argument(
        "--wakeup-pause", type=float, default=0.05, help="max random pause before each launch, with wakeup (s)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="launches before measuring, not counted")
    parser.add_argument(
        "--workflow-runs", type=int, default=50, help="workflow triggers measured (upstream success -> target running)"
    )
    parser.add_argument(
        "--schedule-runs", type=int, default=20, help="cron ticks measured (one per second; tick -> run running)"
    )
    args = parser.parse_args(argv)

    started_at = datetime.now(UTC)
    code = code_version()
    backends: list[tuple[str, Any]] = [("sqlite", sqlite_database)]
    if args.postgres:
        backends.append(("postgresql", lambda: postgres_database(args.postgres)))
    variants = [
        (True, args.runs, args.wakeup_pause),
        (False, args.polling_runs, args.poll_seconds),  # launches land uniformly within the poll cycle
    ]
    results: list[dict[str, Any]] = []
    for backend, database in backends:
        for wakeup, count, pause in variants:
            if count <= 0:
                continue
            print(f"measuring {backend}, {'wakeup' if wakeup else 'polling'}: {count} runs...", file=sys.stderr)
            with database() as url:
                results.append(
                    measure(
                        url,
                        count,
                        wakeup,
                        poll_seconds=args.poll_seconds,
                        concurrency=args.concurrency,
                        max_pause=pause,
                        warmup=args.warmup,
                    )
                )
    triggers: list[dict[str, Any]] = []
    for backend, database in backends:
        for count, measure_trigger in ((args.workflow_runs, measure_workflow), (args.schedule_runs, measure_schedule)):
            if count <= 0:
                continue
            print(f"measuring {backend}, {measure_trigger.__name__}: {count} runs...", file=sys.stderr)
            with database() as url:
                triggers.append(measure_trigger(url, count))
    elapsed = (datetime.now(UTC) - started_at).total_seconds()

    print(markdown_table(results))
    print()
    for line in ratios(results):
        print(f"- {line}")
    if triggers:
        print()
        print(trigger_table(triggers))
    print(f"\n{started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s, code {code}; {json.dumps(machine(args.postgres))}")
    if args.json:
        report = {
            "date": started_at.isoformat(timespec="seconds"),
            "elapsed_seconds": elapsed,
            "command": command_line("bench/dispatch.py", argv if argv is not None else sys.argv[1:], args.postgres),
            "code": code,
            "machine": machine(args.postgres),
            "results": results,
            "triggers": triggers,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
