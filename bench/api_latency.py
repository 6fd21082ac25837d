"""API latency: the runs list and a run's task search, over real HTTP, on a store of realistic size.

The benchmark fills a fresh store with `--runs` runs and `--tasks` tasks (one run holds
`--big-run-tasks` of them; the others about 20 each), with task names, initials, statuses, task
tables and task messages like those runyard writes. It then serves the real app (`create_app`) with
uvicorn in a child process, as `runyard serve` does (logging configured; as many processes as RUNYARD_HTTP_PROCESSES
would by default for the store; `--http-processes N` serves from N), logs in once
and measures with real HTTP over loopback:

- latency: `--clients` concurrent clients (threads, one httpx client each), `--requests` requests
  each, back to back: p50/p90/p99;
- throughput: `--throughput-clients` concurrent clients, `--throughput-requests` each: requests/s;
- raw SQL: the same query through `services.listing.list_runs` / `list_tasks` on one connection in
  this process, without HTTP, authentication or JSON (median of `--sql-repeats`), with the time of
  each SQL statement it ran (cursor execute to fetch done) so that the count(*) for totals shows;
- the server's CPU time per request during the latency run (what it works, whatever the queueing), and the
  machine's 1-minute load average before and after each query (the VM is shared: read latencies with it).

    python bench/api_latency.py [--runs 100000 --tasks 2000000] [--postgres URL] [--json out.json]

SQLite always; PostgreSQL too when `--postgres URL` is given or RUNYARD_TEST_POSTGRES_URL is set
(a database is created on that server for the run and dropped after).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from benchlib import code_version, command_line, machine, percentile, postgres_database, sqlite_database
from runyard.domain.runs import make_job_name, make_run_key
from runyard.domain.search import fold_case, initials
from runyard.domain.statuses import RunStatus, RunType, TaskStatus, Trigger
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import RunQuery, TaskQuery, list_runs, list_tasks
from runyard.services.operations import deploy
from runyard.settings import Settings
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import users

PG_ENV = "RUNYARD_TEST_POSTGRES_URL"
TARGET_P99_MS = 50.0
ADMIN_PASSWORD = "bench-admin-password"
SIGNING_KEY = "api-latency-benchmark-signing-key-0123456789"
SEED = 20261123
OPERATIONS = 20
BATCH_ROWS = 50_000
STARTUP_SECONDS = 30.0
TABLES = (
    "employees",
    "departments",
    "time_off",
    "payroll",
    "benefits",
    "positions",
    "locations",
    "managers",
    "contracts",
    "timesheets",
    "expenses",
    "invoices",
    "customers",
    "suppliers",
    "orders",
    "order_lines",
    "products",
    "inventory",
    "shipments",
    "returns",
)
KINDS = (  # (name template, stage, metrics type)
    ("Process [{table}]", "extract", "extract"),
    ("Metadata Consolidation [{table}]", "consolidate", "task"),
    ("{table} Consolidation", "consolidate", "task"),
    ("Ingestion [{table}]", "ingest", "stream"),
    ("Get High Watermark [{table}]", "hwm", "hwm"),
)
DATA_LOAD = ("Data Load", "load", "load")
MESSAGES = (
    "Loaded {rows:,} rows into {table}",
    "3 rows of {table} rejected: duplicate key",
    "Schema of {table} changed: column cost_center added",
    "Retrying after HTTP 503 from the source",
)
RUN_STATUSES = (  # (status, weight)
    (RunStatus.COMPLETED, 70),
    (RunStatus.COMPLETED_WITH_ERRORS, 8),
    (RunStatus.FAILED, 12),
    (RunStatus.CANCELED, 5),
    (RunStatus.REJECTED, 5),
)
BIG_RUN_TASK_STATUSES = (
    (TaskStatus.COMPLETED, 55),
    (TaskStatus.COMPLETED_WITH_ERRORS, 5),
    (TaskStatus.RUNNING, 2),
    (TaskStatus.WAITING_TO_START, 30),
    (TaskStatus.FAILED, 3),
    (TaskStatus.SKIPPED, 5),
)


# --- the store ------------------------------------------------------------------------------------------------


@dataclass
class Filled:
    account_id: int
    big_run_id: int
    operation_ids: list[int]
    counts: dict[str, int]
    seconds: float
    window: tuple[datetime, datetime]  # a week of started_at values, for the date-filtered query


def _weighted(rng: random.Random, choices: Sequence[tuple[Any, int]]) -> Any:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _normal_names() -> list[tuple[str, str, str, str | None]]:
    """(name, stage, metrics type, table) for the ordinary runs: 5 kinds x 20 tables + Data Load."""
    names: list[tuple[str, str, str, str | None]] = [
        (template.format(table=table), stage, metrics, table) for table in TABLES for template, stage, metrics in KINDS
    ]
    names.append((*DATA_LOAD, None))
    return names


def _big_names(count: int) -> list[tuple[str, str, str, str | None]]:
    """`count` distinct task names: 5 kinds over tables like employees_07 (20 names x up to 50 suffixes)."""
    names: list[tuple[str, str, str, str | None]] = []
    for position in range(count):
        number = position // len(KINDS)
        table = f"{TABLES[number % len(TABLES)]}_{number // len(TABLES):02d}"
        template, stage, metrics = KINDS[position % len(KINDS)]
        names.append((template.format(table=table), stage, metrics, table))
    return names


def _task_status(rng: random.Random, run_status: RunStatus, position: int, size: int) -> TaskStatus:
    if run_status in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS):
        return TaskStatus.COMPLETED_WITH_ERRORS if rng.random() < 0.03 else TaskStatus.COMPLETED
    if run_status is RunStatus.FAILED:
        failed_at = size // 2
        return (
            TaskStatus.COMPLETED
            if position < failed_at
            else TaskStatus.FAILED
            if position == failed_at
            else TaskStatus.SKIPPED
        )
    return TaskStatus.COMPLETED if position < size // 3 else TaskStatus.CANCELED


COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": (
        "id",
        "account_id",
        "operation_id",
        "run_key",
        "job_name",
        "run_type",
        "trigger",
        "status",
        "message",
        "created_by",
        "created_at",
        "started_at",
        "completed_at",
        "updated_at",
    ),
    "tasks": (
        "id",
        "run_id",
        "position",
        "name",
        "name_lower",
        "initials",
        "stage",
        "metrics_type",
        "executor",
        "params",
        "table_name",
        "required",
        "reusable",
        "status",
        "ready_at",
        "attempt",
        "max_attempts",
        "worker_id",
        "started_at",
        "completed_at",
        "records_processed",
        "latency_ms_sum",
        "latency_count",
        "updated_at",
    ),
    "task_tables": ("id", "task_id", "run_id", "table_name", "table_name_lower", "record_count"),
    "task_messages": ("id", "task_id", "run_id", "level", "text", "text_lower", "created_at"),
}


class Filler:
    """Bulk inserts in batches of BATCH_ROWS, all in the one transaction of `conn`, ids given explicitly.

    SQLite: executemany of one INSERT through the SQLAlchemy connection (`exec_driver_sql`), with values
    already in the form runyard's column types store (naive UTC text times, JSON text, 0/1), so that
    SQLAlchemy's per-value bind processing does not dominate. PostgreSQL: COPY ... FROM STDIN on the same
    connection (psycopg adapts the values in C). Either way the rows are the ones runyard's own Core
    inserts would write.
    """

    def __init__(self, conn: Connection, rng: random.Random) -> None:
        self.conn = conn
        self.rng = rng
        self.postgres = conn.dialect.name == "postgresql"
        self.task_id = 0
        self.table_id = 0
        self.message_id = 0
        self.pending: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self._initials: dict[str, str] = {}
        self.true: Any = True if self.postgres else 1
        self.false: Any = False if self.postgres else 0

    def time(self, moment: datetime | None) -> Any:
        """A UTC datetime as the column stores it (SQLite: UtcDateTime's naive text with microseconds)."""
        if moment is None or self.postgres:
            return moment
        return f"{moment.replace(tzinfo=None).isoformat(' ', 'microseconds')}"

    def initials(self, name: str) -> str:
        found = self._initials.get(name)
        if found is None:
            found = self._initials[name] = initials(name)
        return found

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        rows = self.pending[table]
        rows.append(row)
        if len(rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        for table in COLUMNS:  # parents first: foreign keys
            rows = self.pending[table]
            if not rows:
                continue
            columns = COLUMNS[table]
            if self.postgres:
                cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.close()
            else:
                marks = ", ".join("?" for _ in columns)
                self.conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            self.counts[table] += len(rows)
            rows.clear()

    def add_run(self, values: dict[str, Any]) -> None:
        self.add(
            "runs",
            tuple(self.time(value) if isinstance(value, datetime) else value for value in values.values()),
        )

    def add_tasks(
        self,
        run_id: int,
        run_status: RunStatus,
        names: Sequence[tuple[str, str, str, str | None]],
        started: datetime,
        *,
        big: bool,
    ) -> None:
        rng = self.rng
        time_ = self.time
        for position, (name, stage, metrics, table) in enumerate(names):
            self.task_id += 1
            status = (
                _weighted(rng, BIG_RUN_TASK_STATUSES) if big else _task_status(rng, run_status, position, len(names))
            )
            began = started + timedelta(seconds=position * 2) if status is not TaskStatus.WAITING_TO_START else None
            ended = began + timedelta(seconds=rng.randint(1, 300)) if began and status.is_final else None
            records = rng.randint(0, 200_000) if ended else 0
            self.add(
                "tasks",
                (
                    self.task_id,
                    run_id,
                    position,
                    name,
                    fold_case(name),
                    self.initials(name),
                    stage,
                    metrics,
                    "sleep",
                    "{}",
                    table,
                    self.true,
                    self.false,
                    status.value,
                    time_(began),
                    1 if began else 0,
                    3,
                    "bench-host:1234" if began else None,
                    time_(began),
                    time_(ended),
                    records,
                    0.0,
                    0,
                    time_(ended or began or started),
                ),
            )
            if table is not None and (big or rng.random() < 0.25):
                self.table_id += 1
                self.add("task_tables", (self.table_id, self.task_id, run_id, table, fold_case(table), records))
            if rng.random() < (0.10 if big else 0.05):
                self.message_id += 1
                level = "warning" if status is not TaskStatus.COMPLETED else "info"
                text = rng.choice(MESSAGES).format(rows=records, table=table or "the warehouse")
                self.add(
                    "task_messages",
                    (self.message_id, self.task_id, run_id, level, text, fold_case(text), time_(ended or started)),
                )


def _count_messages(conn: Connection) -> None:
    """The message counts runyard keeps on runs and tasks (its add_message does it as it writes)."""
    for table, key in (("runs", "run_id"), ("tasks", "task_id")):
        conn.exec_driver_sql(
            f"UPDATE {table} SET message_count = counted.n FROM "
            f"(SELECT {key} AS owner, count(*) AS n FROM task_messages GROUP BY {key}) AS counted "
            f"WHERE {table}.id = counted.owner"
        )


def _fill_engine(url: str) -> sa.Engine:
    """An engine for the fill only: on SQLite, WAL and synchronous=OFF (runyard's own engines use NORMAL)."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def fill(url: str, run_count: int, task_count: int, big_run_tasks: int) -> Filled:
    """Migrate, then the admin, OPERATIONS operations, `run_count` runs and `task_count` tasks."""
    started = time.perf_counter()
    store = Store(url)
    migrate.upgrade(store)
    bootstrap_admin(store, ADMIN_PASSWORD)
    specs = [
        TaskGraphOperation.model_validate(
            {
                "configuration_type": "tasks",
                "configuration_id": f"hr-{table}",
                "account": "default",
                "tasks": [{"name": "Process", "executor": "sleep", "params": {"seconds": 0}}],
            }
        )
        for table in TABLES[:OPERATIONS]
    ]
    operation_ids = [deployed.operation_id for deployed in deploy(store, specs, BUILTIN)]
    with store.read() as conn:
        admin = conn.execute(sa.select(users.c.id, users.c.account_id).where(users.c.login == "admin")).one()
    store.dispose()

    rng = random.Random(SEED)
    big_run_tasks = min(big_run_tasks, task_count)
    normal = _normal_names()
    big_names = _big_names(big_run_tasks)
    others = max(run_count - 1, 1)
    per_run, extra = divmod(task_count - big_run_tasks, others)
    if per_run + 1 > len(normal):
        raise SystemExit(f"at most {len(normal)} tasks per ordinary run: use more runs or fewer tasks")
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(minutes=10 * run_count)
    engine = _fill_engine(url)
    with engine.begin() as conn:
        filler = Filler(conn, rng)
        for run_id in range(1, run_count + 1):
            big = run_id == run_count  # the newest run: still running, with the big task list
            created = first + timedelta(minutes=10 * run_id, seconds=rng.randint(0, 59))
            status = RunStatus.RUNNING if big else _weighted(rng, RUN_STATUSES)
            began = None if status is RunStatus.REJECTED else created + timedelta(seconds=rng.randint(0, 5))
            ended = None if big or began is None else began + timedelta(seconds=rng.randint(30, 5400))
            operation = operation_ids[(run_id * 7 + rng.randint(0, 2)) % len(operation_ids)]
            key = make_run_key(created, uuid.UUID(int=rng.getrandbits(128), version=4))
            filler.add_run(
                {
                    "id": run_id,
                    "account_id": admin.account_id,
                    "operation_id": operation,
                    "run_key": key,
                    "job_name": make_job_name(f"hr-{TABLES[operation_ids.index(operation)]}", key),
                    "run_type": RunType.INCREMENTAL.value if rng.random() < 0.8 else RunType.DESTRUCTIVE.value,
                    "trigger": Trigger.SCHEDULE.value if rng.random() < 0.7 else Trigger.API.value,
                    "status": status.value,
                    "message": "a required task failed" if status is RunStatus.FAILED else "",
                    "created_by": admin.id,
                    "created_at": created,
                    "started_at": began,
                    "completed_at": ended if status is not RunStatus.REJECTED else created,
                    "updated_at": ended or created,
                },
            )
            if big:
                filler.add_tasks(run_id, status, big_names, began or created, big=True)
            else:
                size = per_run + (1 if run_id <= extra else 0)
                offset = (run_id * 7) % len(normal)
                names = [normal[(offset + i) % len(normal)] for i in range(size)]
                filler.add_tasks(run_id, status, names, began or created, big=False)
        filler.flush()
        _count_messages(conn)
        if conn.dialect.name == "postgresql":
            for table in COLUMNS:
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # What autovacuum does after such a load: statistics, and the visibility map that lets a count(*)
            # read an index alone (a store that has lived a while has both for all but its newest rows).
            conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    window_start = first + timedelta(minutes=10 * run_count // 2)
    return Filled(
        account_id=int(admin.account_id),
        big_run_id=run_count,
        operation_ids=operation_ids,
        counts=filler.counts,
        seconds=time.perf_counter() - started,
        window=(window_start, window_start + timedelta(days=7)),
    )


# --- the server -------------------------------------------------------------------------------------------------


def serve_child(database_url: str, home: str, processes: int) -> None:
    """In the child process: the real app, as `runyard serve` runs it, on a port the OS picks (printed).

    With `processes` > 1, as `runyard serve` does with RUNYARD_HTTP_PROCESSES: that many processes accept on
    the socket (this one and processes - 1 started by runyard.serve).
    """
    from runyard.runtime import Runtime, configure_logging, open_store
    from runyard.serve import (
        http_server,
        listening_socket,
        start_http_processes,
        stop_http_processes,
        wait_until_ready,
    )

    configure_logging()
    settings = Settings(home=Path(home), database_url=database_url, secret_key=SIGNING_KEY, http_processes=processes)
    runtime = Runtime(settings, open_store(settings, upgrade=False))
    sock = listening_socket("127.0.0.1", 0)  # IPPROTO_TCP: see there (TCP_NODELAY)
    helpers = start_http_processes(settings, sock, processes - 1)
    wait_until_ready(helpers, STARTUP_SECONDS)  # measure only once every process accepts connections
    if not all(helper.ready.is_set() for helper in helpers):
        raise RuntimeError(f"the HTTP processes did not all start within {STARTUP_SECONDS} s")
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    try:
        http_server(runtime).run(sockets=[sock])
    finally:
        stop_http_processes(helpers)
        runtime.close()


@dataclass
class Served:
    base_url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far (Linux /proc)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        total = 0
        for pid in [self.pid, *map(int, children)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(database_url: str, home: Path, processes: int = 1) -> Iterator[Served]:
    """The app in a child process. The child is stopped (SIGTERM) when the block ends."""
    log = (home / "server.log").open("w")
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-child", database_url, str(home), str(processes)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server did not start: {(home / 'server.log').read_text()[-2000:]}")
        base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz")
            time.sleep(0.1)
        yield Served(base_url, child.pid)
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        log.close()


# --- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Query:
    key: str
    label: str
    path: str
    params: dict[str, Any]
    sql: Callable[[Connection], object] | None = None  # the same query without HTTP, or None


@dataclass
class Measured:
    query: Query
    latency_ms: list[float] = field(default_factory=list)
    serial_ms: list[float] = field(default_factory=list)
    throughput: float = math.nan
    sql_ms: float = math.nan
    statements_ms: list[tuple[str, float]] = field(default_factory=list)
    total: int | None = None
    items: int | None = None
    server_cpu_ms: float = math.nan  # server CPU time per request during the latency run
    load_average: tuple[float, float] = (math.nan, math.nan)  # 1-minute load average before and after


def queries(filled: Filled) -> list[Query]:
    account = filled.account_id
    run_id = filled.big_run_id
    start, end = (moment.isoformat() for moment in filled.window)
    operation = filled.operation_ids[6]

    def runs_query(**kw: Any) -> Callable[[Connection], object]:
        return lambda conn: list_runs(conn, RunQuery(account_id=account, **kw))

    def tasks_query(**kw: Any) -> Callable[[Connection], object]:
        return lambda conn: list_tasks(conn, TaskQuery(run_id=run_id, account_id=account, **kw))

    listed: list[Query] = [
        Query(
            "runs_failed",
            "runs: status=failed, sort=started_at desc, page 3",
            "/api/v1/runs",
            {"status": "failed", "sort": "started_at", "order": "desc", "page": 3, "page_size": 50},
            runs_query(status=RunStatus.FAILED, sort="started_at", order="desc", page=3, page_size=50),
        ),
        Query(
            "runs_default",
            "runs: no filter, sort=id desc, page 1",
            "/api/v1/runs",
            {"page_size": 50},
            runs_query(page_size=50),
        ),
        Query(
            "runs_operation",
            "runs: operation + type=incremental, sort=duration asc, page 2",
            "/api/v1/runs",
            {"operation": operation, "type": "incremental", "sort": "duration", "order": "asc", "page": 2},
            runs_query(operation_id=operation, run_type=RunType.INCREMENTAL, sort="duration", order="asc", page=2),
        ),
        Query(
            "runs_window",
            "runs: started in one week, sort=operation asc, page 2",
            "/api/v1/runs",
            {"started_from": start, "started_to": end, "sort": "operation", "order": "asc", "page": 2},
            runs_query(
                started_from=filled.window[0], started_to=filled.window[1], sort="operation", order="asc", page=2
            ),
        ),
        Query(
            "runs_messages",
            "runs: status=completed, sort=messages desc, page 1",
            "/api/v1/runs",
            {"status": "completed", "sort": "messages", "order": "desc"},
            runs_query(status=RunStatus.COMPLETED, sort="messages", order="desc"),
        ),
    ]
    for search in ("mc", "pto", "waiting", "departm"):
        listed.append(
            Query(
                f"tasks_{search}",
                f"tasks of the {filled.counts.get('big_run_tasks', 0):,}-task run: search={search}",
                f"/api/v1/runs/{run_id}/tasks",
                {"search": search, "page_size": 50},
                tasks_query(search=search, page_size=50),
            )
        )
    listed.append(
        Query(
            "tasks_page",
            f"tasks of the {filled.counts.get('big_run_tasks', 0):,}-task run: no search, page 40",
            f"/api/v1/runs/{run_id}/tasks",
            {"page": 40, "page_size": 50},
            tasks_query(page=40, page_size=50),
        )
    )
    listed += [
        Query("run_one", "one run: GET /api/v1/runs/{id} (floor with auth)", f"/api/v1/runs/{run_id}", {}),
        Query("healthz", "GET /healthz (no auth; SELECT 1)", "/healthz", {}),
    ]
    return listed


def _hammer(base_url: str, url: str, headers: dict[str, str], clients: int, each: int) -> tuple[list[float], float]:
    """`clients` threads, each with its own httpx client, sending `each` requests back to back."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            http.get("/healthz")  # connect before the clock starts
            barrier.wait()
            for _ in range(each):
                began = time.perf_counter()
                response = http.get(url)
                latencies[index].append((time.perf_counter() - began) * 1000)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests to {url}, e.g. {errors[0]}")
    return [ms for per_client in latencies for ms in per_client], clients * each / elapsed


class StatementTimer:
    """Times every statement an engine runs (from cursor execute to its rows fetched: approximately)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.times: list[tuple[str, float]] = []
        self._started: float = 0.0
        self.enabled = False

    def __enter__(self) -> StatementTimer:
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)

    def _before(self, *args: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        if self.enabled:
            self.times.append((" ".join(statement.split())[:60], (time.perf_counter() - self._started) * 1000))


def _raw_sql(store: Store, query: Query, repeats: int) -> tuple[float, list[tuple[str, float]], int | None, int]:
    """Median ms of the listing call on one open connection; per-statement medians; total; items."""
    assert query.sql is not None
    engine: sa.Engine = store._reader  # the engine the app reads with (SQLite: the non-IMMEDIATE one)
    samples: list[float] = []
    per_statement: list[list[tuple[str, float]]] = []
    page: Any = None
    with StatementTimer(engine) as timer, store.read() as conn:
        for index in range(repeats + 2):
            timer.times = []
            timer.enabled = index >= 2  # two warm-up calls
            began = time.perf_counter()
            page = query.sql(conn)
            elapsed = (time.perf_counter() - began) * 1000
            if index >= 2:
                samples.append(elapsed)
                per_statement.append(list(timer.times))
    statements = [
        (per_statement[0][i][0], statistics.median(sample[i][1] for sample in per_statement))
        for i in range(len(per_statement[0]))
    ]
    return statistics.median(samples), statements, getattr(page, "total", None), len(getattr(page, "items", ()))


def measure_backend(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"[{backend}] filling {args.runs:,} runs and {args.tasks:,} tasks...", file=sys.stderr, flush=True)
    filled = fill(url, args.runs, args.tasks, args.big_run_tasks)
    filled.counts["big_run_tasks"] = min(args.big_run_tasks, args.tasks)
    print(f"[{backend}] filled in {filled.seconds:.0f} s: {filled.counts}", file=sys.stderr, flush=True)
    measured: list[Measured] = []
    store = Store(url)
    processes = args.http_processes or Settings(database_url=url).http_processes  # the default for this store
    with (
        tempfile.TemporaryDirectory(prefix="runyard-bench-home-") as home,
        served(url, Path(home), processes) as server,
    ):
        base_url = server.base_url
        login = httpx.post(
            f"{base_url}/api/v1/auth/token", json={"login": "admin", "password": ADMIN_PASSWORD}, timeout=30
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for query in queries(filled):
            target = f"{query.path}?{urlencode(query.params)}" if query.params else query.path
            result = Measured(query)
            load_before = os.getloadavg()[0]
            _hammer(base_url, target, headers, 2, 5)  # warm-up: caches, connections
            result.serial_ms, _ = _hammer(base_url, target, headers, 1, args.serial_requests)
            cpu_before = server.cpu_seconds()
            result.latency_ms, _ = _hammer(base_url, target, headers, args.clients, args.requests)
            result.server_cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / len(result.latency_ms)
            _, result.throughput = _hammer(base_url, target, headers, args.throughput_clients, args.throughput_requests)
            result.load_average = (load_before, os.getloadavg()[0])
            if query.sql is not None:
                result.sql_ms, result.statements_ms, result.total, result.items = _raw_sql(
                    store, query, args.sql_repeats
                )
            measured.append(result)
            print(
                f"[{backend}] {query.label}: p50 {percentile(result.latency_ms, 50):.1f} "
                f"p99 {percentile(result.latency_ms, 99):.1f} ms, {result.throughput:.0f} req/s, "
                f"SQL {result.sql_ms:.1f} ms, server CPU {result.server_cpu_ms:.1f} ms/request, "
                f"load {result.load_average[0]:.1f}-{result.load_average[1]:.1f}",
                file=sys.stderr,
                flush=True,
            )
    store.dispose()
    return {
        "backend": backend,
        "fill_seconds": round(filled.seconds, 1),
        "counts": filled.counts,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "throughput_clients": args.throughput_clients,
        "http_processes": processes,
        "queries": [
            {
                "key": m.query.key,
                "label": m.query.label,
                "request": f"GET {m.query.path}" + (f"?{urlencode(m.query.params)}" if m.query.params else ""),
                "serial_p50_ms": round(percentile(m.serial_ms, 50), 2),
                "p50_ms": round(percentile(m.latency_ms, 50), 2),
                "p90_ms": round(percentile(m.latency_ms, 90), 2),
                "p99_ms": round(percentile(m.latency_ms, 99), 2),
                "max_ms": round(max(m.latency_ms), 2),
                "requests_per_second": round(m.throughput, 1),
                "sql_ms": None if math.isnan(m.sql_ms) else round(m.sql_ms, 2),
                "sql_statements_ms": [(text, round(ms, 2)) for text, ms in m.statements_ms],
                "total": m.total,
                "items": m.items,
                "server_cpu_ms_per_request": round(m.server_cpu_ms, 2),
                "load_average_1min": [round(value, 2) for value in m.load_average],
                "latency_ms": [round(ms, 3) for ms in m.latency_ms],
            }
            for m in measured
        ],
    }


# --- the databases, the machine, the report ---------------------------------------------------------------------


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"| Query ({result['backend']}) | 1 client p50 ms | Clients | p50 ms | p90 ms | p99 ms "
        f"| req/s ({result['throughput_clients']} clients) | Raw SQL ms | Server CPU ms/req | Load | Total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in result["queries"]:
        sql = "—" if q["sql_ms"] is None else f"{q['sql_ms']:.1f}"
        total = "" if q["total"] is None else f"{q['total']:,}"
        load = " to ".join(f"{value:.1f}" for value in q["load_average_1min"])
        lines.append(
            f"| {q['label']} | {q['serial_p50_ms']:.1f} | {result['clients']} | {q['p50_ms']:.1f} "
            f"| {q['p90_ms']:.1f} | {q['p99_ms']:.1f} | {q['requests_per_second']:.0f} | {sql} "
            f"| {q['server_cpu_ms_per_request']:.1f} | {load} | {total} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve-child"]:
        serve_child(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store (default 100,000)")
    parser.add_argument("--tasks", type=int, default=2_000_000, help="tasks in the store (default 2,000,000)")
    parser.add_argument("--big-run-tasks", type=int, default=5_000, help="tasks of the searched run (default 5,000)")
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get(PG_ENV), help=f"default: ${PG_ENV}")
    parser.add_argument("--no-sqlite", action="store_true", help="measure PostgreSQL only")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write every sample and summary here")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for latency (default 4)")
    parser.add_argument("--requests", type=int, default=100, help="requests per latency client (default 100)")
    parser.add_argument("--serial-requests", type=int, default=50, help="requests of one client alone (p50)")
    parser.add_argument("--throughput-clients", type=int, default=20, help="concurrent clients for req/s")
    parser.add_argument("--throughput-requests", type=int, default=25, help="requests per throughput client")
    parser.add_argument("--sql-repeats", type=int, default=20, help="direct listing calls timed per query")
    parser.add_argument(
        "--http-processes",
        type=int,
        default=None,
        help="processes serving HTTP, as RUNYARD_HTTP_PROCESSES (default: its default for each store, see Settings)",
    )
    args = parser.parse_args(argv)

    started_at = datetime.now(UTC)
    backends: list[tuple[str, Callable[[], Any]]] = []
    if not args.no_sqlite:
        backends.append(("sqlite", sqlite_database))
    if args.postgres:
        backends.append(("postgresql", lambda: postgres_database(args.postgres)))
    results = []
    for backend, database in backends:
        with database() as url:
            results.append(measure_backend(backend, url, args))
    elapsed = (datetime.now(UTC) - started_at).total_seconds()

    for result in results:
        print(
            f"\n{result['backend']}: filled in {result['fill_seconds']} s ({result['counts']}); "
            f"HTTP served by {result['http_processes']} process(es)\n"
        )
        print(markdown_table(result))
        worst = max(result["queries"], key=lambda q: q["p99_ms"])
        verdict = "within" if worst["p99_ms"] <= TARGET_P99_MS else "over"
        print(f"\nworst p99: {worst['p99_ms']:.1f} ms ({worst['label']}), {verdict} the {TARGET_P99_MS:.0f} ms target")
    info = machine(args.postgres)
    print(f"\n{started_at:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s, code {code_version()}; {json.dumps(info)}")
    print(f"command: {command_line('bench/api_latency.py', argv, args.postgres)}")
    if args.json:
        report = {
            "date": started_at.isoformat(timespec="seconds"),
            "seconds": round(elapsed, 1),
            "code": code_version(),
            "command": command_line("bench/api_latency.py", argv, args.postgres),
            "machine": info,
            "target_p99_ms": TARGET_P99_MS,
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
