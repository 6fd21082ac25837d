"""Where files live: a local folder or any fsspec filesystem (S3 through s3fs), behind one interface.

Staging writes small documents whole (`write_atomic`, `read`); storage-to-storage copies stream files of any
size (`list_files`, `info`, `infos`, `open_read`, `open_write`, `sync_names`, `delete`). Either way a reader
never sees half a file: local folders write under a temporary name in the same folder, fsync it, check its size
and rename it; S3 writes one object with one put, or a multipart upload completed at the end (both atomic), each
request carrying the MD5 that S3 checks, and the object's ETag is compared with the MD5s sent. A local rename
is durable once its folder is fsynced: `write_atomic` does it for each file, a copy of many files once per folder
(`sync_names`) before it reports them done or deletes their sources.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import os
import posixpath
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any, Protocol

import fsspec

from runyard.errors import RunyardError

TMP_SUFFIX = ".tmp"
# `.<name>.<32 hex>.tmp`: what LocalStorage writes before renaming; listings never show one.
TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{32}" + re.escape(TMP_SUFFIX) + "$")
_TEMPORARY_OF = re.compile(r"\.(.+)\.[0-9a-f]{32}" + re.escape(TMP_SUFFIX))  # group 1: the file's name
S3_PART_BYTES = 8 * 2**20  # a multipart upload's part (memory per S3 write), and the single-put limit
S3_MAX_PARTS = 10_000
LISTED_PER_PATH = 4  # FsspecStorage.infos lists at most this many S3 keys per path asked about, then HEADs
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


class StagingError(RunyardError):
    """A staged file cannot be written or read safely (bad name, escape attempt, damage, I/O)."""


@dataclass(frozen=True)
class FileInfo:
    """A file as its store describes it."""

    path: str  # the store's full path of the file
    size: int
    modified: datetime  # last modified, UTC
    version: str  # changes when the file is rewritten: local st_mtime_ns, an S3 ETag
    etag: str | None = None  # S3: the MD5 of a single-part object, `<md5 of the parts' MD5s>-<parts>` otherwise
    target: str | None = None  # a local symbolic link: the real path it points to (callers judge whether allowed)


class Reader(Protocol):
    """A file open for reading, as a stream."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def fileno(self) -> int: ...
    def __enter__(self) -> Reader: ...
    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class AtomicWriter(Protocol):
    """A file being written: invisible until `commit()`; `abort()` (or leaving the `with` block) drops it.

    `copy_from(reader, offset, count)` appends up to `count` bytes of `reader` from `offset` without them passing
    through Python (a local writer fed by a local file: copy_file_range) and says how many (0: the reader's end);
    None when this writer cannot, before anything was written: the caller reads and `write()`s instead.
    """

    def write(self, data: bytes | memoryview) -> None: ...
    def copy_from(self, reader: Reader, offset: int, count: int) -> int | None: ...
    def commit(self) -> FileInfo: ...
    def abort(self) -> None: ...
    def __enter__(self) -> AtomicWriter: ...
    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Storage(Protocol):
    root: str

    def join(self, *parts: str) -> str: ...
    def inside(self, path: str, folder: str) -> bool: ...
    def realpath(self, path: str) -> str: ...
    def write_atomic(self, path: str, data: bytes) -> None: ...
    def write_cache(self, path: str, data: bytes) -> None:
        """Whole or absent to a reader, like write_atomic, but not made durable: for caches, which can be rebuilt."""
        ...

    def read(self, path: str) -> bytes | None: ...
    def list_dirs(self, path: str) -> list[str]: ...
    def remove_tree(self, path: str) -> None: ...
    def remove_temporaries(self, path: str) -> None: ...
    def list_files(self, folder: str, *, recursive: bool) -> list[FileInfo]: ...
    def info(self, path: str) -> FileInfo | None: ...
    def infos(self, paths: Sequence[str]) -> dict[str, FileInfo]: ...
    def open_read(self, path: str) -> Reader: ...
    def open_write(self, path: str, size: int | None = None) -> AtomicWriter: ...
    def remove_leftovers(self, paths: Iterable[str]) -> None: ...
    def sync_names(self, paths: Iterable[str]) -> None: ...
    def delete(self, path: str) -> None: ...
    def can_hold(self, folder: str) -> bool: ...


