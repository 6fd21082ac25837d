"""Issue 15's proof of scale-out: many processes on PostgreSQL and S3, some SIGKILLed, and every run exactly once.

A PostgreSQL store and a PostgreSQL warehouse (two databases of the test server), staging on moto's S3 server,
3 `runyard worker` and 2 `runyard serve` processes. Ten api-to-table operations each read the demo source's badge
swipes incrementally (no primary key: each run appends the swipes after its watermark); ten drivers launch them
through the two servers' REST API, ten runs each, one after the other. Meanwhile 2 workers and then the
scheduler's leader are SIGKILLed at moments drawn at random from the runs' progress, and started again. A scheduled
operation owes a tick at once and one more each minute.

What must hold: every run Completed; in each operation's table every swipe once, none missing (the ids are
distinct and contiguous from the feed's first); the watermark the table's last swipe; no run left active; no
schedule tick fired twice; the store's invariants (tests/reliability/invariants.py).
"""

from __future__ import annotations

import random
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.domain.statuses import RUN_ACTIVE, RunStatus
from runyard.operations.loader import load_text
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.store.database import Store
from runyard.store.tables import operation_schedules, operations, runs
from runyard.warehouse.provider import open_warehouses
from tests.integration.cli_helpers import free_port
from tests.reliability.db import run_status
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import WorkerProcess, Workers, wait_until
from tests.s3_server import KEY, REGION, SECRET, s3_server

pytestmark = pytest.mark.slow

OPERATIONS = 10
RUNS_PER_OPERATION = 10
WORKERS = 3
SERVERS = 2
PASSWORD = "scale-out-password"
BUCKET = "runyard-staging"
API = "/api/v1"
LEADING = "scheduler: leading"
TICK_FIRED = re.compile(r"schedule: scale-every-minute tick (.+?) (?:launched run|met active run \d+: run) (\d+)")
START_TIMEOUT = 60.0  # five processes importing runyard at once on a busy 2-core machine
RUN_TIMEOUT = 120.0  # a run whose worker was killed waits out a lease, then a restarted process's start
SEED = 15


@dataclass
class Cluster:
    """The processes of the test, started and restarted through one `Workers` pool (which kills them all at the end)."""

    pool: Workers
    env: dict[str, str]
    ports: list[int]
    workers: list[WorkerProcess] = field(default_factory=list)
    servers: list[WorkerProcess] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_worker(self) -> WorkerProcess:
        return self.pool.start(allowed_hosts="127.0.0.1", extra_env=self.env)

    def start_server(self, port: int) -> WorkerProcess:
        return self.pool.start(allowed_hosts="127.0.0.1", extra_env=self.env, command=("serve", "--port", str(port)))

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def kill_worker(self, index: int) -> None:
        with self.lock:
            victim = self.workers[index]
            assert victim.kill() == -signal.SIGKILL, victim.log()
            self.kills.append(f"worker {victim.worker_id}")
            self.workers[index] = self.start_worker()

    def kill_leader(self) -> None:
        """SIGKILL whichever process leads the scheduler now, and start it again (a server on its port)."""
        with self.lock:
            for index, process in enumerate(self.workers):
                if process.alive() and LEADING in process.log():
                    assert process.kill() == -signal.SIGKILL, process.log()
                    self.kills.append(f"leader {process.worker_id}")
                    self.workers[index] = self.start_worker()
                    return
            for index, process in enumerate(self.servers):
                if process.alive() and LEADING in process.log():
                    assert process.kill() == -signal.SIGKILL, process.log()
                    self.kills.append(f"leader {process.worker_id} (a server)")
                    self.servers[index] = self.start_server(self.ports[index])
                    return
        raise AssertionError("no live process leads the scheduler")

    def server_logs(self) -> str:
        return "\n".join(f"--- {process.worker_id}\n{process.log()[-3000:]}" for process in self.servers)

    def logs(self) -> str:
        return "\n".join(f"--- {process.worker_id}\n{process.log()[-3000:]}" for process in self.pool.started)


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    bootstrap_admin(store, PASSWORD)
    yield store
    store.dispose()


def swipes_operation(number: int, base_url: str) -> str:
    return f"""\
configuration_type: api-to-table
configuration_id: scale-{number}
base_url: "{base_url}"
endpoints:
  - name: swipes_{number}
    path: /badge_swipes
    records: data
    pagination: {{style: cursor, limit: 200}}
    incremental: {{cursor_field: swiped_at, param: updated_since}}
"""


EVERY_MINUTE = """\
configuration_type: tasks
configuration_id: scale-every-minute
schedule: "* * * * *"
tasks:
  - {name: "Process [ticks]", executor: noop}
"""


