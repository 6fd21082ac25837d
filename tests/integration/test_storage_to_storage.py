"""storage-to-storage end to end: a real runtime (SQLite store, worker, scheduler) copying real files between a
local folder and moto's S3 server on loopback; retries after a killed or failed copy; cancel; every refusal.

Files live under the runtime's allowed root, `<home>/files` (the default of RUNYARD_STORAGE_ROOTS), so that the
`runyard worker` processes of the kill tests, given the same home, see the same root.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from runyard.demo.landing import OPERATION, drop_demo_files
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.engine.context import TaskContext, TaskFailed, TaskIdentity
from runyard.engine.resources import EngineResources
from runyard.operations.loader import load_text
from runyard.operations.storage_to_storage.copy import CRASH_MID_FILE, copy_files
from runyard.operations.storage_to_storage.listing import list_files
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin
from runyard.services.listing import run_tasks
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView, TaskView
from runyard.settings import Settings
from runyard.staging import Staging
from runyard.staging.storage import TEMPORARY_NAME, FsspecStorage, multipart_etag
from runyard.warehouse.provider import open_warehouses
from tests.integration.api_harness import wait_for
from tests.reliability.procs import HEARTBEAT_SECONDS, LEASE_SECONDS, POLL_SECONDS, SWEEP_SECONDS, Workers
from tests.s3_server import KEY, KEY_ENV, SECRET, SECRET_ENV, S3Server, s3_server

RUN_TIMEOUT = 60.0
MOTO_HOST = "127.0.0.1"  # the workers may reach the S3 server on loopback
POLL = 0.05
MAY_1 = datetime(2024, 5, 1, 10, 15, 0, tzinfo=UTC).timestamp()

SPEC = """\
configuration_type: storage-to-storage
configuration_id: {name}
environment: DEV
source: {source}
destination: {destination}
files: {files}
destination_name: "{destination_name}"
move: {move}
files_per_task: {files_per_task}
"""


def spec(
    name: str = "stores-archive",
    *,
    source: str = "landing",
    destination: str = "archive",
    files: str = '["stores-*.csv"]',
    destination_name: str = "stores-{{FD_DATE}}-{{FD_TIME}}.csv",
    move: bool = False,
    files_per_task: str = "1",
) -> str:
    return SPEC.format(
        name=name,
        source=source,
        destination=destination,
        files=files,
        destination_name=destination_name,
        move=str(move).lower(),
        files_per_task=files_per_task,
    )


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class Copies:
    settings: Settings
    runtime: Runtime
    root: Path  # the allowed root: <home>/files

    def deploy(self, text: str) -> int:
        (deployed,) = deploy(self.runtime.store, load_text(text), self.runtime.registry)
        return deployed.operation_id

    def launch(self, operation_id: int) -> int:
        return self.runtime.runs.launch(LaunchRequest(operation_id=operation_id, run_type=RunType.DESTRUCTIVE)).id

    def wait(self, run_id: int, timeout: float = RUN_TIMEOUT) -> RunView:
        return wait_for(lambda: _final(self.runtime.runs.get_run(run_id)), timeout=timeout, what=f"run {run_id} to end")

    def run(self, text: str) -> tuple[int, RunView]:
        operation_id = self.deploy(text)
        run = self.wait(self.launch(operation_id))
        return operation_id, run

    def tasks(self, run_id: int) -> dict[str, TaskView]:
        with self.runtime.store.read() as conn:
            return {task.name: task for task in run_tasks(conn, run_id)}

    def messages(self, run_id: int) -> str:
        return "\n".join(f"{t.name}: {m.level}: {m.text}" for t in self.tasks(run_id).values() for m in t.messages)

    def folder(self, name: str) -> Path:
        return self.root / name


def _final(view: RunView) -> RunView | None:
    return view if view.status.is_final else None


@contextmanager
def copies(home: Path, *, worker: bool = True, extra_hosts: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[Copies]:
    settings = Settings(
        home=home,
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        poll_seconds=POLL_SECONDS,
        sweep_seconds=SWEEP_SECONDS,
    )
    store = open_store(settings)
    bootstrap_admin(store, "harness-password-1")
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=extra_hosts))
    scheduler = runtime.scheduler()
    threads = runtime.worker("copies") if worker else None
    scheduler.start()
    if threads is not None:
        threads.start()
    try:
        yield Copies(settings, runtime, settings.resolved_storage_roots[0])
    finally:
        if threads is not None:
            threads.stop(10)
        scheduler.stop()
        runtime.close()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def harness(tmp_path: Path, s3_env: None) -> Iterator[Copies]:
    with copies(tmp_path / "home") as running:
        yield running


@contextmanager
def direct_resources(root: Path) -> Iterator[EngineResources]:
    """What a worker binds the executors to, with `root` the allowed root: for calling an executor directly."""
    resources = EngineResources(
        staging=Staging(str(root.parent / "staging")),
        warehouses=open_warehouses(str(root.parent / "warehouse")),
        storage_roots=(root,),
    )
    try:
        yield resources
    finally:
        resources.warehouses.close_all()


def context(params: dict[str, Any]) -> TaskContext:
    identity = TaskIdentity("default", 1, "run-1", "destructive", "List Files [landing]", 1, None, date(2024, 5, 2))
    return TaskContext(identity, params)


def stores_files(folder: Path, count: int = 3, size: int = 0) -> dict[str, bytes]:
    """stores-<n>.csv files, modified 2024-05-01 10:15:0<n> UTC; name -> content."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for number in range(1, count + 1):
        rows = "".join(f"{number},{day},{100 + day * number}\n" for day in range(1, 31))
        content = (f"store,day,sales\n{rows}" + "#" * size).encode()
        path = folder / f"stores-{number}.csv"
        path.write_bytes(content)
        os.utime(path, (MAY_1 + number, MAY_1 + number))
        written[path.name] = content
    return written


