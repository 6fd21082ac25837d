"""A PostgreSQL server of one test's own, which the test may stop, start and restart at will.

The shared test server (scripts/test-postgres.sh, RUNYARD_TEST_POSTGRES_URL) serves every other test at the same
time, so a test that takes its runs database down needs a cluster nobody else uses. `PrivatePostgres` does what
scripts/test-postgres.sh does, into a folder of its own on a free loopback port: `initdb` (trust, UTF8), then
`pg_ctl start`; as root, both run as the `postgres` user, since PostgreSQL refuses to run as root. Its socket
folder is its data folder, so nothing is shared with other servers. `close()` stops it and removes the folder.

Without PostgreSQL's binaries a test fails under CI=true and is skipped elsewhere, as tests/conftest.py does for
the shared server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

START_SECONDS = 60
SERVER_OPTIONS = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=100")


def postgres_bin() -> Path:
    """The folder of the newest installed PostgreSQL's programs; fail (CI) or skip when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not found:
        message = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; scripts/install-system-deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found[-1].parent


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One initialised cluster in a fresh folder; `start()`, `stop()`, `restart()`, `close()`."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.as_root = os.getuid() == 0
        # Under /tmp, not pytest's tmp_path: that one is private to root (0700), and the server runs as `postgres`.
        self.folder = Path(tempfile.mkdtemp(prefix="runyard-private-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = _free_port()
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_SECONDS + 30, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise AssertionError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}"
            )
        return result.stdout

    def _options(self) -> str:
        return " ".join((f"-p {self.port}", f"-k {self.data}", "-c listen_addresses=127.0.0.1", *SERVER_OPTIONS))

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_SECONDS), "-o", self._options(),
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop it as an administrator would (`-m fast`: sessions are cut, their transactions rolled back)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", str(START_SECONDS), "-m", "fast", "stop")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: down and up again, waiting until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_SECONDS), "-m", "fast",
            "-o", self._options(), "restart",
        )  # fmt: skip

    def running(self) -> bool:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0

    def close(self) -> None:
        """Stop it if it runs (immediately: nothing in it is kept) and remove its folder."""
        try:
            if self.running():
                self._run("pg_ctl", "-D", str(self.data), "-w", "-t", str(START_SECONDS), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server, stopped and removed when the block ends whatever happens."""
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()