def owe_a_tick_now(store: Store, operation_id: int) -> None:
    """Date the schedule's last change two minutes back, so that a tick is owed as soon as a process leads."""
    with store.write() as conn:
        conn.execute(
            operations.update()
            .where(operations.c.id == operation_id)
            .values(updated_at=store.now(conn) - timedelta(minutes=2))
        )


def manual_runs(store: Store, operation_id: int) -> list[int]:
    with store.read() as conn:
        return list(
            conn.execute(
                sa.select(runs.c.id).where(runs.c.operation_id == operation_id, runs.c.trigger != "schedule")
            ).scalars()
        )


class Driver(threading.Thread):
    """Launches one operation's runs through the servers, one after the other, each once the last has ended."""

    def __init__(self, cluster: Cluster, store: Store, operation_id: int, token: str, number: int) -> None:
        super().__init__(name=f"driver-{number}", daemon=True)
        self.cluster = cluster
        self.store = store
        self.operation_id = operation_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.number = number
        self.statuses: dict[int, RunStatus] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for turn in range(RUNS_PER_OPERATION):
                run_id = self.launch(turn)
                self.statuses[run_id] = wait_until(
                    lambda run_id=run_id: (status := run_status(self.store, run_id)).is_final and status,  # type: ignore[misc]
                    timeout=RUN_TIMEOUT,
                    what=f"run {run_id} of scale-{self.number} to end",
                )
        except BaseException as error:
            self.error = error

    def launch(self, turn: int) -> int:
        """The new run's id. A server killed while answering: the launch is looked up, and made through the other
        server only if it did not happen (a lost answer never makes two runs)."""
        for attempt in range(2 * SERVERS):
            url = self.cluster.urls[(self.number + turn + attempt) % SERVERS]
            before = set(manual_runs(self.store, self.operation_id))
            try:
                answer = httpx.post(
                    f"{url}{API}/operations/{self.operation_id}/runs",
                    json={"type": "incremental"},
                    headers=self.headers,
                    timeout=30,
                )
            except httpx.TransportError:
                made = set(manual_runs(self.store, self.operation_id)) - before
                if made:
                    (run_id,) = made
                    return run_id
                self.cluster_settles(url)
                continue
            assert answer.status_code == 202, f"{url}: {answer.status_code} {answer.text}"
            return int(answer.json()["id"])
        raise AssertionError(f"no server accepted run {turn + 1} of scale-{self.number}")

    def cluster_settles(self, url: str) -> None:
        """Wait for the server at `url` to answer again (it was killed and is starting again)."""

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(answers, timeout=START_TIMEOUT, what=f"{url} to answer again")
        except AssertionError as error:
            raise AssertionError(f"{error}; the servers' logs:\n{self.cluster.server_logs()}") from None


def completed_runs(drivers: list[Driver]) -> int:
    return sum(status is RunStatus.COMPLETED for driver in drivers for status in list(driver.statuses.values()))