def archived_name(number: int) -> str:
    return f"stores-20240501-10150{number}.csv"


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (temporary ones too) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if TEMPORARY_NAME.match(p.name)]


# --- end to end -----------------------------------------------------------------------------------


def test_local_to_local_under_templated_names(harness: Copies) -> None:
    written = stores_files(harness.folder("landing"))
    (harness.folder("landing") / "notes.txt").write_text("not a store file")

    _, run = harness.run(spec())

    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert files_in(harness.folder("archive")) == {archived_name(n): written[f"stores-{n}.csv"] for n in (1, 2, 3)}
    assert set(files_in(harness.folder("landing"))) == {"stores-1.csv", "stores-2.csv", "stores-3.csv", "notes.txt"}
    tasks = harness.tasks(run.id)
    assert list(tasks) == ["List Files [landing]", "Copy [stores-1.csv]", "Copy [stores-2.csv]", "Copy [stores-3.csv]"]
    for number in (1, 2, 3):
        task = tasks[f"Copy [stores-{number}.csv]"]
        content = written[f"stores-{number}.csv"]
        assert (task.status, task.metrics_type) == (TaskStatus.COMPLETED, "task")
        assert (task.records_processed, task.bytes_processed) == (1, len(content))
        (message,) = task.messages
        assert message.text == (
            f"Copied landing/stores-{number}.csv to archive/{archived_name(number)} "
            f"({len(content):,} bytes, size verified)"
        )
    assert "Found 3 files" in tasks["List Files [landing]"].messages[0].text


