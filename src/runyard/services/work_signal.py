"""Wakes idle workers in every process when work appears, not only in the process that made it.

`runyard.services.wakeup.Wakeup` wakes the worker threads of one process. A task made ready by another process (a
launch through an extra HTTP process of `runyard serve`, a `runyard worker` finishing a task whose successor another
process's worker could run, `runyard run` on the command line) reaches them here, over one of two channels:

- **PostgreSQL: LISTEN/NOTIFY.** The write transaction that makes a task ready calls `announce_work(conn)`, which
  issues `pg_notify('runyard_work', '')`: the server delivers it at commit, and never for a transaction that rolled
  back, to every session of the database listening on that channel, on any host. Each process that runs workers
  keeps one `PostgresListener`: a thread with a connection of its own (autocommit, `LISTEN runyard_work`) that calls
  the process's `Wakeup.notify()` on every notification. A lost connection is logged and opened again with growing
  pauses; the process never stops for it, and its workers are woken once it is back (what was notified meanwhile is
  lost, and their next look finds it). The payload is empty: the notification says only "look for work".
- **SQLite (embedded): Unix datagram sockets.** NOTIFY has no SQLite equivalent, and the processes that share a
  SQLite database share its host and its folder. Each process that runs workers binds a datagram socket
  `wake-<pid>.sock` in `<database folder>/run/` (with the default settings, `$RUNYARD_HOME/run/`) and a
  `LocalListener` thread wakes its workers on every datagram. After committing a write that made work, `wake_workers`
  sends one byte to every socket of that folder but its own, without ever blocking (a full socket already has a
  wakeup waiting) and removing the files nobody listens on any more (a process killed outright leaves its file).
  Datagrams need no connection, no server process and no lock, a crashed receiver costs its senders nothing, and the
  folder is the list of who is listening. Where that folder's socket paths would pass the 107 bytes a Unix socket
  path may have, a private folder named after the database under the temporary directory (`runyard-<uid>/`) serves
  instead; every process derives the same one.

Either way a wakeup is only a hint: a worker that misses one finds the work at its next poll (RUNYARD_POLL_SECONDS),
and claims stay safe whoever is woken (`TaskLeases.claim`). Every place that makes a task ready calls
`announce_work` inside its transaction and `wake_workers` after the commit (which also wakes this process's own
workers through its `Wakeup`): `RunService.launch_in` (so launches, retries, schedule ticks and workflow triggers),
`TaskLeases.finish` and `TaskLeases.release`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import select
import socket
import stat
import tempfile
import threading
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from runyard.services.wakeup import Wakeup
from runyard.store import dialect
from runyard.store.database import Store
from runyard.store.failures import describe_failure

log = logging.getLogger("runyard.wakeup")

CHANNEL = "runyard_work"
SOCKET_PREFIX = "wake-"
SOCKET_SUFFIX = ".sock"
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, its last one the terminating NUL
_LONGEST_NAME = f"{SOCKET_PREFIX}{2**22}{SOCKET_SUFFIX}"  # pid_max is at most 2^22 on Linux
# The PostgreSQL listener: how often it looks at its stop flag, how it waits between reconnections.
LISTEN_SLICE_SECONDS = 0.5
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5
LISTENER_APPLICATION_NAME = "runyard work listener"  # how its session shows in pg_stat_activity
# Client-side TCP keepalives: a server that vanished without closing the connection is noticed within ~25 s.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# The local listener checks this often that its socket file is still the one it bound (removed, or replaced by a
# process that reused its pid, it binds again).
LOCAL_CHECK_SECONDS = 5.0


def announce_work(conn: Connection) -> None:
    """Inside the write transaction that made a task ready: on PostgreSQL, every listening process is woken at
    commit (nothing if it rolls back). On SQLite nothing happens here; `wake_workers` rings after the commit."""
    if dialect.is_postgresql(conn):
        conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def wake_workers(store: Store, wakeup: Wakeup | None) -> None:
    """After the commit of a transaction that called `announce_work`: wake this process's workers, and on SQLite the
    other processes' through their sockets. Never raises: a wakeup is a hint."""
    if wakeup is not None:
        wakeup.notify()
    folder = local_folder(store)
    if folder is not None:
        ring(folder)


