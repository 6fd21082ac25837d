"""R16 on a real disk: the staging folder runs out of space under a running api-to-table run.

The worker's staging folder (`$RUNYARD_HOME/staging`) is a 2 MB tmpfs of the test's own (`mount -t tmpfs`, as
root), nearly filled by a ballast file, so the Parquet part the extract stages does not fit: the kernel answers
ENOSPC, as a full disk does. Then:

- the run fails, and the extract's message says so in an administrator's words ("no space left on the staging
  disk", naming the folder and what to do), not as a traceback;
- no half-written part is left in staging for a later attempt to read (no temporary file, no part), nothing of the
  run reached the warehouse (no load record; the Data Load never ran);
- the worker process stays alive and, once the ballast is removed, runs the retry of the run to Completed with the
  source's exact counts; I1-I7 hold (I2: exactly the source's rows, so nothing of the failed run was loaded).

Mounting needs root (CAP_SYS_ADMIN). Where it is refused, the test fails under CI=true, naming why, and is skipped
elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.operations.loader import load_text
from runyard.services.operations import deploy
from runyard.services.runs import RunService
from runyard.staging.storage import TEMPORARY_NAME
from runyard.store import migrate
from runyard.store.database import Store
from runyard.store.tables import data_loads
from tests.factories import make_account
from tests.reliability.db import launch, messages, run_state, run_status, task_row
from tests.reliability.invariants import check_invariants
from tests.reliability.procs import WorkerProcess, Workers, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0  # a bound on waiting for what must happen, never a speed requirement
EMPLOYEES = 3000
DISK = "2m"
LEFT_FREE = 48 * 1024  # what the ballast leaves: room for the small JSON documents, not for the Parquet part
EXTRACT = "Process [employees]"


def mount_tmpfs(folder: Path) -> None:
    """A `DISK`-sized tmpfs on `folder`; fail (CI) or skip with the reason when mounting is not permitted."""
    folder.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        reason = (
            f"cannot mount a {DISK} tmpfs on {folder} for the disk-full test (mount exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}); it needs root (CAP_SYS_ADMIN)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30, check=False)  # still busy


def fill(folder: Path, leave: int) -> Path:
    """A ballast file that leaves `leave` bytes free on `folder`'s file system."""
    stats = os.statvfs(folder)
    ballast = folder / "ballast"
    ballast.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return ballast


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "home" / "staging"
    mount_tmpfs(folder)
    try:
        yield folder
    finally:
        unmount(folder)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    migrate.upgrade(store)
    yield store
    store.dispose()


def staged_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def wait_final(store: Store, run_id: int, worker: WorkerProcess) -> RunStatus:
    def final() -> RunStatus | None:
        status = run_status(store, run_id)
        return status if status.is_final else None

    return wait_until(final, timeout=TIMEOUT, what=f"run {run_id} to end", alive=[worker])


def test_a_full_staging_disk_fails_the_run_in_words_and_the_retry_completes_once_space_is_freed(
    sqlite_store: Store, staging: Path
) -> None:
    store = sqlite_store
    home = staging.parent
    config = DemoSourceConfig(employees=EMPLOYEES)
    workers = Workers(store.url.render_as_string(hide_password=False), home)
    with DemoSourceServer(config) as source:
        make_account(store)
        (deployed,) = deploy(
            store,
            load_text(
                "configuration_type: api-to-table\nconfiguration_id: full-disk\n"
                f'base_url: "{source.base_url}"\n'
                "endpoints:\n  - name: employees\n    path: /employees\n    records: data\n    primary_key: id\n"
                "    pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, limit_param: limit, "
                "limit: 500}\n"
            ),
        )
        ballast = fill(staging, LEFT_FREE)
        run_id = launch(store, deployed.operation_id)
        try:
            # Keep the staged files after the load: the end of the test measures the part the retry staged.
            worker = workers.start(allowed_hosts="127.0.0.1", extra_env={"RUNYARD_STAGING_KEEP_AFTER_LOAD": "true"})

            def describe() -> str:
                return "\n".join(
                    [f"{name}: {rows}" for name, rows in run_state(store, run_id).items()]
                    + [f"staged: {staged_files(staging)}", worker.log()[-4000:]]
                )

            assert wait_final(store, run_id, worker) is RunStatus.FAILED, describe()
            extract = task_row(store, run_id, EXTRACT)
            assert extract["status"] == TaskStatus.FAILED.value, describe()
            said = messages(store, extract["id"], "error")
            assert len(said) == 1, said
            assert said[0].startswith("no space left on the staging disk: could not write staged file "), said
            assert f"in the staging folder {staging}" in said[0], said
            assert "(No space left on device, " in said[0], said  # the system's words, and the space left
            assert "kB free)" in said[0], said
            assert "set RUNYARD_STAGING_URL to a folder with more room; then retry" in said[0], said
            assert "Traceback" not in said[0], said
            assert "Errno" not in said[0], said
            assert "Traceback" not in worker.log()

            # Nothing half-written for a later attempt to read, and nothing of the run loaded.
            left = staged_files(staging)
            assert not [path for path in left if TEMPORARY_NAME.match(path.name)], left
            assert not [path for path in left if path.suffix == ".parquet"], left
            assert task_row(store, run_id, "Data Load")["status"] != TaskStatus.COMPLETED.value
            with store.read() as conn:
                assert conn.execute(sa.select(data_loads).where(data_loads.c.run_id == run_id)).first() is None

            worker.expect_alive("the failed run")
            ballast.unlink()  # space freed
            retry = RunService(store).retry(run_id).id
            assert wait_final(store, retry, worker) is RunStatus.COMPLETED, describe()
            assert task_row(store, retry, EXTRACT)["attempt"] == 1
            part = max((path.stat().st_size for path in staged_files(staging) if path.suffix == ".parquet"), default=0)
            assert part > LEFT_FREE, f"the staged part ({part} bytes) would have fit: the test proves nothing"
            assert worker.terminate() == 0, worker.log()
        finally:
            workers.close()
    check_invariants(
        store,
        home / "warehouse",
        source_counts={"employees": expected_counts(config)["employees"]},
        staging_root=staging,
    )