def test_local_to_s3_under_templated_names(harness: Copies, s3: S3Server) -> None:
    s3.create_bucket("archive-l2s")
    written = stores_files(harness.folder("landing"))
    big = harness.folder("landing") / "stores-9.csv"  # 20 MiB: a multipart upload of three parts
    big.write_bytes(os.urandom(20 * 2**20))
    os.utime(big, (MAY_1 + 9, MAY_1 + 9))
    written[big.name] = big.read_bytes()

    _, run = harness.run(spec(destination=s3.location("s3://archive-l2s/stores/2024")))

    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    expected = {f"archive-l2s/stores/2024/{archived_name(n)}": written[f"stores-{n}.csv"] for n in (1, 2, 3, 9)}
    assert s3.objects("archive-l2s") == expected
    assert s3.etag(f"archive-l2s/stores/2024/{archived_name(1)}") == hashlib.md5(written["stores-1.csv"]).hexdigest()
    assert s3.etag(f"archive-l2s/stores/2024/{archived_name(9)}").endswith("-3")
    assert s3.pending_uploads("archive-l2s") == []
    tasks = harness.tasks(run.id)
    assert tasks["Copy [stores-9.csv]"].bytes_processed == 20 * 2**20
    assert sum(t.records_processed for t in tasks.values()) == 4
    assert "ETag" in tasks["Copy [stores-1.csv]"].messages[0].text
    assert SECRET not in harness.messages(run.id)


def test_s3_to_local_moves_verified_copies(harness: Copies, s3: S3Server) -> None:
    s3.create_bucket("landing-s2l")
    for number in (1, 2):
        s3.fs.pipe_file(f"landing-s2l/in/stores-{number}.csv", f"store,sales\n{number},1\n".encode())
    s3.fs.pipe_file("landing-s2l/in/other.txt", b"x")
    modified = {n: s3.fs.info(f"landing-s2l/in/stores-{n}.csv")["LastModified"].astimezone(UTC) for n in (1, 2)}

    text = spec(
        source=s3.location("s3://landing-s2l/in"), destination_name="{{FD_BASENAME}}-{{FD_DATE}}{{FD_EXTENSION}}"
    )
    _, run = harness.run(text.replace("move: false", "move: true"))

    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert files_in(harness.folder("archive")) == {
        f"stores-{n}-{modified[n]:%Y%m%d}.csv": f"store,sales\n{n},1\n".encode() for n in (1, 2)
    }
    assert list(s3.objects("landing-s2l")) == ["landing-s2l/in/other.txt"]  # the two moved, the other kept
    assert "Moved s3://landing-s2l/in/stores-1.csv" in harness.messages(run.id)


def test_auto_batches_small_files_into_one_task(harness: Copies) -> None:
    written = stores_files(harness.folder("landing"), count=5)

    _, run = harness.run(spec(files_per_task="auto", destination_name="{{FD_NAME}}"))

    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert files_in(harness.folder("archive")) == written
    tasks = harness.tasks(run.id)
    assert list(tasks) == ["List Files [landing]", "Copy files 1-5 of 5"]
    batch = tasks["Copy files 1-5 of 5"]
    assert (batch.records_processed, batch.bytes_processed) == (5, sum(len(c) for c in written.values()))
    assert [m.text for m in batch.messages] == ["5 of 5 files (1.4 kB) copied to archive"]


def test_nothing_to_copy_completes_and_says_so(harness: Copies) -> None:
    harness.folder("landing").mkdir(parents=True)
    _, run = harness.run(spec())
    assert run.status is RunStatus.COMPLETED
    assert "No file in landing matches stores-*.csv" in harness.messages(run.id)


# --- retries: a killed copy, a failed copy --------------------------------------------------------


