"""Path traversal in storage-to-storage copies (RELIABILITY.md S12).

Folder names that climb out (`..`, `..\\`, NUL) are refused when the configuration is read; folders outside the
allowed roots (absolute paths, a sibling root `files2` of `files`), percent-encoded dots (a folder literally so
named, inside the root) and a symbolic link to a file outside planted in a source folder are refused by the listing
task before any file is copied; a planted link to a folder outside is not walked. After each, the tree outside the
root (a sibling root `files2`, a `secrets` folder) is exactly as it was, sizes and modification times included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.domain.statuses import RunStatus
from runyard.errors import ConfigError
from runyard.operations.loader import load_text
from tests.integration.test_storage_to_storage import Copies, _refused, copies, spec, stores_files


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Copies]:
    with copies(tmp_path_factory.mktemp("traversal") / "home") as running:
        yield running


@pytest.fixture
def outside(harness: Copies) -> Iterator[Path]:
    """Files next to the root (in <home>, in a sibling root `files2`, in /tmp-like places): never touched."""
    home = harness.root.parent
    stores_files(home / "files2" / "landing", count=2)
    stores_files(home / "secrets", count=1)
    (home / "secrets" / "passwords.csv").write_text("admin,hunter2\n")
    before = tree(home, skip=harness.root)
    yield home
    assert tree(home, skip=harness.root) == before


def tree(folder: Path, skip: Path) -> list[tuple[str, int, int]]:
    """Every path under `folder` but `skip` and the runtime's own files, with its size and modification time."""
    own = ("runyard.db", "staging", "warehouse", "runyard.db-wal", "runyard.db-shm", "runyard.db.scheduler.lock")
    return sorted(
        (str(path.relative_to(folder)), path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
        if not path.is_relative_to(skip) and path.relative_to(folder).parts[0] not in own
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source", "../secrets"),
        ("source", "landing/../../secrets"),
        ("source", '"..\\\\secrets"'),
        ("source", '"landing\\\\..\\\\..\\\\secrets"'),
        ("source", '"landing\\0"'),
        ("destination", "../secrets"),
        ("destination", "archive/../../files2"),
        ("destination", '"..\\\\files2"'),
        ("destination", '"archive\\0x"'),
        ("destination_name", "../{{FD_NAME}}"),
        ("destination_name", "/tmp/{{FD_NAME}}"),
        ("destination_name", "a/../../{{FD_NAME}}"),
        ("destination_name", "{{FD_NAME}}\\0"),  # the YAML string's escape: a NUL
    ],
)
def test_climbing_names_are_refused_when_the_configuration_is_read(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_text(spec(**{field: value}))  # type: ignore[arg-type]
    assert field in str(refused.value), str(refused.value)


def test_an_absolute_folder_in_a_sibling_root_is_refused(harness: Copies, outside: Path) -> None:
    stores_files(harness.folder("landing"), count=1)
    sibling = outside / "files2" / "landing"
    _refused(
        harness, spec(name="sibling-src", source=str(sibling)), f"source folder {sibling} is not under an allowed root"
    )
    _refused(
        harness,
        spec(name="sibling-dst", destination=str(outside / "files2" / "archive")),
        "destination folder",
    )
    _refused(harness, spec(name="abs-secrets", source=str(outside / "secrets")), "is not under an allowed root")
    _refused(harness, spec(name="etc", source="/etc", files='["passwd"]'), "source folder /etc is not under")


def test_percent_encoded_dots_are_a_folder_name_inside_the_root(harness: Copies, outside: Path) -> None:
    stores_files(harness.folder("landing"), count=1)
    _refused(
        harness,
        spec(name="encoded", source='"%2e%2e%2fsecrets"'),
        f"source folder %2e%2e%2fsecrets does not exist ({harness.root / '%2e%2e%2fsecrets'})",
    )
    _, run = harness.run(spec(name="encoded-dst", destination='"%2e%2e%2ffiles2"', destination_name="{{FD_NAME}}"))
    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert (harness.root / "%2e%2e%2ffiles2" / "stores-1.csv").is_file()  # inside the root, literally so named


def test_a_symbolic_link_to_a_file_outside_planted_in_the_source_is_refused(harness: Copies, outside: Path) -> None:
    landing = harness.folder("planted")
    stores_files(landing, count=1)
    (landing / "stores-7.csv").symlink_to(outside / "secrets" / "passwords.csv")
    _refused(harness, spec(name="planted-file", source="planted"), "is a symbolic link to")


def test_a_symbolic_link_to_a_folder_outside_planted_in_the_source_is_not_walked(
    harness: Copies, outside: Path
) -> None:
    landing = harness.folder("planted-dir")
    stores_files(landing, count=1)
    (landing / "more").symlink_to(outside / "secrets")
    _, run = harness.run(spec(name="planted-dir", source="planted-dir", files='["**/*.csv"]', destination="kept"))
    copied = sorted(str(p.relative_to(harness.folder("kept"))) for p in harness.folder("kept").rglob("*"))
    # The listing does not walk a linked folder: only the file really inside is copied, nothing from `secrets`.
    assert run.status is RunStatus.COMPLETED, harness.messages(run.id)
    assert copied == ["stores-20240501-101501.csv"], copied
