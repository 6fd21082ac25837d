"""Staging on S3 (moto's real S3 server on loopback) and on a local folder: a real api-to-table run staged under
RUNYARD_STAGING_URL=s3://bucket/prefix with only the standard AWS_* variables; parts and manifests never read half
written; the staged files of a loaded run removed (RUNYARD_STAGING_KEEP_AFTER_LOAD) and those of runs ended longer
ago than RUNYARD_STAGING_RETENTION_DAYS swept by the scheduler, in every account, never a run still going.

moto missing fails under CI=true (tests/s3_server.require_moto) and skips elsewhere, saying so.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.demo.source_api import DemoSourceConfig, DemoSourceServer, expected_counts
from runyard.domain.statuses import RunStatus, RunType
from runyard.engine import arrow
from runyard.engine.context import TaskContext, TaskIdentity, TaskOutput
from runyard.engine.ingest import ingest
from runyard.engine.load import data_load, remove_staged_files
from runyard.engine.resources import EngineResources
from runyard.operations.loader import load_text
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin, create_account
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest
from runyard.services.views import RunView
from runyard.settings import Settings
from runyard.staging import Manifest, PartInfo, Staging, StagingError, StagingKey, safe_name
from runyard.store.tables import runs, tasks
from runyard.warehouse.provider import open_warehouses
from tests.integration.api_harness import DEMO_TABLES, ApiHarness, demo_hr_text, wait_for
from tests.s3_server import KEY, REGION, SECRET, S3Server, s3_server

BUCKET = "runyard-staging"
CONFIG = DemoSourceConfig(employees=300)
WHERE = ("s3", "local")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@dataclass
class Where:
    """Where this test stages: `url` is RUNYARD_STAGING_URL (None: the default folder under home)."""

    kind: str
    home: Path
    url: str | None
    s3: S3Server | None

    @property
    def root(self) -> str:
        return self.url.removeprefix("s3://") if self.url else str(self.home / "staging")

    def files(self) -> set[str]:
        """Every staged file, relative to the staging root."""
        if self.s3 is not None:
            self.s3.fs.invalidate_cache()
            return {path[len(self.root) + 1 :] for path in self.s3.fs.find(self.root)}
        # os.walk skips a folder removed while it walks (the scheduler's thread may be removing runs)
        return {
            os.path.relpath(os.path.join(folder, name), self.root)
            for folder, _, names in os.walk(self.root)
            for name in names
        }

    def staging(self) -> Staging:
        return Staging(self.url or self.root)


def aws_environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server, tmp_path: Path) -> None:
    """Only the standard variables a deployment sets; no ~/.aws of this machine."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a filesystem made under other variables is not reused


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Where:
    for name in ("RUNYARD_STAGING_URL", "RUNYARD_STAGING_KEEP_AFTER_LOAD", "RUNYARD_STAGING_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    if request.param == "local":
        return Where("local", home, None, None)
    return s3_where(request.getfixturevalue("s3"), monkeypatch, tmp_path)


@pytest.fixture
def on_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Where:
    return s3_where(s3, monkeypatch, tmp_path)


def s3_where(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Where:
    aws_environment(monkeypatch, s3, tmp_path)
    url = f"s3://{BUCKET}/yard-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RUNYARD_STAGING_URL", url)
    return Where("s3", tmp_path / "home", url, s3)


@contextmanager
def runtime_at(home: Path) -> Iterator[Runtime]:
    """A runtime whose settings come from the environment (RUNYARD_STAGING_*), with fast leases."""
    settings = Settings(home=home, lease_seconds=3, heartbeat_seconds=0.3, poll_seconds=0.1, sweep_seconds=0.3)
    store = open_store(settings)
    bootstrap_admin(store, "harness-password-1")
    runtime = Runtime(settings, store, resources=engine_resources(settings, extra_hosts=("127.0.0.1",)))
    try:
        yield runtime
    finally:
        runtime.close()


@contextmanager
def running(home: Path) -> Iterator[ApiHarness]:
    """The demo HR source, a runtime, one worker and one scheduler; all stopped at the end."""
    source = DemoSourceServer(CONFIG)
    source.start()
    try:
        with runtime_at(home) as runtime:
            worker = runtime.worker("s3-staging")
            scheduler = runtime.scheduler()
            worker.start()
            scheduler.start()
            try:
                yield ApiHarness(runtime.settings, runtime, source, worker, scheduler)
            finally:
                worker.stop(10)
                scheduler.stop()
    finally:
        source.stop()


def task_folder(table: str, task: str) -> str:
    return f"{safe_name(table)}/{safe_name(task)}"


# --- (a) a real run staged on S3 ------------------------------------------------------------------


def test_api_run_stages_on_s3_and_loads_the_exact_rows(on_s3: Where, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_STAGING_KEEP_AFTER_LOAD", "true")  # to list what the run staged
    expected = expected_counts(CONFIG)
    with running(on_s3.home) as harness:
        assert harness.settings.resolved_staging_url == on_s3.url
        operation_id = harness.deploy_demo()
        run = harness.run(operation_id)
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
        assert harness.counts() == expected
        assert dict(harness.task(run.id, "Data Load").tables) == expected
        assert {t: harness.duplicate_ids(t) for t in DEMO_TABLES} == dict.fromkeys(DEMO_TABLES, 0)

    files = on_s3.files()
    run_root = f"default/{operation_id}/{run.run_key}"
    assert files
    assert all(path.startswith(f"{run_root}/") for path in files), sorted(files)
    assert not (on_s3.home / "staging").exists()  # nothing went to the local default
    staging = on_s3.staging()
    for table, rows in expected.items():
        for task in (f"Process [{table}]", f"{table} Consolidation"):
            folder = f"{run_root}/{task_folder(table, task)}/attempt-1"
            assert f"{folder}/manifest.json" in files, (folder, sorted(files))
            manifest = staging.read_manifest(StagingKey("default", operation_id, run.run_key, table, task, 1))
            assert manifest is not None
            assert manifest.rows == rows
            assert {part.path for part in manifest.parts} <= files
            assert sum(staging.read_part(part).num_rows for part in manifest.parts) == rows
        assert f"{run_root}/{safe_name(table)}/.documents/{safe_name(f'Ingestion [{table}].attempt-1')}.json" in files
    assert on_s3.s3 is not None
    assert on_s3.s3.pending_uploads(BUCKET) == []


# --- (b) never half a file ------------------------------------------------------------------------

KEY_1 = StagingKey(account="acme", operation_id=7, run_key="run-3", table="employees", task="Process [e]", attempt=1)


def people(rows: int, offset: int = 0) -> arrow.Table:
    return arrow.records_to_table([{"id": offset + i, "name": f"n{offset + i}"} for i in range(rows)])


def write_task(staging: Staging, key: StagingKey, *sizes: int) -> Manifest:
    parts = tuple(staging.write_part(key, i, people(size, 100 * i)) for i, size in enumerate(sizes))
    manifest = Manifest(key=key, parts=parts, rows=sum(sizes), schema=parts[0].schema)
    staging.write_manifest(manifest)
    return manifest


def attempt(key: StagingKey, number: int) -> StagingKey:
    return StagingKey(**{**key.to_dict(), "attempt": number})


def test_an_upload_started_and_not_completed_is_never_read(on_s3: Where) -> None:
    assert on_s3.s3 is not None
    staging = on_s3.staging()
    first = write_task(staging, KEY_1, 3, 2)
    second = attempt(KEY_1, 2)
    folder = f"{on_s3.root}/acme/7/run-3/employees/{safe_name('Process [e]')}/attempt-2"
    bucket, prefix = on_s3.root.split("/", 1)
    pending = {}
    for name in ("part-00000.parquet", "manifest.json"):  # a writer killed between upload_part and complete
        key = f"{folder.split('/', 1)[1]}/{name}"
        upload = on_s3.s3.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        body = b"PAR1" + os.urandom(5 * 2**20) if name.endswith("parquet") else first.to_json()
        on_s3.s3.fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
        pending[name] = upload["UploadId"]
    assert sorted(k for k in on_s3.s3.pending_uploads(bucket) if k.startswith(prefix)) == sorted(
        f"{folder.split('/', 1)[1]}/{name}" for name in pending
    )

    assert staging.read_manifest(second) is None
    assert staging.table_manifests("acme", 7, "run-3", "employees") == [first]  # attempt 1 is the output
    half = PartInfo(f"{first.parts[0].path.replace('attempt-1', 'attempt-2')}", 3, 10, "00" * 32, first.schema)
    with pytest.raises(StagingError, match=f"staged file {half.path} is missing"):
        staging.read_part(half)

    # A writer of the same key later aborts what the dead one left, and its own object appears whole.
    big = arrow.records_to_table([{"id": i, "blob": os.urandom(3000).hex()} for i in range(1700)])  # ~10 MB
    part = staging.write_part(second, 0, big)
    assert part.size_bytes > 8 * 2**20  # past one put: a multipart upload, completed at the end
    assert on_s3.s3.etag(f"{on_s3.root}/{part.path}").endswith("-2")
    assert f"{folder.split('/', 1)[1]}/part-00000.parquet" not in on_s3.s3.pending_uploads(bucket)
    assert staging.read_part(part).num_rows == 1700


def test_a_manifest_is_written_only_after_all_its_parts(where: Where) -> None:
    staging = where.staging()
    written = staging.write_part(KEY_1, 0, people(3))
    unwritten = PartInfo(written.path.replace("part-00000", "part-00001"), 2, 900, "ab" * 32, written.schema)
    with pytest.raises(StagingError, match=f"its part {unwritten.path} is missing"):
        staging.write_manifest(Manifest(KEY_1, (written, unwritten), 5, written.schema))
    short = PartInfo(written.path, 3, written.size_bytes + 1, written.sha256, written.schema)
    with pytest.raises(StagingError, match=f"its part {written.path} is {written.size_bytes} bytes, not"):
        staging.write_manifest(Manifest(KEY_1, (short,), 3, written.schema))
    assert staging.read_manifest(KEY_1) is None  # refused: no manifest, so no output
    assert all(not path.endswith("manifest.json") for path in where.files())

    staging.write_manifest(Manifest(KEY_1, (written,), 3, written.schema))
    assert staging.read_manifest(KEY_1) is not None


def test_a_part_that_does_not_match_its_manifest_is_refused_naming_it(where: Where) -> None:
    staging = where.staging()
    manifest = write_task(staging, KEY_1, 4, 3)
    good, bad = manifest.parts
    data = bytearray(read_staged(where, bad.path))
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    write_staged(where, bad.path, bytes(data))
    with pytest.raises(StagingError, match=f"staged file {bad.path} is damaged: expected {bad.size_bytes} bytes"):
        staging.read_part(bad)
    write_staged(where, bad.path, bytes(data[:-10]))  # truncated
    with pytest.raises(StagingError, match=f"staged file {bad.path} is damaged.*found {bad.size_bytes - 10} bytes"):
        staging.read_part(bad)
    assert staging.read_part(good).num_rows == 4


def test_ingestion_refuses_a_damaged_part_and_stages_nothing(on_s3: Where, tmp_path: Path) -> None:
    staging = on_s3.staging()
    consolidated = StagingKey("default", 7, "20240501-101500-run", "people", "people Consolidation", 1)
    manifest = write_task(staging, consolidated, 5, 5)
    damaged = manifest.parts[1]
    write_staged(on_s3, damaged.path, read_staged(on_s3, damaged.path)[:-1] + b"!")
    resources = EngineResources(staging=staging, warehouses=open_warehouses(str(tmp_path / "warehouse")))
    identity = TaskIdentity("default", 7, consolidated.run_key, "destructive", "Ingestion [people]", 1, "people")
    upstream = TaskOutput("people Consolidation", consolidated.run_key, 1, True, "people")
    try:
        with pytest.raises(Exception, match=f"{damaged.path} is damaged") as refused:
            ingest(TaskContext(identity, {}, (upstream,)), resources)
        assert "sha256" in str(refused.value)
        assert resources.warehouses.for_account("default").staged_runs() == set()  # nothing staged from it
    finally:
        resources.warehouses.close_all()


def read_staged(where: Where, path: str) -> bytes:
    if where.s3 is not None:
        return bytes(where.s3.fs.cat_file(f"{where.root}/{path}"))
    return (Path(where.root) / path).read_bytes()


def write_staged(where: Where, path: str, data: bytes) -> None:
    if where.s3 is not None:
        where.s3.fs.pipe_file(f"{where.root}/{path}", data)
    else:
        (Path(where.root) / path).write_bytes(data)


# --- (c) cleanup after the load, and the retention sweep ------------------------------------------


def test_a_loaded_run_leaves_no_staged_files_and_a_retried_load_loads_nothing(where: Where) -> None:
    expected = expected_counts(CONFIG)
    with running(where.home) as harness:
        operation_id = harness.deploy_demo()
        run = harness.run(operation_id)
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
        assert harness.counts() == expected
        assert where.files() == set()  # every part, manifest and document of the run: gone

        # The Data Load again (its worker died after the commit and the removal): the load record answers.
        resources = harness.runtime.resources
        assert resources is not None
        ctx = load_context(harness, run, attempt=2)
        data_load(ctx, resources)
        assert dict(ctx.tables) == expected
        assert [level for level, _ in ctx.messages] == ["info"], ctx.messages
        assert "already been loaded" in ctx.messages[0][1]
        assert harness.counts() == expected


def load_context(harness: ApiHarness, run: RunView, *, attempt: int) -> TaskContext:
    with harness.runtime.store.read() as conn:
        params = conn.execute(
            sa.select(tasks.c.params).where(tasks.c.run_id == run.id, tasks.c.name == "Data Load")
        ).scalar_one()
    identity = TaskIdentity("default", run.operation_id, run.run_key, "destructive", "Data Load", attempt, None)
    inputs = tuple(TaskOutput(f"Ingestion [{t}]", run.run_key, 1, True, t) for t in DEMO_TABLES)
    return TaskContext(identity, params, inputs)


def test_keep_after_load_keeps_the_staged_files(where: Where, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_STAGING_KEEP_AFTER_LOAD", "true")
    with running(where.home) as harness:
        assert harness.runtime.resources is not None
        assert harness.runtime.resources.remove_staged_after_load is False
        run = harness.run(harness.deploy_demo())
        assert run.status is RunStatus.COMPLETED, harness.describe(run.id)
    files = where.files()
    assert any(path.endswith("manifest.json") for path in files)
    assert any(path.endswith(".parquet") for path in files)


def test_files_a_retry_may_reuse_are_kept_after_the_load(where: Where, tmp_path: Path) -> None:
    staging = where.staging()
    resources = EngineResources(staging=staging, warehouses=open_warehouses(str(tmp_path / "warehouse")))
    key = StagingKey("default", 7, "20240501-101500-r", "people", "Process [people]", 1)
    write_task(staging, key, 2)
    identity = TaskIdentity("default", 7, key.run_key, "destructive", "Data Load", 1, None)
    done = TaskOutput("Ingestion [people]", key.run_key, 1, True, "people")
    failed = TaskOutput("Ingestion [other]", key.run_key, 1, False, "other")
    try:
        remove_staged_files(TaskContext(identity, {}, (done, failed)), resources)  # the run may fail: a retry
        assert staging.read_manifest(key) is not None
        canceled = TaskContext(identity, {}, (done,))
        canceled.interrupt.set()  # a cancel reached the task: the run may end Canceled
        remove_staged_files(canceled, resources)
        assert staging.read_manifest(key) is not None
        remove_staged_files(TaskContext(identity, {}, (done,)), resources)  # it ends Completed: nothing needs them
        assert staging.read_manifest(key) is None
        assert where.files() == set()
    finally:
        resources.warehouses.close_all()


@dataclass
class Runs:
    """Runs in the store, with something staged under each."""

    runtime: Runtime
    ended: list[RunView]  # Canceled before they ran
    other_account: RunView  # ended too, of account "acme"
    going: RunView  # still waiting to start
    reused: RunView  # ended, but `going` reuses one of its tasks' output


def make_runs(runtime: Runtime) -> Runs:
    create_account(runtime.store, "acme")
    text = demo_hr_text("http://127.0.0.1:9")
    operations = {}
    for number, account in enumerate(("default", "default", "default", "acme")):
        spec = text.replace("configuration_id: demo-hr", f"configuration_id: demo-hr-{number}")
        (deployed,) = deploy(runtime.store, load_text(f"account: {account}\n{spec}"), runtime.registry)
        operations[number] = deployed.operation_id

    def launch(number: int) -> RunView:
        return runtime.runs.launch(LaunchRequest(operation_id=operations[number], run_type=RunType.DESTRUCTIVE))

    def ended(number: int) -> RunView:
        run = runtime.runs.cancel(launch(number).id)
        assert run.status is RunStatus.CANCELED
        return run

    first, second, reused, other = ended(0), ended(1), ended(2), ended(3)
    going = launch(2)
    with runtime.store.write() as conn:  # as a retry of `reused` would: one of its tasks' output is reused
        made = conn.execute(sa.select(sa.func.min(tasks.c.id)).where(tasks.c.run_id == reused.id)).scalar_one()
        waiting = conn.execute(sa.select(sa.func.min(tasks.c.id)).where(tasks.c.run_id == going.id)).scalar_one()
        conn.execute(tasks.update().where(tasks.c.id == waiting).values(reused_from=made))
    staging = runtime.staging
    for run, account in ((first, "default"), (second, "default"), (reused, "default"), (going, "default")):
        write_task(staging, StagingKey(account, run.operation_id, run.run_key, "employees", "Process [e]", 1), 2)
    write_task(staging, StagingKey("acme", other.operation_id, other.run_key, "employees", "Process [e]", 1), 2)
    write_task(staging, StagingKey("default", 99, "not-a-run-of-this-store", "employees", "Process [e]", 1), 1)
    staging.write_export_page("default", "session-1", 1, b"cached page")
    return Runs(runtime, [first, second], other, going, reused)


def staged_run_keys(where: Where) -> set[str]:
    return {path.split("/")[2] for path in where.files() if path.split("/")[1] != ".exports"}


def ended_at(runtime: Runtime, run: RunView) -> Any:
    with runtime.store.read() as conn:
        return conn.execute(sa.select(runs.c.completed_at).where(runs.c.id == run.id)).scalar_one()


def test_the_retention_sweep_removes_ended_runs_of_every_account(
    where: Where, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RUNYARD_STAGING_RETENTION_DAYS", "7")
    with runtime_at(where.home) as runtime:
        made = make_runs(runtime)
        everything = {r.run_key for r in (*made.ended, made.other_account, made.going, made.reused)}
        assert staged_run_keys(where) == everything | {"not-a-run-of-this-store"}
        scheduler = runtime.scheduler()
        now = max(ended_at(runtime, run) for run in made.ended)

        assert scheduler.sweep_staged_files(now + timedelta(days=6, hours=23)) == []
        assert staged_run_keys(where) == everything | {"not-a-run-of-this-store"}

        with caplog.at_level(logging.INFO, logger="runyard.scheduler"):
            removed = scheduler.sweep_staged_files(now + timedelta(days=7, minutes=1))
        assert {run.run_key for run in removed} == {r.run_key for r in (*made.ended, made.other_account)}
        assert {run.account for run in removed} == {"default", "acme"}
        assert staged_run_keys(where) == {made.going.run_key, made.reused.run_key, "not-a-run-of-this-store"}
        assert "removed the staged files of 3 runs that ended more than 7 days ago" in caplog.text
        assert any(path.startswith("default/.exports/") for path in where.files())  # export caches are not runs

        runtime.runs.cancel(made.going.id)  # nothing goes on: what it reused may go too
        later = ended_at(runtime, made.going) + timedelta(days=8)
        assert {run.run_key for run in scheduler.sweep_staged_files(later)} == {made.going.run_key, made.reused.run_key}
        assert staged_run_keys(where) == {"not-a-run-of-this-store"}


def test_the_leading_schedulers_sweep_removes_them_on_its_own(
    where: Where, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    retention = timedelta(seconds=0.2)
    monkeypatch.setenv("RUNYARD_STAGING_RETENTION_DAYS", str(retention / timedelta(days=1)))
    with runtime_at(where.home) as runtime:
        made = make_runs(runtime)
        newest = max(ended_at(runtime, run) for run in (*made.ended, made.other_account, made.reused))

        def database_now() -> Any:
            with runtime.store.read() as conn:
                return runtime.store.now(conn)

        wait_for(lambda: database_now() > newest + retention, timeout=10, what="the runs to be past the retention")
        scheduler = runtime.scheduler()
        with caplog.at_level(logging.INFO, logger="runyard.scheduler"):
            scheduler.start()
            try:
                wait_for(
                    lambda: (
                        staged_run_keys(where) == {made.going.run_key, made.reused.run_key, "not-a-run-of-this-store"}
                    ),
                    timeout=30,
                    what="the scheduler's sweep to remove the staged files of the ended runs",
                )
            finally:
                scheduler.stop()
        assert "removed the staged files of 3 runs that ended more than" in caplog.text


def test_retention_zero_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_STAGING_RETENTION_DAYS", "0")
    monkeypatch.delenv("RUNYARD_STAGING_URL", raising=False)
    where = Where("local", tmp_path / "home", None, None)
    with runtime_at(where.home) as runtime:
        made = make_runs(runtime)
        assert runtime.scheduler().sweep_staged_files(ended_at(runtime, made.ended[0]) + timedelta(days=3650)) == []
    assert len(staged_run_keys(where)) == 6


def test_settings_read_the_staging_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (Settings(home=tmp_path).staging_keep_after_load, Settings(home=tmp_path).staging_retention_days) == (
        False,
        7.0,
    )
    monkeypatch.setenv("RUNYARD_STAGING_URL", f"s3://{BUCKET}/prefix")
    monkeypatch.setenv("RUNYARD_STAGING_KEEP_AFTER_LOAD", "true")
    monkeypatch.setenv("RUNYARD_STAGING_RETENTION_DAYS", "30")
    settings = Settings(home=tmp_path)
    assert settings.resolved_staging_url == f"s3://{BUCKET}/prefix"
    assert (settings.staging_keep_after_load, settings.staging_retention_days) == (True, 30.0)
    monkeypatch.setenv("RUNYARD_STAGING_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="staging_retention_days"):
        Settings(home=tmp_path)