@pytest.mark.slow
def test_a_copy_killed_halfway_leaves_one_complete_file(tmp_path: Path, s3_env: None) -> None:
    home = tmp_path / "home"
    with copies(home, worker=False) as harness:
        landing = harness.folder("landing")
        landing.mkdir(parents=True)
        content = os.urandom(20 * 2**20)  # three 8 MiB chunks: the kill comes after the second
        (landing / "stores-1.csv").write_bytes(content)
        os.utime(landing / "stores-1.csv", (MAY_1 + 1, MAY_1 + 1))
        operation_id = harness.deploy(spec())
        workers = Workers(harness.settings.resolved_database_url, home)
        try:
            doomed = workers.start(crash_at=CRASH_MID_FILE, allowed_hosts=MOTO_HOST)
            run_id = harness.launch(operation_id)
            wait_for(
                lambda: doomed.returncode is not None, timeout=RUN_TIMEOUT, what="the worker to be killed mid-copy"
            )
            assert doomed.returncode == -9, doomed.log()
            # Killed with 16 MiB of 20 in its temporary file: nothing is visible under the name.
            leftovers = temporaries(harness.folder("archive"))
            assert len(leftovers) == 1
            assert list(files_in(harness.folder("archive"))) == leftovers
            workers.start(allowed_hosts=MOTO_HOST)  # takes the task over once its lease lapses (attempt 2)
            run = harness.wait(run_id)
        finally:
            workers.close()
        assert run.status is RunStatus.COMPLETED, harness.messages(run_id)
        assert files_in(harness.folder("archive")) == {archived_name(1): content}
        copy_task = harness.tasks(run_id)["Copy [stores-1.csv]"]
        assert copy_task.attempt == 2
        assert copy_task.bytes_processed == len(content)  # the new attempt's count: the first one's is not kept


@pytest.mark.slow
def test_an_s3_upload_killed_halfway_leaves_one_complete_object(tmp_path: Path, s3_env: None, s3: S3Server) -> None:
    s3.create_bucket("archive-kill")
    home = tmp_path / "home"
    with copies(home, worker=False) as harness:
        landing = harness.folder("landing")
        landing.mkdir(parents=True)
        content = os.urandom(20 * 2**20)
        (landing / "stores-1.csv").write_bytes(content)
        os.utime(landing / "stores-1.csv", (MAY_1 + 1, MAY_1 + 1))
        operation_id = harness.deploy(spec(destination=s3.location("s3://archive-kill/x")))
        workers = Workers(harness.settings.resolved_database_url, home)
        try:
            doomed = workers.start(crash_at=CRASH_MID_FILE, allowed_hosts=MOTO_HOST)
            run_id = harness.launch(operation_id)
            wait_for(
                lambda: doomed.returncode is not None, timeout=RUN_TIMEOUT, what="the worker to be killed mid-upload"
            )
            assert doomed.returncode == -9, doomed.log()
            assert s3.pending_uploads("archive-kill") == ["x/" + archived_name(1)]  # two parts sent, not completed
            assert s3.objects("archive-kill") == {}
            workers.start(allowed_hosts=MOTO_HOST)
            run = harness.wait(run_id)
        finally:
            workers.close()
        assert run.status is RunStatus.COMPLETED, harness.messages(run_id)
        assert s3.objects("archive-kill") == {f"archive-kill/x/{archived_name(1)}": content}
        assert s3.pending_uploads("archive-kill") == []  # the killed copy's upload was aborted


def test_a_failed_copy_then_a_retry_leaves_each_file_once(harness: Copies) -> None:
    written = stores_files(harness.folder("landing"))
    in_the_way = harness.folder("archive") / archived_name(2)
    (in_the_way / "blocker").mkdir(parents=True)  # a folder where stores-2's copy must go: its rename fails

    operation_id, run = harness.run(spec())

    assert run.status is RunStatus.FAILED
    tasks = harness.tasks(run.id)
    assert tasks["Copy [stores-2.csv]"].status is TaskStatus.FAILED
    assert {tasks[f"Copy [stores-{n}.csv]"].status for n in (1, 3)} == {TaskStatus.COMPLETED}
    assert temporaries(harness.folder("archive")) == []

    (in_the_way / "blocker").rmdir()
    in_the_way.rmdir()
    retry = harness.wait(harness.runtime.runs.retry(run.id).id)

    assert retry.status is RunStatus.COMPLETED, harness.messages(retry.id)
    assert files_in(harness.folder("archive")) == {archived_name(n): written[f"stores-{n}.csv"] for n in (1, 2, 3)}
    messages = harness.messages(retry.id)
    assert f"landing/stores-1.csv to archive/{archived_name(1)}: already copied" in messages
    assert f"landing/stores-3.csv to archive/{archived_name(3)}: already copied" in messages
    assert f"Copied landing/stores-2.csv to archive/{archived_name(2)}" in messages
    retried = harness.tasks(retry.id)
    assert retried["Copy [stores-1.csv]"].bytes_processed == 0  # nothing copied twice
    assert retried["Copy [stores-2.csv]"].bytes_processed == len(written["stores-2.csv"])
    assert operation_id == harness.deploy(spec())


