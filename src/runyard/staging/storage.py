"""Where staged files live: a local folder or any fsspec filesystem (S3 through s3fs), behind one interface.

Local folders write under a temporary name, fsync and rename, so a reader never sees half a file;
object stores write whole objects, so a single put is already atomic.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from typing import Any, Protocol

import fsspec

from runyard.errors import RunyardError

TMP_SUFFIX = ".tmp"


class StagingError(RunyardError):
    """A staged file cannot be written or read safely (bad name, escape attempt, damage, I/O)."""


class Storage(Protocol):
    root: str

    def join(self, *parts: str) -> str: ...
    def inside(self, path: str, folder: str) -> bool: ...
    def write_atomic(self, path: str, data: bytes) -> None: ...
    def read(self, path: str) -> bytes | None: ...
    def list_dirs(self, path: str) -> list[str]: ...
    def remove_tree(self, path: str) -> None: ...
    def remove_temporaries(self, path: str) -> None: ...


class LocalStorage:
    """A local folder: temp file, flush, fsync, rename, fsync of the folder."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def inside(self, path: str, folder: str) -> bool:
        """Whether ``path``, symlinks resolved, is strictly inside ``folder`` (itself not resolved)."""
        return os.path.realpath(path).startswith(folder + os.sep)

    def write_atomic(self, path: str, data: bytes) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        temp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}{TMP_SUFFIX}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o640)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_dir(folder)

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def list_dirs(self, path: str) -> list[str]:
        try:
            with os.scandir(path) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove_tree(self, path: str) -> None:
        if os.path.lexists(path):
            shutil.rmtree(path)

    def remove_temporaries(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError), os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX) and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


class FsspecStorage:
    """Any fsspec filesystem (object stores write whole objects, so a single put is atomic)."""

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self.root = root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def inside(self, path: str, folder: str) -> bool:
        return posixpath.normpath(path).startswith(folder.rstrip("/") + "/")

    def write_atomic(self, path: str, data: bytes) -> None:
        self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self._fs.pipe_file(path, data)

    def read(self, path: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            return None

    def list_dirs(self, path: str) -> list[str]:
        try:
            entries = self._fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    def remove_tree(self, path: str) -> None:
        if self._fs.exists(path):
            self._fs.rm(path, recursive=True)

    def remove_temporaries(self, path: str) -> None:
        return None  # nothing is written under a temporary name


def open_storage(url: str) -> Storage:
    if not url:
        raise StagingError("the staging URL is empty; set RUNYARD_STAGING_URL or leave it unset for the default")
    if "://" not in url:
        return LocalStorage(url)
    protocol = url.split("://", 1)[0].lower()
    if protocol == "file":
        return LocalStorage(url.split("://", 1)[1])
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise StagingError(
            f"staging URL {url!r} needs the fsspec driver for {protocol}:// which is not installed "
            f"(for s3:// install s3fs: pip install s3fs): {exc}"
        ) from None
    except ValueError as exc:
        raise StagingError(f"staging URL {url!r} is not supported: {exc}") from None
    return FsspecStorage(fs, str(root))
