"""Staging on a real temporary folder: durability, manifests, checksums and path safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.engine import arrow
from runyard.staging import Manifest, PartInfo, Staging, StagingError, StagingKey, safe_name

KEY = StagingKey(account="acme", operation_id=7, run_key="run-3", table="employees", task="page-1", attempt=1)


def table(rows: int, offset: int = 0) -> arrow.Table:
    return arrow.records_to_table(
        [{"id": offset + i, "name": f"n{offset + i}", "dept": {"id": i % 3}} for i in range(rows)]
    )


def rows_of(data: arrow.Table) -> list[dict[str, object]]:
    result: list[dict[str, object]] = data.to_pylist()
    return result


def write_task(staging: Staging, key: StagingKey, *sizes: int) -> Manifest:
    parts = tuple(staging.write_part(key, index, table(size, offset=100 * index)) for index, size in enumerate(sizes))
    manifest = Manifest(
        key=key,
        parts=parts,
        rows=sum(sizes),
        schema=parts[0].schema,
        extra={"pages": len(sizes)},
    )
    staging.write_manifest(manifest)
    return manifest


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def staging(tmp_path: Path) -> Staging:
    return Staging(str(tmp_path / "staging"))


# --- round trip -----------------------------------------------------------------------------------


def test_parts_and_manifest_round_trip(staging: Staging, tmp_path: Path) -> None:
    written = write_task(staging, KEY, 3, 2)
    assert written.parts[0].path == "acme/7/run-3/employees/page-1/attempt-1/part-00000.parquet"
    assert (tmp_path / "staging" / written.parts[1].path).is_file()
    assert (tmp_path / "staging/acme/7/run-3/employees/page-1/attempt-1/manifest.json").is_file()

    manifest = staging.read_manifest(KEY)
    assert manifest == written
    assert manifest.extra == {"pages": 2}
    assert [p.rows for p in manifest.parts] == [3, 2]
    assert arrow.schema_from_json(manifest.schema).names == ["id", "name", "dept__id"]
    first = staging.read_part(manifest.parts[0])
    assert rows_of(first) == rows_of(table(3))
    assert rows_of(staging.read_part(manifest.parts[1]))[0]["id"] == 100


def test_manifest_json_round_trip() -> None:
    part = PartInfo(path="a/1/r/t/x/attempt-1/part-00000.parquet", rows=1, size_bytes=10, sha256="ab", schema="00")
    manifest = Manifest(key=KEY, parts=(part,), rows=1, schema="00", extra={"watermark": "2024-01-01"})
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(StagingError, match="not a valid staging manifest"):
        Manifest.from_json(b'{"key": {}}')


def test_no_manifest_means_no_output(staging: Staging, tmp_path: Path) -> None:
    staging.write_part(KEY, 0, table(2))
    assert staging.read_manifest(KEY) is None
    assert staging.table_manifests("acme", 7, "run-3", "employees") == []
    leftovers = [p.name for p in (tmp_path / "staging").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_manifest_rows_must_match_parts(staging: Staging) -> None:
    part = staging.write_part(KEY, 0, table(2))
    with pytest.raises(StagingError, match="differ from the sum"):
        staging.write_manifest(Manifest(key=KEY, parts=(part,), rows=3, schema=part.schema))


def test_write_manifest_cleans_orphaned_temporaries(staging: Staging, tmp_path: Path) -> None:
    attempt_dir = tmp_path / "staging/acme/7/run-3/employees/page-1/attempt-1"
    attempt_dir.mkdir(parents=True)
    orphan = attempt_dir / ".part-00000.parquet.0123abcd.tmp"
    orphan.write_bytes(b"half a file")
    write_task(staging, KEY, 1)
    assert not orphan.exists()


def test_highest_attempt_with_a_manifest_wins(staging: Staging) -> None:
    write_task(staging, KEY, 1)
    second = StagingKey(**{**KEY.to_dict(), "attempt": 2})
    write_task(staging, second, 4)
    third = StagingKey(**{**KEY.to_dict(), "attempt": 3})
    staging.write_part(third, 0, table(9))  # crashed before its manifest
    other_task = StagingKey(**{**KEY.to_dict(), "task": "page-2"})
    write_task(staging, other_task, 2)
    staging.write_document("acme", 7, "run-3", "employees", "blueprint", {"columns": ["id"]})

    manifests = staging.table_manifests("acme", 7, "run-3", "employees")
    assert [(m.key.task, m.key.attempt, m.rows) for m in manifests] == [("page-1", 2, 4), ("page-2", 1, 2)]
    assert staging.table_manifests("acme", 7, "run-3", "departments") == []


def test_attempts_compare_as_numbers(staging: Staging) -> None:
    for attempt in (2, 10):
        write_task(staging, StagingKey(**{**KEY.to_dict(), "attempt": attempt}), attempt)
    [manifest] = staging.table_manifests("acme", 7, "run-3", "employees")
    assert manifest.key.attempt == 10


def test_documents(staging: Staging) -> None:
    assert staging.read_document("acme", 7, "run-3", "employees", "high_watermark") is None
    staging.write_document("acme", 7, "run-3", "employees", "high_watermark", {"updated_at": "2024-05-01T00:00:00Z"})
    staging.write_document("acme", 7, "run-3", "employees", "high_watermark", {"updated_at": "2024-06-01T00:00:00Z"})
    doc = staging.read_document("acme", 7, "run-3", "employees", "high_watermark")
    assert doc == {"updated_at": "2024-06-01T00:00:00Z"}
    with pytest.raises(StagingError, match="not JSON-serialisable"):
        staging.write_document("acme", 7, "run-3", "employees", "bad", {"x": object()})


def test_remove_run(staging: Staging, tmp_path: Path) -> None:
    write_task(staging, KEY, 1)
    other_run = StagingKey(**{**KEY.to_dict(), "run_key": "run-4"})
    write_task(staging, other_run, 1)
    staging.remove_run("acme", 7, "run-3")
    assert staging.read_manifest(KEY) is None
    assert staging.read_manifest(other_run) is not None
    staging.remove_run("acme", 7, "run-3")  # nothing left: no error


def test_file_url_and_memory_fsspec(tmp_path: Path) -> None:
    local = Staging(f"file://{tmp_path / 'viafile'}")
    write_task(local, KEY, 2)
    assert (tmp_path / "viafile/acme/7/run-3/employees/page-1/attempt-1/manifest.json").is_file()

    memory = Staging("memory://runyard-staging-test")
    try:
        written = write_task(memory, KEY, 2, 1)
        assert memory.read_manifest(KEY) == written
        assert rows_of(memory.read_part(written.parts[1])) == rows_of(table(1, offset=100))
        assert [m.rows for m in memory.table_manifests("acme", 7, "run-3", "employees")] == [3]
        memory.write_document("acme", 7, "run-3", "employees", "blueprint", {"a": 1})
        assert memory.read_document("acme", 7, "run-3", "employees", "blueprint") == {"a": 1}
    finally:
        memory.remove_run("acme", 7, "run-3")
    assert memory.read_manifest(KEY) is None


def test_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(StagingError, match=r"not supported|not installed"):
        Staging("nosuchproto://bucket/x")


# --- damage ---------------------------------------------------------------------------------------


def test_checksum_mismatch_is_detected(staging: Staging, tmp_path: Path) -> None:
    manifest = write_task(staging, KEY, 5)
    path = tmp_path / "staging" / manifest.parts[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StagingError, match=r"is damaged: expected .* sha256"):
        staging.read_part(manifest.parts[0])


def test_torn_file_is_detected(staging: Staging, tmp_path: Path) -> None:
    manifest = write_task(staging, KEY, 5)
    path = tmp_path / "staging" / manifest.parts[0].path
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(StagingError, match="is damaged"):
        staging.read_part(manifest.parts[0])
    path.unlink()
    with pytest.raises(StagingError, match="is missing"):
        staging.read_part(manifest.parts[0])


def test_damaged_manifest_is_reported(staging: Staging, tmp_path: Path) -> None:
    write_task(staging, KEY, 1)
    (tmp_path / "staging/acme/7/run-3/employees/page-1/attempt-1/manifest.json").write_bytes(b'{"key": ')
    with pytest.raises(StagingError, match=r"manifest .* is damaged"):
        staging.read_manifest(KEY)


def test_write_failure_leaves_no_partial_file(
    staging: Staging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StagingError, match="No space left on device"):
        staging.write_part(KEY, 0, table(3))
    monkeypatch.undo()
    assert [p for p in (tmp_path / "staging").rglob("*") if p.is_file()] == []
    write_task(staging, KEY, 3)  # a retry succeeds
    assert staging.read_manifest(KEY) is not None


# --- path safety ----------------------------------------------------------------------------------


def test_safe_name_keeps_distinct_names_distinct() -> None:
    assert safe_name("employees") == "employees"
    assert safe_name("v1.2_x-y") == "v1.2_x-y"
    a, b = safe_name("Process [employees]"), safe_name("Process (employees)")
    assert a != b
    assert a.startswith("Process__employees_-")
    assert safe_name(".hidden").startswith("_hidden-")
    assert safe_name("..\\..\\x") != safe_name("..//..//x")
    assert len(safe_name("x" * 500)) <= 100


@pytest.mark.parametrize("bad", ["", ".", "..", "a\x00b"])
def test_unsafe_names_are_refused(staging: Staging, tmp_path: Path, bad: str) -> None:
    for key in (
        StagingKey(**{**KEY.to_dict(), "account": bad}),
        StagingKey(**{**KEY.to_dict(), "table": bad}),
        StagingKey(**{**KEY.to_dict(), "task": bad}),
        StagingKey(**{**KEY.to_dict(), "run_key": bad}),
    ):
        with pytest.raises(StagingError):
            staging.write_part(key, 0, table(1))
    assert not (tmp_path / "staging").exists()


def test_bad_numbers_are_refused(staging: Staging) -> None:
    with pytest.raises(StagingError, match="operation_id"):
        staging.write_part(StagingKey(**{**KEY.to_dict(), "operation_id": -1}), 0, table(1))
    with pytest.raises(StagingError, match="attempt"):
        staging.read_manifest(StagingKey(**{**KEY.to_dict(), "attempt": -2}))
    with pytest.raises(StagingError, match="part index"):
        staging.write_part(KEY, -1, table(1))


NASTY = st.one_of(
    st.sampled_from(
        [
            "../",
            "../../etc",
            "/etc/passwd",
            "..\\..\\x",
            "%2e%2e%2f",
            "%252e%252e%252f",
            "\u2025",
            "\uff0e\uff0e",
            "acme/../../outside",
            "a/b",
            "~",
            "tenant1",
            "tenant10",
            " ",
        ]
    ),
    st.text(min_size=1, max_size=30),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(account=NASTY, table_name=NASTY, task=NASTY, run_key=NASTY)
def test_any_name_stays_inside_the_account_root(
    tmp_path: Path, account: str, table_name: str, task: str, run_key: str
) -> None:
    root = tmp_path / "hypo"
    outside_before = snapshot(tmp_path)
    staging = Staging(str(root))
    key = StagingKey(account=account, operation_id=1, run_key=run_key, table=table_name, task=task, attempt=1)
    try:
        part = staging.write_part(key, 0, table(1))
    except StagingError:
        assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("hypo")} == {
            k: v for k, v in outside_before.items() if not k.startswith("hypo")
        }
        return
    written = (root / part.path).resolve()
    account_root = (root / safe_name(account)).resolve()
    assert written.is_relative_to(account_root)
    assert len(part.path.split("/")) == 7
    staging.remove_run(account, 1, run_key)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("hypo")}
    assert after == {k: v for k, v in outside_before.items() if not k.startswith("hypo")}


def test_sibling_prefix_accounts_are_separate(staging: Staging) -> None:
    write_task(staging, StagingKey(**{**KEY.to_dict(), "account": "tenant1"}), 1)
    write_task(staging, StagingKey(**{**KEY.to_dict(), "account": "tenant10"}), 2)
    assert [m.rows for m in staging.table_manifests("tenant1", 7, "run-3", "employees")] == [1]
    assert [m.rows for m in staging.table_manifests("tenant10", 7, "run-3", "employees")] == [2]


def test_symlink_planted_in_staging_pointing_outside_is_refused(staging: Staging, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "staging/acme/7/run-3"
    run_dir.mkdir(parents=True)
    (run_dir / "employees").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StagingError, match="would leave the folder of account 'acme'"):
        staging.write_part(KEY, 0, table(1))
    with pytest.raises(StagingError, match="would leave"):
        staging.write_document("acme", 7, "run-3", "employees", "blueprint", {})
    with pytest.raises(StagingError, match="would leave"):
        staging.table_manifests("acme", 7, "run-3", "employees")
    assert list(outside.iterdir()) == []


def test_symlinked_account_folder_is_refused(staging: Staging, tmp_path: Path) -> None:
    other = tmp_path / "staging/other-tenant"
    other.mkdir(parents=True)
    (tmp_path / "staging/acme").symlink_to(other, target_is_directory=True)
    with pytest.raises(StagingError, match="would leave"):
        staging.write_part(KEY, 0, table(1))
    with pytest.raises(StagingError, match="would leave"):
        staging.remove_run("acme", 7, "run-3")
    assert list(other.iterdir()) == []


def test_symlinked_task_dirs_are_not_listed(staging: Staging, tmp_path: Path) -> None:
    write_task(staging, KEY, 1)
    elsewhere = StagingKey(**{**KEY.to_dict(), "account": "victim"})
    write_task(staging, elsewhere, 5)
    table_dir = tmp_path / "staging/acme/7/run-3/employees"
    (table_dir / "stolen").symlink_to(tmp_path / "staging/victim/7/run-3/employees/page-1")
    assert [m.rows for m in staging.table_manifests("acme", 7, "run-3", "employees")] == [1]


def test_tampered_part_path_cannot_escape(staging: Staging, tmp_path: Path) -> None:
    (tmp_path / "secret.parquet").write_bytes(b"x")
    for path in ("../secret.parquet", "/etc/passwd", "acme/../../secret.parquet", "ac me/x", "acme"):
        bogus = PartInfo(path=path, rows=1, size_bytes=1, sha256="0" * 64, schema="")
        with pytest.raises(StagingError, match="not a relative staging path"):
            staging.read_part(bogus)