def test_a_destination_of_the_same_size_with_other_bytes_is_replaced(harness: Copies, s3: S3Server) -> None:
    """What a retry leaves as it is must hold the same bytes: an equal size is not enough, locally or on S3."""
    s3.create_bucket("archive-same-size")
    written = stores_files(harness.folder("landing"), count=2)
    stale = {name: content.replace(b"store", b"STORE") for name, content in written.items()}
    harness.folder("archive").mkdir(parents=True)
    (harness.folder("archive") / archived_name(1)).write_bytes(stale["stores-1.csv"])
    (harness.folder("archive") / archived_name(2)).write_bytes(written["stores-2.csv"])
    s3.fs.pipe_file(f"archive-same-size/x/{archived_name(1)}", stale["stores-1.csv"])
    s3.fs.pipe_file(f"archive-same-size/x/{archived_name(2)}", written["stores-2.csv"])

    _, local = harness.run(spec(files_per_task="auto"))
    _, remote = harness.run(spec("to-s3", destination=s3.location("s3://archive-same-size/x"), files_per_task="auto"))

    for run in (local, remote):
        assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
        messages = harness.messages(run.id)
        assert f"/{archived_name(1)} existed with other content; replaced" in messages
        assert f"/{archived_name(2)}: already copied (same size and checksum)" in messages
    expected = {archived_name(n): written[f"stores-{n}.csv"] for n in (1, 2)}
    assert files_in(harness.folder("archive")) == expected
    assert s3.objects("archive-same-size") == {f"archive-same-size/x/{k}": v for k, v in expected.items()}


