"""Staging: the files handed from one stage of a run to the next (extract -> load).

Layout under the staging root (a local folder by default, any fsspec URL otherwise)::

    <root>/<account>/<operation_id>/<run_key>/<table>/<task>/attempt-<n>/part-00000.parquet
                                                                        /manifest.json
    <root>/<account>/<operation_id>/<run_key>/<table>/.documents/<name>.json

Durability: every file is written under a temporary name, flushed, fsynced and atomically renamed
(local folders), or as one S3 object whose put (or multipart upload, completed only at the end) carries
the MD5 S3 checks, so a reader never sees half a file: an upload started and not completed is no object.
A task's output exists once its manifest does: the manifest is written last, only once every part it
lists is there with its size (:meth:`Staging.write_manifest` checks), and lists each part with its
size and sha256, which :meth:`Staging.read_part` verifies before a byte of it is used.

Cleanup: once a run's Data Load committed, its folder is removed (``RUNYARD_STAGING_KEEP_AFTER_LOAD``,
runyard.engine.load); the scheduler removes the folders of runs that ended more than
``RUNYARD_STAGING_RETENTION_DAYS`` ago (:meth:`Staging.staged_runs`, :meth:`Staging.remove_run`).

Path safety (S12): every name that reaches a path (account, run key, table, task, document name)
becomes a slug of ``[A-Za-z0-9_.-]`` that never starts with a dot (names starting with a dot are
runyard's own: temporary files, ``.documents``); a name that had to change gets a short hash
suffix so that different names stay different. After joining, the real path (symlinks resolved,
for local folders) must stay inside ``<root>/<account>/``; otherwise StagingError before any I/O.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from runyard.engine import arrow
from runyard.faults import crash_point
from runyard.staging.storage import StagingError, human_bytes, open_storage

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "PartInfo",
    "StagedRun",
    "Staging",
    "StagingError",
    "StagingKey",
    "part_name",
    "safe_name",
]

MANIFEST_NAME = "manifest.json"
DOCUMENTS_DIR = ".documents"
EXPORTS_DIR = ".exports"  # <account>/.exports/<session>/page-<n>: the pages an export session cached
_MANIFEST_VERSION = 1
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_ATTEMPT_DIR = re.compile(r"attempt-(\d+)")
_MAX_SLUG = 100
_REMOVE_ATTEMPTS = 5
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}  # no room left on the disk, or in the user's quota on it


# --- names ----------------------------------------------------------------------------------------


def safe_name(name: str, *, what: str = "name") -> str:
    """``name`` as a path component: letters, digits, ``_``, ``-``, ``.``; changed names get a hash suffix.

    Refuses (StagingError) an empty name, ``.``, ``..`` and names containing NUL.
    """
    if not isinstance(name, str) or not name:
        raise StagingError(f"staging {what} must be a non-empty text")
    if "\x00" in name:
        raise StagingError(f"staging {what} {name!r} contains a NUL character")
    if name in (".", ".."):
        raise StagingError(f"staging {what} {name!r} is not allowed: it would leave its folder")
    slug = _SAFE_CHARS.sub("_", name)
    if slug.startswith("."):
        slug = "_" + slug[1:]
    if slug != name or len(slug) > _MAX_SLUG:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        slug = f"{slug[: _MAX_SLUG - 11]}-{digest}"
    return slug


def part_name(index: int) -> str:
    """File name of part ``index`` (``part-00000.parquet``)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StagingError(f"part index must be an integer >= 0, got {index!r}")
    return f"part-{index:05d}.parquet"


