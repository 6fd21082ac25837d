"""The `Copy [...]` tasks: stream each listed file to its destination, verify it, and (move) delete the source.

A copy streams in chunks (CHUNK_BYTES), never holding a file in memory, counts its bytes as it goes, and checks
for a cancel between chunks and between files; local to local, the kernel copies the chunks (copy_file_range)
and the bytes never pass through Python. Its destination appears whole or not at all (a temporary file fsynced
and renamed, or an S3 put / completed multipart upload) and is verified: its size, and a checksum where a store
gives one: S3 checks the MD5 that every request carries and runyard compares the object's ETag with the MD5 of
what it sent; an S3 source's ETag is compared with the MD5 of the bytes read. A local folder keeps no checksum
to compare a copy with, so a local-to-local copy is verified by its size. The file's snapshot from the listing
is checked first: a file that changed since is not copied under the name its old time rendered.

A retry never copies twice: a destination that already holds the same bytes (same size, same checksum: the
ETags, or the bytes of both hashed, SHA-256 for two local files) is left as it is ("already copied"); a killed
copy's temporary file or S3 upload is removed by the next attempt, and was never visible. Which destination
files exist is asked once per task (on S3, one listing instead of a HEAD per file). With move, a source is
deleted only after its copy was verified and its name made durable.

A task of several files copies up to COPY_THREADS of them at once: a small file's copy mostly waits (for an
fsync, for S3), and the files of one task share one fsync of their folder at the end. The first failure stops
the files not started yet; those already copied stay copied (and, with move, their sources are deleted).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.resources import EngineResources
from runyard.faults import crash_point
from runyard.operations.storage_to_storage.locations import Place, resolve
from runyard.staging.storage import AtomicWriter, FileInfo, Reader, human_bytes, multipart_etag, s3_part_bytes

if TYPE_CHECKING:
    from hashlib import _Hash

CHUNK_BYTES = 8 * 2**20  # read at once (one ranged GET on S3; an S3 part): the memory a copy holds, if it reads
COPY_THREADS = 4  # files one task copies at once
CRASH_MID_FILE = "storage.copy_mid_file"  # runyard.faults: the reliability tests kill a copy here


@dataclass(frozen=True)
class Listed:
    """A file as the listing saw it (a copy task's params hold one per file)."""

    path: str  # relative to the source folder
    size: int
    modified: datetime
    version: str
    etag: str | None
    destination: str  # the rendered name, relative to the destination folder

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Listed:
        return cls(
            path=str(data["path"]),
            size=int(data["size"]),
            modified=datetime.fromisoformat(str(data["modified"])),
            version=str(data["version"]),
            etag=data.get("etag"),
            destination=str(data["destination"]),
        )


def copy_files(ctx: TaskContext, resources: EngineResources) -> None:
    source = resolve(ctx.params["source"], resources, "source")
    destination = resolve(ctx.params["destination"], resources, "destination")
    move = bool(ctx.params.get("move"))
    files = [Listed.from_dict(entry) for entry in ctx.params["files"]]
    done: list[Copied] = []
    remove_leftovers(destination, files)
    existing = destination.storage.infos([destination.path_of(listed.destination) for listed in files])

    def copy(listed: Listed) -> Copied:
        ctx.checkpoint()
        copied = copy_one(ctx, source, destination, listed, existing, move=move)
        ctx.add_records(1)
        if len(files) == 1 or copied.outcome != COPIED:  # a batch reports its plain copies in one summary
            ctx.message("info", copied.detail)
        return copied

    try:
        run_all(files, copy, done)
    except BaseException:
        with contextlib.suppress(Exception):  # the failure is what the task reports
            settle(source, destination, done, move)
        raise
    deleted = settle(source, destination, done, move)
    if len(files) > 1:
        ctx.message("info", _summary(done, files, deleted, destination))


def remove_leftovers(destination: Place, files: Sequence[Listed]) -> None:
    """Remove what a killed attempt of this task left half-written, in the folders inside the allowed root only
    (a folder may be a link leading out of it: the copy itself refuses it)."""
    inside: dict[str, bool] = {}
    targets = [destination.path_of(listed.destination) for listed in files]
    for target in targets:
        folder = os.path.dirname(target)
        if folder not in inside:
            inside[folder] = destination.allowed(folder)
    destination.storage.remove_leftovers([target for target in targets if inside[os.path.dirname(target)]])


@dataclass(frozen=True)
class Copied:
    listed: Listed
    outcome: str  # COPIED, ALREADY_COPIED or ALREADY_MOVED
    target: str  # the destination's full path
    detail: str  # a line for the task's messages


def run_all(files: Sequence[Listed], copy: Callable[[Listed], Copied], done: list[Copied]) -> None:
    """`copy` each file, COPY_THREADS at once, into `done`; the first failure stops what has not started."""
    if len(files) == 1:
        done.append(copy(files[0]))
        return
    with ThreadPoolExecutor(min(COPY_THREADS, len(files)), thread_name_prefix="runyard-copy") as pool:
        futures = [pool.submit(copy, listed) for listed in files]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()  # those not started; the running ones end (or stop at their next checkpoint)
        wait(futures)
    done.extend(f.result() for f in futures if _succeeded(f))
    failed = next((f.exception() for f in futures if not f.cancelled() and f.exception() is not None), None)
    if failed is not None:
        raise failed


def _succeeded(future: Future[Copied]) -> bool:
    return not future.cancelled() and future.exception() is None


def settle(source: Place, destination: Place, done: Sequence[Copied], move: bool) -> int:
    """Make the copies' names durable, then (move) delete their sources; how many sources were deleted."""
    destination.storage.sync_names([copied.target for copied in done if copied.outcome == COPIED])
    if not move:
        return 0
    deleted = 0
    for copied in done:
        if copied.outcome != ALREADY_MOVED:
            source.storage.delete(source.readable_path(copied.listed.path))
        deleted += 1
    return deleted


COPIED, ALREADY_COPIED, ALREADY_MOVED = "copied", "already copied", "already moved"


def copy_one(
    ctx: TaskContext, source: Place, destination: Place, listed: Listed, found: Mapping[str, FileInfo], *, move: bool
) -> Copied:
    """Copy one listed file and verify the copy (TaskFailed when it cannot be copied safely). `found`: the
    destination's files as the task found them when it started (a retry's earlier copies)."""
    source_path = source.readable_path(listed.path)
    target = destination.writable_path(listed.destination)
    current = source.storage.info(source_path)
    existing = found.get(target)
    where = f"{source.show(listed.path)} to {destination.show(listed.destination)}"
    if current is None:
        if move and existing is not None and existing.size == listed.size:  # an earlier attempt moved it
            detail = f"{where}: already moved (the source is gone, the destination holds its size)"
            return Copied(listed, ALREADY_MOVED, target, detail)
        raise TaskFailed(f"{source.show(listed.path)} is gone: it was removed after the run listed it")
    if current.version != listed.version or current.size != listed.size:
        raise TaskFailed(
            f"{source.show(listed.path)} changed after the run listed it ({listed.size:,} bytes, modified "
            f"{listed.modified:%Y-%m-%d %H:%M:%S} UTC; now {current.size:,} bytes, modified "
            f"{current.modified:%Y-%m-%d %H:%M:%S} UTC); launch the operation again to copy it as it is now"
        )
    if existing is not None and existing.target is None and existing.size == listed.size:
        if same_content(ctx, source, source_path, listed, destination, existing):
            detail = f"{where}: already copied (same size and checksum); left as it is"
            return Copied(listed, ALREADY_COPIED, target, detail)
        ctx.message("warning", f"{destination.show(listed.destination)} existed with other content; replaced")
    checksum = stream(ctx, source, source_path, destination, target, listed)
    detail = f"{'Moved' if move else 'Copied'} {where} ({human_bytes(listed.size)}, {checksum})"
    return Copied(listed, COPIED, target, detail)


def stream(ctx: TaskContext, source: Place, path: str, destination: Place, target: str, listed: Listed) -> str:
    """Copy `path` to `target` chunk by chunk and verify it; the checksum that vouches for it, as text."""
    hasher = _hasher(listed)
    with (
        source.storage.open_read(path) as reader,
        destination.storage.open_write(target, listed.size) as writer,
    ):
        copied = pump(ctx, reader, writer, hasher, listed.size)
        after = source.storage.info(path)
        if copied != listed.size or after is None or after.version != listed.version:
            raise TaskFailed(
                f"{source.show(listed.path)} changed while it was copied ({copied:,} bytes read, {listed.size:,} "
                "listed); nothing was written: launch the operation again to copy it as it is now"
            )
        if hasher is not None and hasher.hexdigest() != listed.etag:
            raise TaskFailed(
                f"{source.show(listed.path)}: the bytes read have MD5 {hasher.hexdigest()}, but the store says "
                f"{listed.etag}; nothing was written"
            )
        written = writer.commit()
    if written.size != listed.size:  # the writers check this themselves; a last guard before a move deletes
        raise TaskFailed(f"{destination.show(listed.destination)} holds {written.size:,} bytes, not {listed.size:,}")
    return f"ETag {written.etag} verified" if written.etag else "size verified"


def pump(ctx: TaskContext, reader: Reader, writer: AtomicWriter, hasher: _Hash | None, size: int) -> int:
    """Move the reader's bytes to the writer a chunk at a time; how many there were."""
    copied = 0
    while count := _next_chunk(reader, writer, hasher, copied):
        copied += count
        ctx.add_bytes(count)
        if copied * 2 >= size:
            crash_point(CRASH_MID_FILE)  # halfway or more: the tests' kill of a copy in progress
        ctx.checkpoint()
    return copied


def _next_chunk(reader: Reader, writer: AtomicWriter, hasher: _Hash | None, offset: int) -> int:
    """Copy the chunk at `offset`: in the kernel when nothing hashes it and the stores allow it, else read and
    written (an S3 writer keeps the bytes read as they are until it sends them). Its size; 0 at the end."""
    if hasher is None and (count := writer.copy_from(reader, offset, CHUNK_BYTES)) is not None:
        return count
    chunk = reader.read(CHUNK_BYTES)
    if chunk:
        if hasher is not None:
            hasher.update(chunk)
        writer.write(chunk)
    return len(chunk)


def _hasher(listed: Listed) -> _Hash | None:
    """The MD5 of what is read, when the source is an S3 object whose ETag is its MD5 (a single-part upload).

    Nothing else is hashed while streaming: an S3 destination checks the MD5 of every request itself, and a
    local folder keeps no checksum to compare a copy with (its copy is verified by size).
    """
    if listed.etag and "-" not in listed.etag:
        return hashlib.md5(usedforsecurity=False)
    return None


def same_content(
    ctx: TaskContext, source: Place, path: str, listed: Listed, destination: Place, existing: FileInfo
) -> bool:
    """Whether the destination file already holds the source's bytes (a retry's check; sizes are equal)."""
    if existing.etag and listed.etag:
        return existing.etag == listed.etag  # S3 to S3, each with its ETag (same parts, same ETag)
    if existing.etag:  # an S3 destination: the source's bytes as S3 would tag them
        return etag_of(ctx, source, path, listed.size, like=existing.etag) == existing.etag
    if listed.etag:  # an S3 source, a local destination
        return etag_of(ctx, destination, existing.path, listed.size, like=listed.etag) == listed.etag
    return sha256_of(ctx, source, path) == sha256_of(ctx, destination, existing.path)


def etag_of(ctx: TaskContext, place: Place, path: str, size: int, *, like: str) -> str:
    """The ETag S3 would give this file: its MD5, or (`like` a multipart ETag) that of runyard's upload's parts."""
    if "-" not in like:
        return _digest(ctx, place, path, hashlib.md5(usedforsecurity=False)).hexdigest()
    digests: list[bytes] = []
    with place.storage.open_read(path) as reader:
        while part := reader.read(s3_part_bytes(size)):
            digests.append(hashlib.md5(part, usedforsecurity=False).digest())
            ctx.checkpoint()
    return multipart_etag(digests or [hashlib.md5(b"", usedforsecurity=False).digest()])


def sha256_of(ctx: TaskContext, place: Place, path: str) -> str:
    return _digest(ctx, place, path, hashlib.sha256()).hexdigest()


def _digest(ctx: TaskContext, place: Place, path: str, hasher: _Hash) -> _Hash:
    with place.storage.open_read(path) as reader:
        while chunk := reader.read(CHUNK_BYTES):
            hasher.update(chunk)
            ctx.checkpoint()
    return hasher


def _summary(done: Sequence[Copied], files: Sequence[Listed], deleted: int, destination: Place) -> str:
    outcomes = Counter(copied.outcome for copied in done)
    size = sum(copied.listed.size for copied in done if copied.outcome == COPIED)
    text = f"{outcomes[COPIED]:,} of {len(files):,} files ({human_bytes(size)}) copied to {destination.label}"
    if outcomes[ALREADY_COPIED]:
        text += f"; {outcomes[ALREADY_COPIED]:,} already there"
    if deleted:
        text += f"; {deleted:,} sources deleted"
    return text