def test_s3_infos_list_the_range_of_the_paths_asked_about(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """One listing per task finds what a HEAD of each file would; past the listing's budget, HEADs do."""
    s3.create_bucket("infos-a")
    s3.create_bucket("infos-b")
    for number in range(0, 60, 2):  # the even ones exist, with other files in between
        s3.fs.pipe_file(f"infos-a/x/part-{number:03d}.bin", b"a" * number)
        s3.fs.pipe_file(f"infos-a/x/part-{number:03d}.bin.bak", b"")
    s3.fs.pipe_file("infos-a/x/part-007.bin/inside", b"a folder, not a file")
    s3.fs.pipe_file("infos-b/part-001.bin", b"b")
    storage = FsspecStorage(s3.fs, "infos-a")
    asked = [f"infos-a/x/part-{number:03d}.bin" for number in (1, 2, 7, 8, 30, 31, 58, 59)] + [
        "infos-b/part-001.bin",
        "infos-b/part-002.bin",
    ]

    expected = {path: info for path in asked if (info := storage.info(path)) is not None}
    headed: list[str] = []
    head = storage.info
    monkeypatch.setattr(storage, "info", lambda path: headed.append(path) or head(path))

    found = storage.infos(asked)

    assert 0 < len(headed) < len(asked)  # the listing stopped before the last paths: they were asked one by one
    assert (
        sorted(found)
        == sorted(expected)
        == [
            *(f"infos-a/x/part-{number:03d}.bin" for number in (2, 8, 30, 58)),
            "infos-b/part-001.bin",
        ]
    )
    for path, info in found.items():
        assert (info.size, info.etag, info.version, info.modified) == (
            expected[path].size,
            expected[path].etag,
            expected[path].version,
            expected[path].modified,
        )
    assert storage.infos([]) == {}


def test_an_s3_writer_cuts_any_writes_into_its_parts(s3: S3Server) -> None:
    s3.create_bucket("writer-parts")
    content = os.urandom(20 * 2**20 + 5)
    writes = [content[start : start + 3 * 2**20] for start in range(0, len(content), 3 * 2**20)]
    storage = FsspecStorage(s3.fs, "writer-parts")

    with storage.open_write("writer-parts/x.bin", len(content)) as writer:
        for index, data in enumerate(writes):
            writer.write(data if index % 2 else memoryview(data))
        written = writer.commit()

    parts = [content[start : start + 8 * 2**20] for start in range(0, len(content), 8 * 2**20)]
    assert written.etag == multipart_etag([hashlib.md5(part).digest() for part in parts])
    assert (written.size, s3.etag("writer-parts/x.bin")) == (len(content), written.etag)
    assert s3.objects("writer-parts") == {"writer-parts/x.bin": content}


def test_move_deletes_only_the_sources_of_verified_copies(harness: Copies) -> None:
    written = stores_files(harness.folder("landing"))
    in_the_way = harness.folder("archive") / archived_name(2)
    in_the_way.mkdir(parents=True)

    _, run = harness.run(spec(move=True))

    assert run.status is RunStatus.FAILED
    assert set(files_in(harness.folder("landing"))) == {"stores-2.csv"}  # its copy failed: it stays
    assert files_in(harness.folder("archive")) == {archived_name(n): written[f"stores-{n}.csv"] for n in (1, 3)}
    assert archived_name(2) in harness.tasks(run.id)["Copy [stores-2.csv]"].messages[-1].text

    in_the_way.rmdir()
    retry = harness.wait(harness.runtime.runs.retry(run.id).id)

    assert retry.status is RunStatus.COMPLETED, harness.messages(retry.id)
    assert files_in(harness.folder("landing")) == {}
    assert files_in(harness.folder("archive")) == {archived_name(n): written[f"stores-{n}.csv"] for n in (1, 2, 3)}
    assert list(harness.tasks(retry.id)) == ["List Files [landing]", "Copy [stores-2.csv]"]


def test_a_file_changed_after_the_listing_is_not_copied(tmp_path: Path) -> None:
    """The listing's snapshot is what the copy checks first: a changed file would get its old time's name."""
    root = tmp_path / "files"
    stores_files(root / "landing", count=1)
    with direct_resources(root) as resources:
        listing = context({"operation": load_text(spec())[0].model_dump(mode="json"), "execution_date": "2024-05-02"})
        list_files(listing, resources)
        (copy_task,) = listing.spawned
        (root / "landing" / "stores-1.csv").write_text("store,sales\n1,999999\n")
        with pytest.raises(TaskFailed, match=r"landing/stores-1.csv changed after the run listed it"):
            copy_files(context(copy_task.params), resources)
    assert not (root / "archive").exists() or files_in(root / "archive") == {}


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_stops_the_copy_at_its_next_checkpoint(harness: Copies) -> None:
    landing = harness.folder("landing")
    landing.mkdir(parents=True)
    count = 3000
    for number in range(count):
        (landing / f"stores-{number:05d}.csv").write_bytes(b"store,sales\n1,2\n" * 64)
    run_id = harness.launch(harness.deploy(spec(files_per_task=str(count), destination_name="{{FD_NAME}}")))
    name = f"Copy files 1-{count} of {count}"

    wait_for(
        lambda: name in harness.tasks(run_id) and harness.tasks(run_id)[name].records_processed,
        timeout=30,
        what="copies",
    )
    harness.runtime.runs.cancel(run_id)
    run = harness.wait(run_id)

    assert run.status is RunStatus.CANCELED
    task = harness.tasks(run_id)[name]
    assert task.status is TaskStatus.CANCELED
    archived = files_in(harness.folder("archive"))
    assert 0 < len(archived) < count  # it stopped part way
    assert all(content == b"store,sales\n1,2\n" * 64 for content in archived.values())  # each one whole
    assert temporaries(harness.folder("archive")) == []


# --- refusals -------------------------------------------------------------------------------------


def _refused(harness: Copies, text: str, expected: str) -> None:
    _, run = harness.run(text)
    assert run.status is RunStatus.FAILED, harness.messages(run.id)
    listing = next(iter(harness.tasks(run.id).values()))
    assert listing.name.startswith("List Files [")
    assert listing.status is TaskStatus.FAILED
    assert expected in listing.messages[-1].text, listing.messages[-1].text
    assert list(harness.tasks(run.id)) == [listing.name]  # nothing was copied


def test_a_symbolic_link_out_of_the_root_is_refused(harness: Copies, tmp_path: Path) -> None:
    stores_files(harness.folder("landing"), count=1)
    secret = tmp_path / "outside" / "passwords.csv"
    secret.parent.mkdir()
    secret.write_text("admin,hunter2\n")
    (harness.folder("landing") / "stores-9.csv").symlink_to(secret)
    _refused(
        harness, spec(), f"landing/stores-9.csv is a symbolic link to {secret}, which is not under the allowed root"
    )
    assert not harness.folder("archive").exists()


def test_a_source_folder_linked_out_of_the_root_is_refused(harness: Copies, tmp_path: Path) -> None:
    stores_files(tmp_path / "outside")
    harness.root.mkdir(parents=True, exist_ok=True)
    (harness.root / "landing").symlink_to(tmp_path / "outside")
    _refused(
        harness, spec(), f"source folder landing is not under an allowed root (RUNYARD_STORAGE_ROOTS: {harness.root})"
    )


def test_folders_outside_the_roots_are_refused(harness: Copies, tmp_path: Path) -> None:
    stores_files(tmp_path / "elsewhere")
    stores_files(harness.folder("landing"))
    _refused(
        harness,
        spec(source=str(tmp_path / "elsewhere")),
        f"source folder {tmp_path / 'elsewhere'} is not under an allowed root (RUNYARD_STORAGE_ROOTS: {harness.root})",
    )
    _refused(
        harness,
        spec(name="to-elsewhere", destination=str(tmp_path / "dropbox")),
        f"destination folder {tmp_path / 'dropbox'} is not under an allowed root",
    )
    assert not (tmp_path / "dropbox").exists()


def test_a_destination_folder_linked_out_of_the_root_is_refused(harness: Copies, tmp_path: Path) -> None:
    stores_files(harness.folder("landing"))
    (tmp_path / "outside").mkdir()
    (harness.root / "archive").symlink_to(tmp_path / "outside")
    _refused(harness, spec(), "destination folder archive is not under an allowed root")
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_name_rendering_out_of_the_destination_is_refused(harness: Copies) -> None:
    landing = harness.folder("landing")
    landing.mkdir(parents=True)
    (landing / "..csv").write_text("x")  # its FD_BASENAME is "."
    text = spec(files='[".*.csv"]', destination_name="{{FD_BASENAME}}./{{FD_NAME}}")
    _refused(harness, text, "destination_name renders '../..csv', which has a '..' folder")
    assert not harness.folder("archive").exists()


def test_a_file_matched_twice_is_refused(harness: Copies) -> None:
    stores_files(harness.folder("landing"), count=1)
    _refused(
        harness,
        spec(files='["stores-*.csv", "*.csv"]'),
        "landing/stores-1.csv is matched by more than one pattern (stores-*.csv, *.csv)",
    )


def test_two_files_to_one_name_are_refused(harness: Copies) -> None:
    stores_files(harness.folder("landing"), count=2)
    _refused(
        harness,
        spec(destination_name="stores-{{FD_DATE}}.csv"),
        "landing/stores-1.csv and landing/stores-2.csv would both be copied to archive/stores-20240501.csv",
    )


def test_a_missing_source_folder_is_named(harness: Copies) -> None:
    _refused(harness, spec(source="incoming"), f"source folder incoming does not exist ({harness.root / 'incoming'})")


def test_a_missing_destination_bucket_is_named_before_anything_is_copied(harness: Copies, s3: S3Server) -> None:
    stores_files(harness.folder("landing"), count=1)
    _refused(
        harness,
        spec(destination=s3.location("s3://no-such-bucket/archive")),
        "destination bucket no-such-bucket does not exist (or these credentials cannot see it)",
    )


def test_an_s3_endpoint_not_allowed_is_refused(tmp_path: Path, s3_env: None, s3: S3Server) -> None:
    with copies(tmp_path / "home", extra_hosts=()) as harness:
        stores_files(harness.folder("landing"))
        _refused(harness, spec(destination=s3.location("s3://archive-x/y")), "RUNYARD_ALLOWED_HOSTS")


def test_a_missing_secret_names_its_variable_only(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.setenv(KEY_ENV, KEY)
    with copies(tmp_path / "home") as harness:
        stores_files(harness.folder("landing"))
        _refused(
            harness, spec(destination=s3.location("s3://archive-x/y")), f"environment variable {SECRET_ENV} is not set"
        )


# --- streaming ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_1_gib_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """The copy holds a chunk at a time: the Python memory it allocates stays far below the file's size."""
    root = tmp_path / "files"
    (root / "landing").mkdir(parents=True)
    big = root / "landing" / "big.bin"
    with big.open("wb") as handle:  # sparse: 1 GiB to read, almost nothing on disk
        handle.truncate(2**30)
    stat = big.stat()
    entry = {
        "path": "big.bin",
        "size": stat.st_size,
        "modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
        "version": str(stat.st_mtime_ns),
        "etag": None,
        "destination": "big.bin",
    }
    ctx = context({"source": {"url": "landing"}, "destination": {"url": "archive"}, "files": [entry]})
    with direct_resources(root) as resources:
        tracemalloc.start()
        try:
            copy_files(ctx, resources)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    copied = root / "archive" / "big.bin"
    try:
        assert copied.stat().st_size == 2**30
        assert ctx.progress.bytes == 2**30
        assert peak < 64 * 2**20, f"peak Python allocations {peak / 2**20:.0f} MiB"
        assert ctx.messages[-1][1].endswith("(1.1 GB, size verified)")
    finally:
        copied.unlink()


def test_concurrent_copies_of_one_task_all_land(harness: Copies) -> None:
    landing = harness.folder("landing")
    landing.mkdir(parents=True)
    contents = {f"part-{n:03d}.bin": os.urandom(300_000 + n) for n in range(40)}
    for name, content in contents.items():
        (landing / name).write_bytes(content)
    _, run = harness.run(spec(files='["*.bin"]', destination_name="{{FD_NAME}}", files_per_task="auto"))
    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert files_in(harness.folder("archive")) == contents
    assert threading.active_count() < 50  # the copy threads of the task are gone


def test_the_demo_archives_the_dropped_store_files(harness: Copies) -> None:
    dropped = drop_demo_files(harness.folder("landing"))
    _, run = harness.run(OPERATION.read_text(encoding="utf-8"))
    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    archived = files_in(harness.folder("archive"))
    assert sorted(archived.values()) == sorted(path.read_bytes() for path in dropped)
    assert all(re.fullmatch(r"stores-\d{8}-\d{6}\.csv", name) for name in archived)
    assert list(harness.tasks(run.id)) == [
        "List Files [landing]",
        "Copy [stores-1.csv]",
        "Copy [stores-2.csv]",
        "Copy [stores-3.csv]",
    ]