def _number(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StagingError(f"staging {what} must be an integer >= {minimum}, got {value!r}")
    return value


# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagingKey:
    """Identifies the output folder of one attempt of one task."""

    account: str
    operation_id: int
    run_key: str
    table: str
    task: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "operation_id": self.operation_id,
            "run_key": self.run_key,
            "table": self.table,
            "task": self.task,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StagingKey:
        return cls(
            account=str(data["account"]),
            operation_id=int(data["operation_id"]),
            run_key=str(data["run_key"]),
            table=str(data["table"]),
            task=str(data["task"]),
            attempt=int(data["attempt"]),
        )


@dataclass(frozen=True)
class StagedRun:
    """A run's folder under the staging root: `<account>/<operation_id>/<run_key>/` (account: the folder's name)."""

    account: str
    operation_id: int
    run_key: str


@dataclass(frozen=True)
class PartInfo:
    """One Parquet part as written: path relative to the staging root, rows, size, sha256, schema."""

    path: str
    rows: int
    size_bytes: int
    sha256: str
    schema: str  # arrow.schema_to_json

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": self.rows,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "schema": self.schema,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartInfo:
        return cls(
            path=str(data["path"]),
            rows=int(data["rows"]),
            size_bytes=int(data["size_bytes"]),
            sha256=str(data["sha256"]),
            schema=str(data["schema"]),
        )


@dataclass(frozen=True)
class Manifest:
    """A task attempt's output: its parts, total rows, the schema (arrow.schema_to_json), extras."""

    key: StagingKey
    parts: tuple[PartInfo, ...]
    rows: int
    schema: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The manifest as JSON bytes (``extra`` must be JSON-serialisable)."""
        return orjson.dumps(
            {
                "version": _MANIFEST_VERSION,
                "key": self.key.to_dict(),
                "parts": [part.to_dict() for part in self.parts],
                "rows": self.rows,
                "schema": self.schema,
                "extra": dict(self.extra),
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Parse :meth:`to_json` output; StagingError when it is not a manifest."""
        try:
            doc = orjson.loads(data)
            return cls(
                key=StagingKey.from_dict(doc["key"]),
                parts=tuple(PartInfo.from_dict(p) for p in doc["parts"]),
                rows=int(doc["rows"]),
                schema=str(doc["schema"]),
                extra=dict(doc.get("extra") or {}),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StagingError(f"not a valid staging manifest: {exc}") from None


# --- staging --------------------------------------------------------------------------------------


class Staging:
    """Reads and writes staged parts, manifests and small documents; see the module docstring."""

    def __init__(self, url: str) -> None:
        """Open a staging root: a local path, ``file://`` URL, or another fsspec URL (``s3://`` needs s3fs)."""
        self.url = url
        self._storage = open_storage(url)

    # -- paths --

    def _path(self, account: str, *components: str) -> str:
        """Absolute path of ``components`` under the account's folder, checked to stay inside it."""
        account_dir = safe_name(account, what="account")
        path = self._storage.join(account_dir, *components)
        if not self._storage.inside(path, self._storage.join(account_dir)):
            raise StagingError(
                f"staging path {self._relative(path)} would leave the folder of account {account!r}; "
                "refusing (a symbolic link or an unsafe name)"
            )
        return path

    def _relative(self, path: str) -> str:
        rel = path[len(self._storage.root) :].lstrip("/" + os.sep)
        return rel.replace(os.sep, "/")

    def _run_parts(self, operation_id: int, run_key: str) -> tuple[str, str]:
        return str(_number(operation_id, "operation_id", 0)), safe_name(run_key, what="run key")

    def _table_parts(self, operation_id: int, run_key: str, table: str) -> tuple[str, ...]:
        return (*self._run_parts(operation_id, run_key), safe_name(table, what="table"))

    def _attempt_path(self, key: StagingKey, *tail: str) -> str:
        return self._path(
            key.account,
            *self._table_parts(key.operation_id, key.run_key, key.table),
            safe_name(key.task, what="task"),
            f"attempt-{_number(key.attempt, 'attempt', 0)}",
            *tail,
        )

    # -- parts --

    def write_part(self, key: StagingKey, index: int, table: arrow.Table) -> PartInfo:
        """Write part ``index`` of a task attempt as Parquet (temp name, fsync, atomic rename)."""
        path = self._attempt_path(key, part_name(index))
        buffer = io.BytesIO()
        arrow.write_parquet(table, buffer)
        data = buffer.getvalue()
        self._write(path, data)
        return PartInfo(
            path=self._relative(path),
            rows=int(table.num_rows),
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            schema=arrow.schema_to_json(table.schema),
        )

    def read_part(self, part: PartInfo) -> arrow.Table:
        """Read a part, verifying its size and sha256 first (StagingError on a torn or altered file)."""
        path = self._part_path(part.path)
        data = self._read(path)
        if data is None:
            raise StagingError(f"staged file {part.path} is missing; the task that wrote it must run again")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != part.size_bytes or digest != part.sha256:
            raise StagingError(
                f"staged file {part.path} is damaged: expected {part.size_bytes} bytes with sha256 "
                f"{part.sha256[:12]}…, found {len(data)} bytes with sha256 {digest[:12]}…; "
                "the task that wrote it must run again"
            )
        return arrow.read_parquet(io.BytesIO(data))

    def _part_path(self, relative: str) -> str:
        components = relative.split("/")
        if not relative or relative.startswith("/") or any(c in ("", ".", "..") or "\x00" in c for c in components):
            raise StagingError(f"staged part path {relative!r} is not a relative staging path")
        account, *rest = components
        if safe_name(account, what="account") != account or not rest:
            raise StagingError(f"staged part path {relative!r} is not a relative staging path")
        return self._path(account, *rest)

    # -- manifests --

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the manifest last: from then on the attempt's output exists. Cleans leftover temp files."""
        total = sum(part.rows for part in manifest.parts)
        if total != manifest.rows:
            raise StagingError(f"manifest rows {manifest.rows} differ from the sum of its parts' rows ({total})")
        path = self._attempt_path(manifest.key, MANIFEST_NAME)
        self._check_parts_written(manifest, path)
        self._write(path, manifest.to_json())
        crash_point("stage.after_rename")  # the attempt's output exists; its task has not finished
        with contextlib.suppress(OSError):
            self._storage.remove_temporaries(self._attempt_path(manifest.key))

    def read_manifest(self, key: StagingKey) -> Manifest | None:
        """The manifest of exactly this attempt, or None when it was never (completely) written."""
        path = self._attempt_path(key, MANIFEST_NAME)
        data = self._read(path)
        return None if data is None else self._parse_manifest(data, path)

    def table_manifests(self, account: str, operation_id: int, run_key: str, table: str) -> list[Manifest]:
        """For each task folder of a table, the manifest of its highest attempt that has one."""
        table_path = self._path(account, *self._table_parts(operation_id, run_key, table))
        manifests = []
        for task_dir in self._list_dirs(table_path):
            if task_dir.startswith("."):
                continue
            task_parts = (*self._table_parts(operation_id, run_key, table), task_dir)
            task_path = self._path(account, *task_parts)
            attempts = sorted(
                (int(m.group(1)) for d in self._list_dirs(task_path) if (m := _ATTEMPT_DIR.fullmatch(d))),
                reverse=True,
            )
            for attempt in attempts:
                path = self._path(account, *task_parts, f"attempt-{attempt}", MANIFEST_NAME)
                data = self._read(path)
                if data is not None:
                    manifests.append(self._parse_manifest(data, path))
                    break
        return manifests

    def _check_parts_written(self, manifest: Manifest, path: str) -> None:
        """Every part the manifest lists is there, whole (its size): a manifest never announces a part still
        being written, or one that failed. One listing per 1,000 parts on S3, a stat per part locally."""
        paths = {part.path: self._part_path(part.path) for part in manifest.parts}
        found: dict[str, Any] = {}
        self._io(path, "check the parts of", lambda: found.update(self._storage.infos(list(paths.values()))))
        for part in manifest.parts:
            info = found.get(paths[part.path])
            if info is None or info.size != part.size_bytes:
                state = "missing" if info is None else f"{info.size} bytes, not {part.size_bytes}"
                raise StagingError(
                    f"staged manifest {self._relative(path)} was not written: its part {part.path} is {state}; "
                    "the task that writes them must run again"
                )

    def _parse_manifest(self, data: bytes, path: str) -> Manifest:
        try:
            return Manifest.from_json(data)
        except StagingError as exc:
            raise StagingError(f"staged manifest {self._relative(path)} is damaged: {exc}") from None

    # -- documents --

    def write_document(
        self, account: str, operation_id: int, run_key: str, table: str, name: str, data: Mapping[str, Any]
    ) -> None:
        """Write a small JSON document at the table level (blueprint, high watermark...)."""
        path = self._document_path(account, operation_id, run_key, table, name)
        try:
            payload = orjson.dumps(dict(data), option=orjson.OPT_INDENT_2)
        except TypeError as exc:
            raise StagingError(f"staging document {name!r} is not JSON-serialisable: {exc}") from None
        self._write(path, payload)

    def read_document(
        self, account: str, operation_id: int, run_key: str, table: str, name: str
    ) -> dict[str, Any] | None:
        """A document written by :meth:`write_document`, or None."""
        path = self._document_path(account, operation_id, run_key, table, name)
        data = self._read(path)
        if data is None:
            return None
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StagingError(f"staged document {self._relative(path)} is damaged: {exc}") from None
        if not isinstance(doc, dict):
            raise StagingError(f"staged document {self._relative(path)} is not a JSON object")
        return doc

    def _document_path(self, account: str, operation_id: int, run_key: str, table: str, name: str) -> str:
        file_name = safe_name(name, what="document name") + ".json"
        return self._path(account, *self._table_parts(operation_id, run_key, table), DOCUMENTS_DIR, file_name)

    # -- runs --

    def remove_run(self, account: str, operation_id: int, run_key: str) -> None:
        """Delete everything staged for one run (no error when nothing is there). `account` may also be the
        folder name :meth:`staged_runs` gave (an account's folder name is its own folder name)."""
        path = self._path(account, *self._run_parts(operation_id, run_key))
        self._io(path, "remove", lambda: self._storage.remove_tree(path))

    def staged_runs(self) -> list[StagedRun]:
        """Every run folder under the staging root, of every account: `<account>/<operation_id>/<run_key>/`.
        Export caches (`<account>/.exports/`) and folders that are not an operation's are left out."""
        found = []
        for account in self._list_dirs(self._storage.root):
            if account.startswith(".") or safe_name(account, what="account") != account:
                continue
            for operation in self._list_dirs(self._storage.join(account)):
                if not operation.isdigit():
                    continue
                for run_key in self._list_dirs(self._path(account, operation)):
                    if not run_key.startswith(".") and safe_name(run_key, what="run key") == run_key:
                        found.append(StagedRun(account, int(operation), run_key))
        return found

    # -- export caches (spec 004) --

    def _export_path(self, account: str, session: str, *tail: str) -> str:
        return self._path(account, EXPORTS_DIR, safe_name(session, what="export session"), *tail)

    def write_export_page(self, account: str, session: str, number: int, data: bytes) -> None:
        """Cache page `number` of an export session: whole or absent to a reader, not fsynced (a cache)."""
        path = self._export_path(account, session, f"page-{_number(number, 'page', 1):08d}")
        self._io(path, "write", lambda: self._storage.write_cache(path, data))

    def read_export_page(self, account: str, session: str, number: int) -> bytes | None:
        """A cached page, None when it is not (or no longer) cached."""
        return self._read(self._export_path(account, session, f"page-{_number(number, 'page', 1):08d}"))

    def remove_export(self, account: str, session: str) -> None:
        """Delete every cached page of an export session (no error when nothing is there)."""
        path = self._export_path(account, session)
        for _ in range(_REMOVE_ATTEMPTS):
            try:
                self._storage.remove_tree(path)
                return
            except OSError as error:  # a page written meanwhile (an exporter of another process): its folder is
                if error.errno != errno.ENOTEMPTY:  # not empty; it stops at its next page, so try again
                    break
        self._io(path, "remove", lambda: self._storage.remove_tree(path))

    # -- I/O with clear errors --

    def _write(self, path: str, data: bytes) -> None:
        self._io(path, "write", lambda: self._storage.write_atomic(path, data))

    def _read(self, path: str) -> bytes | None:
        result: list[bytes | None] = []
        self._io(path, "read", lambda: result.append(self._storage.read(path)))
        return result[0]

    def _list_dirs(self, path: str) -> list[str]:
        result: list[list[str]] = []
        self._io(path, "list", lambda: result.append(self._storage.list_dirs(path)))
        return result[0]

    def _io(self, path: str, verb: str, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            if exc.errno in _DISK_FULL:
                raise StagingError(self._disk_full(path, verb, reason)) from exc
            raise StagingError(f"could not {verb} staged file {self._relative(path)}: {reason}") from exc

    def _disk_full(self, path: str, verb: str, reason: str) -> str:
        """What an administrator reads when the staging disk is full: which folder, how much is free, what to do."""
        root = self._storage.root
        free = ""
        with contextlib.suppress(OSError, ValueError):  # not a local folder, or gone
            free = f", {human_bytes(shutil.disk_usage(root).free)} free"
        return (
            f"no space left on the staging disk: could not {verb} staged file {self._relative(path)} in the staging "
            f"folder {root} ({reason}{free}). Free some space there, or set RUNYARD_STAGING_URL to a folder with "
            "more room; then retry"
        )