class WorkListener(Protocol):
    """Wakes this process's workers when another process signals work: `start()` once, `stop()` when closing."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def listener_for(store: Store, wakeup: Wakeup) -> WorkListener | None:
    """The listener that fits the store; None for an in-memory SQLite database, which no other process sees."""
    if not store.is_sqlite:
        return PostgresListener(store.url, wakeup)
    folder = local_folder(store)
    return LocalListener(folder, wakeup) if folder is not None else None


# --- PostgreSQL ------------------------------------------------------------------------------------------------------


class PostgresListener:
    """A thread on a connection of its own, LISTENing on `CHANNEL`; each notification calls `wakeup.notify()`.

    Its own engine, without a pool, in autocommit: the session must stay LISTENing, outside any transaction (a
    session inside one receives nothing until it ends).
    """

    def __init__(self, url: sa.URL, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self._engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "application_name": LISTENER_APPLICATION_NAME,
                **_KEEPALIVES,
            },
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times it has started LISTENing: for tests and logs

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="runyard-work-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(LISTEN_SLICE_SECONDS + CONNECT_TIMEOUT_SECONDS + 5)
        self._engine.dispose()

    def _run(self) -> None:
        pause = RECONNECT_FIRST_SECONDS
        while not self._stopping.is_set():
            try:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    if self.connections > 1:
                        log.info("work listener: listening for work on PostgreSQL again")
                    # What was notified before LISTEN (at start, or while the connection was down) is lost: look now.
                    self.wakeup.notify()
                    pause = RECONNECT_FIRST_SECONDS
                    self._listen(conn)
            except Exception as error:  # a dropped connection, a server restart, anything: never end the process
                if self._stopping.is_set():
                    break
                log.warning(
                    "work listener: no connection to PostgreSQL (%s); trying again in %.1f s, meanwhile workers "
                    "look for work at each poll",
                    describe_failure(error),
                    pause,
                )
                self._stopping.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX_SECONDS)

    def _listen(self, conn: sa.Connection) -> None:
        driver = conn.connection.driver_connection
        assert driver is not None
        while not self._stopping.is_set():
            for _ in driver.notifies(timeout=LISTEN_SLICE_SECONDS):
                self.wakeup.notify()


# --- SQLite: Unix datagram sockets -----------------------------------------------------------------------------------


def local_folder(store: Store) -> Path | None:
    """Where the wake sockets of the processes sharing this SQLite database are; None on PostgreSQL or in memory."""
    return _local_folder(store.url.database) if store.is_sqlite else None


@functools.lru_cache(maxsize=16)
def _local_folder(database: str | None) -> Path | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    folder = path.parent / "run"
    if len(os.fsencode(folder / _LONGEST_NAME)) <= _MAX_SOCKET_PATH:
        return folder
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / _private_parent_name() / digest


def _private_parent_name() -> str:
    return f"runyard-{os.getuid()}"


def _check_own_folder(folder: Path, *, private: bool) -> None:
    """A folder (not a link) of this user; under the shared temporary directory, also writable by this user only."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{folder} is not a folder of this user")
    if private and info.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{folder} is writable by other users")


def ring(folder: Path) -> None:
    """Send one byte to every wake socket in `folder` but this process's own, never waiting; remove dead ones."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return  # no process listens yet
    except OSError as error:
        log.warning("cannot list the wake sockets in %s (%s); workers find the work at their next poll", folder, error)
        return
    own = _socket_name(os.getpid())
    targets = [e.path for e in entries if e.name.startswith(SOCKET_PREFIX) and e.name.endswith(SOCKET_SUFFIX)]
    if not any(os.path.basename(target) != own for target in targets):
        return
    try:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError as error:  # out of file descriptors, say
        log.warning("cannot wake the other processes' workers (%s); they find the work at their next poll", error)
        return
    with sender:
        sender.setblocking(False)
        for target in targets:
            if os.path.basename(target) == own:
                continue  # this process's workers were woken through its Wakeup already
            try:
                sender.sendto(b"\x01", target)
            except (BlockingIOError, InterruptedError):
                pass  # its queue is full: a wakeup is waiting there already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):  # nobody is bound: its process ended without removing it
                    os.unlink(target)
            except OSError as error:
                if error.errno not in (errno.ENOTSOCK, errno.EPROTOTYPE):
                    log.debug("cannot wake %s: %s", target, error)


def _socket_name(pid: int) -> str:
    return f"{SOCKET_PREFIX}{pid}{SOCKET_SUFFIX}"


class LocalListener:
    """A datagram socket `wake-<pid>.sock` in `folder`; a thread calls `wakeup.notify()` on what it receives."""

    def __init__(self, folder: Path, wakeup: Wakeup) -> None:
        self.folder = folder
        self.wakeup = wakeup
        self.path = folder / _socket_name(os.getpid())
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the socket (now, so that a wakeup sent once `start` returns is received), then listen in a thread."""
        try:
            self._bind()
        except OSError as error:
            log.warning(
                "work listener: cannot bind %s (%s); this process's workers find work made by others at each poll",
                self.path,
                error,
            )
            return
        self._thread = threading.Thread(target=self._run, name="runyard-work-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        sock = self._sock
        if sock is not None and self._thread is not None:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.setblocking(False)
                sender.sendto(b"\x00", str(self.path))  # wakes the thread's recv at once
            self._thread.join(LOCAL_CHECK_SECONDS + 5)
        self._close()

    def _bind(self) -> None:
        private = self.folder.parent.name == _private_parent_name()  # the fallback under the temporary directory
        if private:
            self.folder.parent.mkdir(exist_ok=True, mode=0o700)
            _check_own_folder(self.folder.parent, private=True)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_own_folder(self.folder, private=private)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by an earlier process with this pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.setblocking(False)  # waited on with select: a timeout socket would wait inside each recv
        except BaseException:
            sock.close()
            raise
        sock.set_inheritable(False)
        self._sock = sock
        self._inode = os.stat(self.path).st_ino

    def _run(self) -> None:
        while not self._stopping.is_set():
            sock = self._sock
            try:
                if sock is None:
                    self._bind()
                    log.info("work listener: bound %s again", self.path)
                    self.wakeup.notify()  # wakeups sent meanwhile were lost: look now
                    continue
                readable, _, _ = select.select([sock], [], [], LOCAL_CHECK_SECONDS)
                if self._stopping.is_set():
                    break
                if readable:
                    self._drain(sock)
                    self.wakeup.notify()
                elif not self._still_ours():
                    log.warning("work listener: %s was removed or replaced; binding it again", self.path)
                    self._close()
            except OSError as error:
                if self._stopping.is_set():
                    break
                log.warning("work listener: %s failed (%s); binding it again shortly", self.path, error)
                self._close()
                self._stopping.wait(RECONNECT_FIRST_SECONDS)

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Read every datagram that has come: one notify answers them all."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                sock.recv(64)

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._still_ours():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        sock.close()