def _gone_is_removed(_function: object, _path: str, error: tuple[type[BaseException], BaseException, object]) -> None:
    """rmtree's error handler: a file another remover deleted first is removed; any other error is raised."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]


class LocalStorage:
    """A local folder: temp file, flush, fsync, rename, fsync of the folder."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def inside(self, path: str, folder: str) -> bool:
        """Whether ``path``, symlinks resolved, is strictly inside ``folder`` (itself not resolved)."""
        return os.path.realpath(path).startswith(folder + os.sep)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def can_hold(self, folder: str) -> bool:
        """Whether files can be written under `folder`: a local folder is made when it is needed."""
        return True

    def write_atomic(self, path: str, data: bytes) -> None:
        with self.open_write(path) as writer:
            writer.write(data)
            writer.commit()
        _fsync_dir(os.path.dirname(path))

    def write_cache(self, path: str, data: bytes) -> None:
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)  # readers see the whole page or none; no fsync: a cache is rebuilt
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

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
            shutil.rmtree(path, onerror=_gone_is_removed)

    def remove_temporaries(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError), os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX) and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def list_files(self, folder: str, *, recursive: bool) -> list[FileInfo]:
        """The files in `folder` (and its subfolders when `recursive`), sorted by path.

        runyard's temporary files are left out. Symbolic links to folders are not followed; a link to a file is
        listed with its target's size and time, and the target's real path in `target`. FileNotFoundError when
        `folder` itself does not exist.
        """
        found: list[FileInfo] = []
        pending = [folder]
        while pending:
            current = pending.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if recursive:
                                pending.append(entry.path)
                        elif not TEMPORARY_NAME.match(entry.name) and (info := self.info(entry.path)) is not None:
                            found.append(info)
            except (FileNotFoundError, NotADirectoryError):
                if current == folder:
                    raise FileNotFoundError(folder) from None  # a subfolder removed meanwhile is just gone
        return sorted(found, key=lambda each: each.path)

    def info(self, path: str) -> FileInfo | None:
        """A regular file (or a link to one) at `path`; None for nothing, a folder, a broken or looping link."""
        return _local_info(path)

    def infos(self, paths: Sequence[str]) -> dict[str, FileInfo]:
        """The info() of each of `paths` that is a file."""
        return {path: info for path in paths if (info := _local_info(path)) is not None}

    def open_read(self, path: str) -> Reader:
        return open(path, "rb", buffering=0)  # unbuffered: callers read large chunks

    def open_write(self, path: str, size: int | None = None) -> AtomicWriter:
        return _LocalWriter(path)

    def remove_leftovers(self, paths: Iterable[str]) -> None:
        """Delete the temporary files that killed writers of `paths` left; one listing per folder.

        Only those of `paths`: other writers may be writing other files of the same folder right now.
        """
        by_folder: dict[str, set[str]] = {}
        for path in paths:
            by_folder.setdefault(os.path.dirname(path), set()).add(os.path.basename(path)[:150])
        for folder, names in by_folder.items():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
                for entry in entries:
                    found = _TEMPORARY_OF.fullmatch(entry.name)
                    if found and found.group(1) in names and entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    def sync_names(self, paths: Iterable[str]) -> None:
        """Make the names of files written with open_write durable: one fsync per folder."""
        for folder in sorted({os.path.dirname(path) for path in paths}):
            _fsync_dir(folder)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _local_info(path: str) -> FileInfo | None:
    try:
        link = os.lstat(path)
        linked = stat.S_ISLNK(link.st_mode)
        found = os.stat(path) if linked else link
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None
        raise
    if not stat.S_ISREG(found.st_mode):
        return None
    modified = datetime.fromtimestamp(found.st_mtime, UTC)
    target = os.path.realpath(path) if linked else None
    return FileInfo(path, found.st_size, modified, str(found.st_mtime_ns), target=target)


