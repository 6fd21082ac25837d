"""`runyard serve` and `runyard worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn
from rich.console import Console
from starlette.types import ASGIApp

from runyard.app import create_app
from runyard.demo import demo_specs, launched_by_workflows
from runyard.demo.landing import drop_demo_files
from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer
from runyard.domain.statuses import RunStatus, RunType, Trigger
from runyard.errors import RunRejected, RunyardError
from runyard.forwarding import ForwardingSocket, ForwardToWarehouse
from runyard.http_process import ParentWatch, serve_http
from runyard.operations.registry import operation_types
from runyard.runtime import Runtime, configure_logging, engine_resources, open_store, tuned_gc
from runyard.services.accounts import account_id, bootstrap_admin
from runyard.services.exports import parse_request
from runyard.services.listing import RunQuery, list_runs
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.settings import Settings

log = logging.getLogger("runyard.serve")
DEMO_EXPORT_AFTER = "demo-hr"  # its first run loads the employees the demo's bi-view reads
DEMO_EXPORT_VIEW = "EMPLOYEES_V"
DEMO_EXPORT_WAIT_SECONDS = 180.0
# The demo's live stream runs until canceled. It is launched last, once demo-hr's first run has ended and launched
# the workflow's target, so that the demo's batch runs keep the first numbers.
DEMO_STREAM = "demo-badge-stream"
DEMO_STREAM_WAIT_SECONDS = 30.0
# The demo's failing check, launched just before the stream (so the runs are 1 demo-hr-sleep, 2 demo-hr,
# 3 demo-stores-archive, 4 demo-hr-summaries_DEV, 5 demo-quality-check, 6 demo-badge-stream): its run Fails and the
# leading scheduler raises a "Failed run" alert within RUNYARD_ALERT_SECONDS, the demo's first alert.
DEMO_FAILING = "demo-quality-check"
SHUTDOWN_GRACE_SECONDS = 10.0
SIGNAL_POLL_SECONDS = 0.1  # how often `runyard worker`'s main thread looks for a stop signal
HTTP_PROCESS_STARTUP_SECONDS = 30.0


def serve(settings: Settings, *, host: str, port: int, demo: bool, console: Console) -> None:
    configure_logging()
    sock = listening_socket(host, port)  # first: a port in use fails before anything is created or printed
    store = open_store(settings)
    settings.signing_key()  # fail now, not at the first login, if the key is unusable
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    boot = bootstrap_admin(store, admin_password)
    demo_source = _start_demo_source(port + 1) if demo else None
    extra_hosts = ("127.0.0.1",) if demo_source else ()
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=extra_hosts))
    if demo_source is not None:
        _deploy_demo(runtime, demo_source.base_url)
    worker = runtime.worker("serve")
    scheduler = runtime.scheduler()
    notifier = runtime.notifier()
    server = http_server(runtime)
    if isinstance(server, _Server):
        server.hurry = worker.hurry  # a second SIGTERM or SIGINT gives the running tasks back at once
    forwarding = ForwardingSocket() if settings.http_processes > 1 else None
    helpers = start_http_processes(
        settings, sock, settings.http_processes - 1, forward_to=forwarding.path if forwarding else None
    )
    if isinstance(server, _Server):
        server.on_first_signal = partial(ask_to_stop, helpers)
    listener = runtime.work_listener()  # wakes the worker when the other processes make work
    if listener is not None:
        listener.start()
    worker.start()
    scheduler.start()
    notifier.start()
    # This process answers at once; the others share the load once they have imported runyard (seconds each on
    # a busy machine), so that a restart is never slower than with one process.
    threading.Thread(target=wait_until_ready, args=(helpers,), name="http-processes-ready", daemon=True).start()
    console.print(f"runyard is running at http://{host}:{port}  (store: {store.backend})")
    if boot.generated_password:
        console.print(f"administrator login: {boot.login}  password: {boot.generated_password}  (shown once)")
    elif boot.created:
        console.print(f"administrator login: {boot.login}  (password from RUNYARD_ADMIN_PASSWORD)")
    else:
        console.print(f"administrator login: {boot.login}  (password set when this store was created)")
    if demo_source is not None:
        console.print(f"demo HR API (the demo operations' source) at {demo_source.base_url}")
    try:
        with tuned_gc():
            server.run(sockets=[sock] if forwarding is None else [sock, forwarding.sock])
    finally:
        stop_http_processes(helpers)
        if forwarding is not None:
            forwarding.close()
        log.info(
            "stopping: finishing running tasks (up to %.0f s; a second signal gives them back at once)",
            SHUTDOWN_GRACE_SECONDS,
        )
        worker.stop(SHUTDOWN_GRACE_SECONDS)
        if listener is not None:
            listener.stop()
        scheduler.stop()
        notifier.stop()
        runtime.close()
        if demo_source is not None:
            demo_source.stop()


# --- more processes answering HTTP (RUNYARD_HTTP_PROCESSES) ---------------------------------------------------------
#
# One Python process answers one request at a time (the GIL): with several clients, requests queue. With
# http_processes = N, `runyard serve` binds the socket itself and N - 1 more processes accept on it, each
# with its own app and connections to the store. Only the first runs the workers and the scheduler: the
# others' launches and retries wake them through runyard.services.work_signal (NOTIFY on PostgreSQL, the wake
# sockets under <database folder>/run/ on SQLite), not through the in-process wakeup.
# What an app keeps in memory is per process: the `recordsProcessedSinceLastCheck` of the
# etlworks API counts from the last check the same process answered.


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), for several processes to accept on.

    IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the listening socket
    says it is TCP, and without it every keep-alive response waits ~40 ms (Nagle's algorithm, delayed ACKs).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


@dataclass
class HttpProcess:
    """A process answering HTTP on the shared socket; `ready` is set once it accepts connections."""

    process: BaseProcess
    ready: Event


def start_http_processes(
    settings: Settings, sock: socket.socket, count: int, *, forward_to: str | None = None
) -> list[HttpProcess]:
    """`count` processes answering HTTP on `sock` (started fresh: nothing of this process's state is copied); the
    requests that read the warehouse they pass to the Unix socket `forward_to` (runyard.forwarding)."""
    context = multiprocessing.get_context("spawn")
    started: list[HttpProcess] = []
    for number in range(count):
        ready = context.Event()
        process = context.Process(
            target=serve_http,
            args=(settings, sock, os.getpid(), ready, forward_to),
            name=f"runyard-http-{number + 2}",
            daemon=True,
        )
        process.start()
        started.append(HttpProcess(process, ready))
    return started


def wait_until_ready(started: list[HttpProcess], timeout: float = HTTP_PROCESS_STARTUP_SECONDS) -> None:
    """Wait until every process accepts connections; a process that does not within `timeout` is logged.

    Polls `is_set()` instead of `Event.wait()`: a process waiting on a multiprocessing Event is counted as a
    sleeper, and if it is killed while waiting, the `set()` of the other side blocks for ever (and with it the
    thread that watches for this process's death).
    """
    deadline = time.monotonic() + timeout
    waiting = list(started)
    while waiting and time.monotonic() < deadline:
        waiting = [each for each in waiting if not each.ready.is_set() and each.process.is_alive()]
        time.sleep(0.05)
    for each in waiting:
        log.warning("%s did not start answering within %.0f s", each.process.name, timeout)


def ask_to_stop(started: list[HttpProcess]) -> None:
    """SIGTERM to each process still running: uvicorn finishes its requests in flight (at most the grace). Only
    system calls, so a signal handler may call it."""
    for each in started:
        if each.process.is_alive():
            each.process.terminate()


def stop_http_processes(started: list[HttpProcess]) -> None:
    """Ask each process to stop (if it was not asked already), then make sure it did."""
    ask_to_stop(started)
    for each in started:
        each.process.join(SHUTDOWN_GRACE_SECONDS)
        if each.process.is_alive():
            each.process.kill()
            each.process.join(SHUTDOWN_GRACE_SECONDS)


def serve_http_process(
    settings: Settings, sock: socket.socket, watch: ParentWatch, ready: Event, forward_to: str | None = None
) -> None:
    """In a process of its own (runyard.http_process): the API and UI on `sock`, until SIGTERM or SIGINT, or until
    `runyard serve` is gone (`watch`)."""
    configure_logging()
    runtime = Runtime(settings, open_store(settings, upgrade=False))
    server = http_server(runtime, forward_to=forward_to)

    def parent_gone() -> None:
        log.warning("the serving process %d is gone: stopping", watch.parent)
        server.should_exit = True

    watch.stop = parent_gone

    def announce_ready() -> None:
        while not server.should_exit and not ready.is_set():
            if server.started:
                ready.set()
            time.sleep(0.1)

    threading.Thread(target=announce_ready, name="announce-ready", daemon=True).start()
    try:
        with tuned_gc():
            server.run(sockets=[sock])
    finally:
        runtime.close()


def http_server(runtime: Runtime, *, forward_to: str | None = None) -> uvicorn.Server:
    """The API and UI of `runtime`, for `.run(sockets=[a listening socket])`; runyard logs its own access lines.

    The h11 parser, not httptools: httptools drops the body of a request that asks to upgrade to HTTP/2
    (`curl --http2` over http:// sends `Upgrade: h2c`), so spec 003's curl commands would arrive empty
    (uvicorn#2722, httptools#124). h11 answers such a request in HTTP/1.1, its body read.
    """
    app: ASGIApp = create_app(runtime)
    if forward_to is not None:  # a process without the warehouse: its readers go to the one that holds it
        app = ForwardToWarehouse(app, forward_to)
    # proxy_headers off: uvicorn would otherwise take the client address from X-Forwarded-For of any loopback peer.
    # Sign-in limits count the socket peer, or X-Forwarded-For only when RUNYARD_TRUST_FORWARDED_FOR says so.
    config = uvicorn.Config(app, log_level="warning", access_log=False, http="h11", proxy_headers=False)
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn, stopping the way runyard stops: on purpose, exit 0 after cleaning up, never a traceback.

    - uvicorn re-raises the signal that stopped it; runyard does not.
    - The first SIGTERM or SIGINT: uvicorn stops accepting and waits for the requests in flight, here at most
      SHUTDOWN_GRACE_SECONDS: then the clients still connected are disconnected (their requests see the client
      gone), where uvicorn would wait for them without end (a client that never finishes sending its request).
    - A second SIGTERM or SIGINT, while uvicorn stops or later during the worker's grace: those clients are
      disconnected at once, and `hurry` (the worker's) gives its running tasks back at once. The handlers stay this
      server's after `run` returns, instead of the defaults uvicorn would put back (which would end the process by
      the signal, or with a KeyboardInterrupt's traceback). uvicorn's own answer to a second SIGINT, `force_exit`,
      is not used: it cancels the requests in flight and skips the app's shutdown, each logged with a traceback.
    """

    hurry: Callable[[], None] | None = None
    # Called at the first signal: the other HTTP processes are asked to stop then, so that their grace runs beside
    # this one's instead of after it.
    on_first_signal: Callable[[], None] | None = None
    _disconnect_now = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:  # the first signal: uvicorn stops
            super().handle_exit(sig, frame)
            if self.on_first_signal is not None:
                self.on_first_signal()
            return
        self._disconnect_now = True  # a second: flags only, the event loop and the main thread act on them
        if self.hurry is not None:
            self.hurry()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cutter = asyncio.create_task(self._disconnect_clients_when_due())
        try:
            await super().shutdown(sockets)
        finally:
            cutter.cancel()

    async def _disconnect_clients_when_due(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while not self._disconnect_now and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):  # what uvicorn puts back when it returns
                signal.signal(sig, self.handle_exit)
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _start_demo_source(port: int) -> DemoSourceServer:
    """The demo source on `port` (the app's port + 1), or on any free port when that one is taken."""
    try:
        server = DemoSourceServer(DemoSourceConfig(), port=port)
        server.start()
    except OSError:
        log.info("demo: port %d is taken; the demo source listens on a free port instead", port)
        server = DemoSourceServer(DemoSourceConfig(), port=0)
        server.start()
    return server


def _deploy_demo(runtime: Runtime, source_url: str) -> None:
    """Deploy the demo operations and launch each once, on a store that has no run of them yet. A workflow's
    target is left to its workflow: demo-hr's run, once completed, launches demo-hr-summaries. The failing check
    and then the stream are launched last, in that order (see DEMO_FAILING)."""
    landing = runtime.settings.resolved_storage_roots[0] / "landing"
    if not any(landing.glob("stores-*.csv")):
        drop_demo_files(landing)
    specs = demo_specs(source_url)
    deployed = deploy(runtime.store, specs, runtime.registry)
    left_to_workflows = launched_by_workflows(specs)
    launchable = {name for name, definition in operation_types().items() if definition.launchable}
    stream = next((item for item in deployed if item.configuration_id == DEMO_STREAM), None)
    failing = next((item for item in deployed if item.configuration_id == DEMO_FAILING), None)
    follow_up: list[Callable[[], object]] = []
    for spec, item in zip(specs, deployed, strict=True):
        if spec.configuration_type not in launchable or item.configuration_id in left_to_workflows:
            continue
        if item in (stream, failing) or _has_runs(runtime, item.operation_id):
            continue
        run_id = _launch_demo(runtime, item.operation_id, item.configuration_id)
        if item.configuration_id == DEMO_EXPORT_AFTER and run_id is not None:
            follow_up.append(partial(_export_demo_view, runtime, spec.account, run_id))
            targets = [d.operation_id for d in deployed if d.configuration_id in left_to_workflows]
            follow_up.append(partial(_wait_for_runs, runtime, targets))
    if failing is not None and not _has_runs(runtime, failing.operation_id):
        follow_up.append(partial(_launch_demo, runtime, failing.operation_id, failing.configuration_id))
    if stream is not None and not _has_runs(runtime, stream.operation_id):
        follow_up.append(
            partial(_launch_demo, runtime, stream.operation_id, stream.configuration_id, RunType.INCREMENTAL)
        )
    if follow_up:
        threading.Thread(target=_in_turn, args=(follow_up,), name="demo-follow-up", daemon=True).start()


def _in_turn(steps: list[Callable[[], object]]) -> None:
    for step in steps:
        step()


def _wait_for_runs(runtime: Runtime, operation_ids: list[int]) -> None:
    """Until each operation has a run (the demo workflow's target, launched when demo-hr's run ends), for a while."""
    deadline = time.monotonic() + DEMO_STREAM_WAIT_SECONDS
    while time.monotonic() < deadline and not all(_has_runs(runtime, op) for op in operation_ids):
        time.sleep(0.2)


def _export_demo_view(runtime: Runtime, account: str, run_id: int) -> None:
    """Once demo-hr's first run has loaded the employees, export the demo's bi-view, so that the Exports page shows
    a session (completed, then draining after RUNYARD_EXPORT_COMPLETED_SECONDS)."""
    deadline = time.monotonic() + DEMO_EXPORT_WAIT_SECONDS
    while time.monotonic() < deadline:
        status = runtime.runs.get_run(run_id).status
        if status.is_final:
            break
        time.sleep(0.5)
    else:
        return
    if status not in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS):
        return
    try:
        with runtime.store.read() as conn:
            owner = account_id(conn, account)
        request = parse_request(DEMO_EXPORT_VIEW, None, None, "500", "csv")
        runtime.exports.begin(account, owner, None, request)
    except RunyardError as error:
        log.warning("demo: the export of %s did not start: %s", DEMO_EXPORT_VIEW, error)
        return
    log.info("demo: export of %s started (see Exports)", DEMO_EXPORT_VIEW)


def _has_runs(runtime: Runtime, operation_id: int) -> bool:
    with runtime.store.read() as conn:
        return list_runs(conn, RunQuery(account_id=None, operation_id=operation_id, page_size=1)).total > 0


def _launch_demo(
    runtime: Runtime, operation_id: int, configuration_id: str, run_type: RunType = RunType.DESTRUCTIVE
) -> int | None:
    try:
        view = runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=run_type, trigger=Trigger.MANUAL))
    except RunRejected:
        return None
    log.info("demo: launched run %d of %s", view.id, configuration_id)
    return view.id


def warn_of_file_warehouse(settings: Settings, runtime: Runtime) -> None:
    """One line at a worker's start when the warehouse is DuckDB files, which one process at a time can open (none for
    a PostgreSQL warehouse, which every process shares)."""
    from runyard.warehouse.duckdb import IDLE_RELEASE_SECONDS, DuckDBWarehouses

    warehouses = runtime.warehouses
    if not isinstance(warehouses, DuckDBWarehouses):
        return
    home, directory = settings.home.resolve(), warehouses.directory
    folder = directory.relative_to(home) if directory.is_relative_to(home) else directory.name
    log.warning(
        "the warehouse is DuckDB files under %s/, each open in one process at a time: this worker and runyard serve "
        "or other workers take turns at an account's file (each lets it go after %g s unused), and a task that finds "
        "it held waits (at most RUNYARD_WAREHOUSE_LOCK_WAIT_SECONDS, %g s); processes that load data side by side "
        "need a warehouse they share (RUNYARD_WAREHOUSE_URL=postgresql+psycopg://...)",
        folder,
        IDLE_RELEASE_SECONDS,
        settings.warehouse_lock_wait_seconds,
    )


def run_worker(settings: Settings) -> None:
    """A worker process alone. SIGTERM or SIGINT: claim nothing more, let running tasks finish within
    SHUTDOWN_GRACE_SECONDS (what still runs then is given back), exit 0. A second SIGTERM or SIGINT during the
    grace gives every running task back at once (at its next checkpoint; another worker claims it at its next
    poll, no lease to wait for) and exits 0."""
    configure_logging()
    runtime = Runtime(settings, open_store(settings), resources=engine_resources(settings))
    warn_of_file_warehouse(settings, runtime)
    worker = runtime.worker("worker")
    scheduler = runtime.scheduler()
    notifier = runtime.notifier()
    signals = 0

    def on_signal(*_: object) -> None:
        # The first: stop (below). A second during the grace: give the running tasks back at once, exit 0.
        # Only plain assignments here: a handler runs in the main thread between two of its bytecodes, so taking a
        # lock the main thread may hold at that moment (an Event's, entering `wait`) would deadlock the process.
        nonlocal signals
        signals += 1
        if signals > 1:
            worker.hurry()  # sets a flag only: the main thread, inside worker.stop, does the rest

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    listener = runtime.work_listener()  # wakes the worker when other processes make work
    if listener is not None:
        listener.start()
    worker.start()
    scheduler.start()
    notifier.start()
    with tuned_gc():
        while not signals:
            time.sleep(SIGNAL_POLL_SECONDS)
    log.info(
        "stopping: finishing running tasks (up to %.0f s; a second signal gives them back at once)",
        SHUTDOWN_GRACE_SECONDS,
    )
    worker.stop(SHUTDOWN_GRACE_SECONDS)
    if listener is not None:
        listener.stop()
    scheduler.stop()
    notifier.stop()
    runtime.close()