def test_three_workers_and_two_servers_run_a_hundred_runs_exactly_once_while_killed(
    store: Store, pg_warehouse_url: str, tmp_path: Path
) -> None:
    with s3_server() as s3, DemoSourceServer(DemoSourceConfig(employees=10, feed_interval_ms=20)) as source:
        s3.create_bucket(BUCKET)
        deployed = deploy(
            store, load_text("\n---\n".join(swipes_operation(n, source.base_url) for n in range(OPERATIONS)))
        )
        (scheduled,) = deploy(store, load_text(EVERY_MINUTE))
        owe_a_tick_now(store, scheduled.operation_id)
        env = {
            "RUNYARD_WAREHOUSE_URL": pg_warehouse_url,
            "RUNYARD_STAGING_URL": f"s3://{BUCKET}/staging",
            "RUNYARD_WORKER_CONCURRENCY": "2",
            "AWS_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
        }
        home = tmp_path / "home"
        home.mkdir()
        pool = Workers(store.url.render_as_string(hide_password=False), home)
        cluster = Cluster(pool, env, [free_port() for _ in range(SERVERS)])
        drivers: list[Driver] = []
        try:
            cluster.servers = [cluster.start_server(port) for port in cluster.ports]
            cluster.workers = [cluster.start_worker() for _ in range(WORKERS)]
            token = login(cluster)
            drivers = [Driver(cluster, store, each.operation_id, token, number) for number, each in enumerate(deployed)]
            for driver in drivers:
                driver.start()

            total = OPERATIONS * RUNS_PER_OPERATION
            chaos = random.Random(SEED)
            moments = sorted(chaos.sample(range(total // 10, total * 7 // 10), 3))
            kills = [lambda: cluster.kill_worker(0), lambda: cluster.kill_worker(1), cluster.kill_leader]
            for moment, kill in zip(moments, kills, strict=True):
                wait_until(
                    lambda moment=moment: completed_runs(drivers) >= moment or any(not d.is_alive() for d in drivers),  # type: ignore[misc]
                    timeout=RUN_TIMEOUT * 3,
                    what=f"{moment} runs to complete",
                )
                kill()
            for driver in drivers:
                driver.join(RUN_TIMEOUT * RUNS_PER_OPERATION)
            failures = [f"scale-{d.number}: {d.error}" for d in drivers if d.error is not None or d.is_alive()]
            assert not failures, "\n".join(failures) + "\n" + cluster.logs()
            assert len(cluster.kills) == 3, cluster.kills

            statuses = [status for driver in drivers for status in driver.statuses.values()]
            assert len(statuses) == total
            assert statuses == [RunStatus.COMPLETED] * total, cluster.logs()
            wait_until(lambda: not active_runs(store), timeout=RUN_TIMEOUT, what="no run to be active")
        finally:
            pool.close()

    assert not active_runs(store)
    assert_every_swipe_loaded_once(pg_warehouse_url, [each.operation_id for each in deployed])
    assert_no_tick_fired_twice(store, scheduled.operation_id, [process.log() for process in pool.started])
    check_invariants(store)


def login(cluster: Cluster) -> str:
    def token() -> str | None:
        for process in cluster.servers:
            process.expect_alive("the servers to start")
        try:
            answer = httpx.post(
                f"{cluster.urls[0]}{API}/auth/token", json={"login": "admin", "password": PASSWORD}, timeout=5
            )
        except httpx.TransportError:
            return None
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    return wait_until(token, timeout=START_TIMEOUT, what="the first server to sign the administrator in")


def active_runs(store: Store) -> list[int]:
    with store.read() as conn:
        return list(
            conn.execute(sa.select(runs.c.id).where(runs.c.status.in_([s.value for s in RUN_ACTIVE]))).scalars()
        )


def assert_every_swipe_loaded_once(pg_warehouse_url: str, operation_ids: list[int]) -> None:
    provider = open_warehouses(pg_warehouse_url)
    try:
        warehouse = provider.for_account("default")
        firsts = set()
        for number, operation_id in enumerate(operation_ids):
            table = f"swipes_{number}"
            ((rows, distinct, first, last),) = warehouse.query(
                f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {table}"
            )
            assert rows == distinct, f"{table}: {rows} rows but {distinct} swipes: a run was loaded twice"
            assert isinstance(first, int)
            assert isinstance(last, int)
            assert last - first + 1 == rows, f"{table}: swipes {first}..{last} but {rows} rows: a load was lost"
            ((last_swiped,),) = warehouse.query(f"SELECT swiped_at FROM {table} WHERE id = ?", (last,))
            watermark = warehouse.high_watermark(operation_id, table)
            assert watermark is not None, f"{table}: no high watermark"
            assert datetime.fromisoformat(watermark) == last_swiped, f"{table}: the watermark is not its last swipe"
            firsts.add(first)
        assert len(firsts) == 1, f"the first run of each operation starts at the feed's first swipe: {firsts}"
    finally:
        provider.close_all()


def assert_no_tick_fired_twice(store: Store, operation_id: int, logs: list[str]) -> None:
    """Each tick a process logs firing (launched a run, or met an active one) is fired once, and the store holds one
    run per minute from the first tick to the last handled (the leader fires the latest tick it owes)."""
    fired = [(tick, int(run)) for log in logs for tick, run in TICK_FIRED.findall(log)]
    ticks = [tick for tick, _ in fired]
    assert ticks, "the leader fired no tick"
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {sorted(fired)}"
    with store.read() as conn:
        scheduled = list(
            conn.execute(
                sa.select(runs.c.id, runs.c.created_at)
                .where(runs.c.operation_id == operation_id, runs.c.trigger == "schedule")
                .order_by(runs.c.id)
            )
        )
        last_tick = conn.execute(
            sa.select(operation_schedules.c.last_tick_at).where(operation_schedules.c.operation_id == operation_id)
        ).scalar_one()
    assert {run_id for _, run_id in fired} <= {row.id for row in scheduled}
    first_tick = min(datetime.strptime(tick, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC) for tick in ticks)
    minutes = int((last_tick - first_tick) / timedelta(minutes=1))
    assert len(scheduled) == minutes + 1, f"{len(scheduled)} scheduled runs for ticks {first_tick}..{last_tick}"