class _LocalWriter:
    """A temporary file beside `path` (`.<name>.<32 hex>.tmp`); commit: fsync, check the size, rename.

    The rename is durable once the folder is fsynced (LocalStorage.sync_names, or write_atomic's own). What a
    killed writer left is removed by LocalStorage.remove_leftovers.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(path)
        os.makedirs(self.folder, exist_ok=True)
        name = os.path.basename(path)[:150]  # the temporary name stays under the file system's name limit
        self.temp = os.path.join(self.folder, f".{name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
        self._fd: int | None = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o640)
        self._renamed = False
        self.written = 0
        self._in_kernel = hasattr(os, "copy_file_range")

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "write after commit or abort"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.written += len(data)

    def copy_from(self, reader: Reader, offset: int, count: int) -> int | None:
        """The kernel copies the bytes from the reader's file, page cache to page cache, when it can."""
        assert self._fd is not None, "write after commit or abort"
        if not (self._in_kernel and isinstance(reader, io.FileIO)):
            return None
        try:
            done = os.copy_file_range(reader.fileno(), self._fd, count, offset)
        except OSError as error:
            if error.errno not in _NO_COPY_RANGE or self.written:
                raise
            self._in_kernel = False  # another file system, an old kernel: the caller reads and writes
            return None
        self.written += done
        return done

    def commit(self) -> FileInfo:
        assert self._fd is not None, "commit after commit or abort"
        try:
            os.fsync(self._fd)
            size = os.fstat(self._fd).st_size
            if size != self.written:
                raise StagingError(f"{self.path}: {self.written} bytes were written but the file holds {size}")
            os.close(self._fd)
            self._fd = None
            os.replace(self.temp, self.path)
            self._renamed = True
        except BaseException:
            self.abort()
            raise
        info = _local_info(self.path)
        if info is None:
            raise StagingError(f"{self.path} vanished right after it was written")
        return info

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if not self._renamed:
            self._renamed = True  # nothing left to drop
            with contextlib.suppress(OSError):
                os.unlink(self.temp)

    def __enter__(self) -> _LocalWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()  # a no-op after commit


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
        """The whole object or none: on S3 one put (a multipart upload completed at the end past 8 MiB), each
        request with its Content-MD5 and the stored ETag checked (_S3Writer); elsewhere fsspec's pipe_file."""
        if self.is_s3:
            with self.open_write(path, len(data)) as writer:
                writer.write(data)
                writer.commit()
            return
        self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self._fs.pipe_file(path, data)

    def write_cache(self, path: str, data: bytes) -> None:
        self.write_atomic(path, data)  # one PUT: an object store shows the whole object or none

    def read(self, path: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            return None

    def list_dirs(self, path: str) -> list[str]:
        """The folders in `path`, listed afresh: other processes write the same staging (no cached listing)."""
        try:
            entries = self._fs.ls(path, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")

    def remove_tree(self, path: str) -> None:
        """Delete every file under `path` (listed afresh); nothing there is no error."""
        self._fs.invalidate_cache(path)
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(path, recursive=True)
        self._fs.invalidate_cache(path)

    def remove_temporaries(self, path: str) -> None:
        return None  # nothing is written under a temporary name

    def realpath(self, path: str) -> str:
        return posixpath.normpath(path)

    def can_hold(self, folder: str) -> bool:
        """Whether files can be written under `folder`: on S3, its bucket must exist (a prefix needs nothing)."""
        if not self.is_s3:
            return True
        return bool(self._fs.exists(folder.split("/", 1)[0]))

    @property
    def is_s3(self) -> bool:
        protocols = self._fs.protocol
        return "s3" in ((protocols,) if isinstance(protocols, str) else protocols)

    def list_files(self, folder: str, *, recursive: bool) -> list[FileInfo]:
        """The files under `folder` (one level unless `recursive`), sorted by path. A missing prefix is empty."""
        found = self._fs.find(folder, maxdepth=None if recursive else 1, withdirs=False, detail=True)
        files = (_fsspec_info(name, entry) for name, entry in found.items() if _is_file(name, entry))
        return sorted(files, key=lambda each: each.path)

    def info(self, path: str) -> FileInfo | None:
        try:
            entry = self._fs.info(path)
        except FileNotFoundError:
            return None
        return _fsspec_info(path, entry) if _is_file(path, entry) else None

    def infos(self, paths: Sequence[str]) -> dict[str, FileInfo]:
        """The info() of each of `paths` that is a file. On S3, a listing of the range of keys the paths span
        (one request per 1,000 keys) instead of a HEAD of each one, plus a HEAD of each path past that range
        when it holds more than LISTED_PER_PATH keys per path (other files in between)."""
        if not self.is_s3:
            return {path: info for path in paths if (info := self.info(path)) is not None}
        found: dict[str, FileInfo] = {}
        by_bucket: dict[str, dict[str, str]] = {}  # bucket -> key -> path
        for path in paths:
            bucket, key, _ = self._fs.split_path(path)
            by_bucket.setdefault(bucket, {})[key] = path
        for bucket, wanted in by_bucket.items():
            listed_up_to = self._list_range(bucket, wanted, found)
            for key in sorted(wanted):
                if key > listed_up_to and (info := self.info(wanted[key])) is not None:
                    found[wanted[key]] = info
        return found

    def _list_range(self, bucket: str, wanted: Mapping[str, str], found: dict[str, FileInfo]) -> str:
        """Put the `wanted` keys (-> their paths) that the listing of their range finds into `found`; the last
        key listed (the listing stops past the last wanted key, or when it has listed enough)."""
        keys = sorted(wanted)
        budget = LISTED_PER_PATH * len(keys)
        request = {"Bucket": bucket, "Prefix": posixpath.commonprefix(keys)}
        if keys[0][:-1]:
            request["StartAfter"] = keys[0][:-1]  # before the first key, after any key before it
        last = ""
        while budget > 0:
            page = self._fs.call_s3("list_objects_v2", **request, MaxKeys=min(1000, budget))
            for entry in page.get("Contents", []):
                last = str(entry["Key"])
                if last in wanted:
                    path = wanted[last]
                    found[path] = _fsspec_info(path, {"size": entry["Size"], **entry})
            budget -= max(1, int(page.get("KeyCount", 0)))
            if not page.get("IsTruncated") or last >= keys[-1]:
                return keys[-1]
            request["ContinuationToken"] = page["NextContinuationToken"]
        return last

    def open_read(self, path: str) -> Reader:
        if self.is_s3:  # no read-ahead cache: each read() of the caller's chunk is one ranged GET
            return self._fs.open(path, "rb", cache_type="none")  # type: ignore[no-any-return]
        return self._fs.open(path, "rb")  # type: ignore[no-any-return]

    def open_write(self, path: str, size: int | None = None) -> AtomicWriter:
        """A writer of `path`; `size`, when known, sizes an S3 upload's parts."""
        return _S3Writer(self._fs, path, s3_part_bytes(size)) if self.is_s3 else _SpooledWriter(self._fs, path)

    def remove_leftovers(self, paths: Iterable[str]) -> None:
        return None  # nothing is visible before it is complete; S3 writers abort a killed one's upload themselves

    def sync_names(self, paths: Iterable[str]) -> None:
        return None  # an object exists durably once its put or upload is complete

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(path)


def _is_file(name: str, entry: dict[str, Any]) -> bool:
    return entry.get("type") == "file" and not name.endswith("/")  # S3 "folder" markers are empty keys ending in /


def _fsspec_info(name: str, entry: dict[str, Any]) -> FileInfo:
    size = int(entry.get("size") or 0)
    stamp = entry.get("LastModified") or entry.get("mtime") or entry.get("created")
    if isinstance(stamp, datetime):
        modified = stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    elif isinstance(stamp, int | float):
        modified = datetime.fromtimestamp(stamp, UTC)
    else:
        modified = _EPOCH
    etag = str(entry.get("ETag") or "").strip('"') or None
    return FileInfo(name, size, modified, etag or f"{size}:{modified.isoformat()}", etag=etag)


def s3_part_bytes(size: int | None) -> int:
    """The part size runyard uploads a file of `size` bytes in (S3 allows 10,000 parts): 8 MiB, or more."""
    if not size:
        return S3_PART_BYTES
    mebibytes = -(-size // (S3_MAX_PARTS * 2**20))  # ceil
    return max(S3_PART_BYTES, mebibytes * 2**20)


def multipart_etag(part_digests: list[bytes]) -> str:
    """The ETag S3 gives an object uploaded in parts with these MD5 digests (a single put's is its MD5's hex)."""
    return f"{hashlib.md5(b''.join(part_digests), usedforsecurity=False).hexdigest()}-{len(part_digests)}"


class _S3Writer:
    """One S3 object written in parts of `part_bytes`: a single put when it fits, else a multipart upload.

    Every request carries its Content-MD5, which S3 checks before it accepts the bytes; commit compares the
    object's size and ETag with what was sent. Until commit the object does not exist: a multipart upload
    becomes the object only when it is completed, and abort (or a writer's death) leaves no object. A killed
    writer's unfinished upload is aborted by the next writer of the same key.
    """

    def __init__(self, fs: Any, path: str, part_bytes: int) -> None:
        self._fs = fs
        self.path = path
        self.part_bytes = part_bytes
        self.bucket, self.key, _ = fs.split_path(path)
        self._held: list[bytes] = []  # what was written and not sent yet, as it was given (bytes are not copied)
        self._held_bytes = 0
        self._digests: list[bytes] = []
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.written = 0
        self._open = True

    def copy_from(self, reader: Reader, offset: int, count: int) -> int | None:
        return None

    def write(self, data: bytes | memoryview) -> None:
        assert self._open, "write after commit or abort"
        self._held.append(data if isinstance(data, bytes) else bytes(data))
        self._held_bytes += len(data)
        self.written += len(data)
        while self._held_bytes >= self.part_bytes:
            self._upload_part(self._take(self.part_bytes))

    def _take(self, size: int) -> bytes:
        """The first `size` bytes held (all of them at most), no longer held; a chunk of that size is not copied."""
        held = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        taken, rest = held[:size], held[size:]
        self._held = [rest] if rest else []
        self._held_bytes = len(rest)
        return taken

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._abort_leftovers()
            created = self._fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)
            self._upload_id = str(created["UploadId"])
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        number = len(self._parts) + 1
        sent = self._fs.call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=base64.b64encode(digest).decode(),
        )
        self._digests.append(digest)
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def _abort_leftovers(self) -> None:
        """Abort the unfinished uploads of this key that earlier writers left (a killed copy's)."""
        listed = self._fs.call_s3("list_multipart_uploads", Bucket=self.bucket, Prefix=self.key)
        for upload in listed.get("Uploads", []):
            if upload.get("Key") == self.key:
                self._fs.call_s3(
                    "abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=upload["UploadId"]
                )

    def commit(self) -> FileInfo:
        assert self._open, "commit after commit or abort"
        try:
            if self._upload_id is None:
                data = self._take(self._held_bytes)
                digest = hashlib.md5(data, usedforsecurity=False).digest()
                answer = self._fs.call_s3(
                    "put_object",
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=data,
                    ContentMD5=base64.b64encode(digest).decode(),
                )
                expected = digest.hex()
            else:
                if self._held_bytes:
                    self._upload_part(self._take(self._held_bytes))
                answer = self._fs.call_s3(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
                self._upload_id = None  # completed: nothing to abort any more
                expected = multipart_etag(self._digests)
        except BaseException:
            self.abort()
            raise
        self._open = False
        self._fs.invalidate_cache(self.path)
        return self._verify(str(answer.get("ETag") or "").strip('"'), expected)

    def _verify(self, etag: str, expected: str) -> FileInfo:
        """S3 computed the ETag from the bytes it stored; equal to the one of the bytes sent, they are the same."""
        if etag != expected:
            raise StagingError(
                f"{self.path} does not hold what was sent: S3 reports ETag {etag or '(none)'}, the {self.written} "
                f"bytes sent have {expected}"
            )
        return FileInfo(self.path, self.written, datetime.now(UTC), etag, etag=etag)

    def abort(self) -> None:
        if self._upload_id is not None:
            upload, self._upload_id = self._upload_id, None
            with contextlib.suppress(Exception):  # an upload left behind is aborted by the next writer
                self._fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=upload)
        self._open = False
        self._held, self._held_bytes = [], 0

    def __enter__(self) -> _S3Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._open:
            self.abort()


class _SpooledWriter:
    """Any other fsspec filesystem: a local temporary file, put in one call at commit."""

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self.path = path
        self._temp: IO[bytes] | None = tempfile.NamedTemporaryFile(prefix="runyard-", suffix=TMP_SUFFIX)  # noqa: SIM115
        self.written = 0

    def copy_from(self, reader: Reader, offset: int, count: int) -> int | None:
        return None

    def write(self, data: bytes | memoryview) -> None:
        assert self._temp is not None, "write after commit or abort"
        self._temp.write(data)
        self.written += len(data)

    def commit(self) -> FileInfo:
        assert self._temp is not None, "commit after commit or abort"
        try:
            self._temp.flush()
            self._fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
            self._fs.put_file(self._temp.name, self.path)
        finally:
            self.abort()
        info = _fsspec_info(self.path, self._fs.info(self.path))
        if info.size != self.written:
            raise StagingError(f"{self.path}: {self.written} bytes were written but it holds {info.size}")
        return info

    def abort(self) -> None:
        if self._temp is not None:
            self._temp.close()  # NamedTemporaryFile deletes itself
            self._temp = None

    def __enter__(self) -> _SpooledWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()


def open_storage(url: str, options: Mapping[str, Any] | None = None) -> Storage:
    """The storage at `url`: a local folder (a path or file://), or an fsspec filesystem given `options`."""
    if not url:
        raise StagingError("the staging URL is empty; set RUNYARD_STAGING_URL or leave it unset for the default")
    if "://" not in url:
        return LocalStorage(url)
    protocol = url.split("://", 1)[0].lower()
    if protocol == "file":
        return LocalStorage(url.split("://", 1)[1])
    try:
        fs, root = fsspec.core.url_to_fs(url, **(options or {}))
    except ImportError as exc:
        raise StagingError(
            f"staging URL {url!r} needs the fsspec driver for {protocol}:// which is not installed "
            f"(for s3:// install s3fs: pip install s3fs): {exc}"
        ) from None
    except ValueError as exc:
        raise StagingError(f"staging URL {url!r} is not supported: {exc}") from None
    return FsspecStorage(fs, str(root))


def human_bytes(count: float) -> str:
    """A size of stored files as an administrator reads it: 300 bytes, 12.5 kB, 1.5 MB."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
