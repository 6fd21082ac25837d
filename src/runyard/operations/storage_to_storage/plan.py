"""The task graph of a storage-to-storage run: one listing task, then the copies it adds to the run.

    List Files [landing] ─► Copy [big-export.csv]          a task per file, or per batch of files:
                         ─► Copy files 2-13 of 230         by size (files_per_task: auto), or by count

Which files there are is known only when the run lists them, so the plan holds the listing alone; the listing
spawns the copies (copy_tasks) with a snapshot of each file (path, size, time, version, destination name), so a
copy never lists again. Pure: the listing executor and the launch both call it with plain data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from runyard.domain.graph import Dependency, PlannedTask, validate_plan

LIST = "storage_list"
COPY = "storage_copy"
EXECUTORS = (LIST, COPY)
AUTO = "auto"
# files_per_task: auto puts files together (in listing order) until a task holds its share of the bytes: a
# sixteenth of all (so that the tasks spread evenly over the slots of a few workers), at least 8 MiB and at most
# 64 MiB, or 1,000 files; a bigger file has a task of its own. A task costs a claim and a finish in the runs
# database (tens of ms), as long as copying a few MB takes, so small files share a task, which copies several
# at once.
AUTO_TASKS = 16
AUTO_MIN_BYTES = 8 * 2**20
AUTO_BATCH_BYTES = 64 * 2**20
AUTO_BATCH_FILES = 1_000
# At most this many copy tasks per run: past it, files are batched evenly, so that a run of 100,000 files stays
# a run of 1,000 tasks.
MAX_COPY_TASKS = 1_000
_SPEC_KEYS = ("source", "destination", "files", "destination_name", "move", "files_per_task")
_MAX_LABEL = 200


def plan_storage_run(spec: Mapping[str, Any], execution_date: date) -> list[PlannedTask]:
    """The run's first task: list the source. Its params carry the configuration and the run's date."""
    listing = PlannedTask(
        name=list_task_name(spec["source"]["url"]),
        executor=LIST,
        stage="task",
        metrics_type="task",  # spec 001: "task" is scripts and file operations
        params={
            "operation": {key: spec[key] for key in _SPEC_KEYS if key in spec},
            "execution_date": execution_date.isoformat(),
        },
    )
    validate_plan([listing])
    return [listing]


def list_task_name(source_url: str) -> str:
    return f"List Files [{_label(source_url)}]"


def batches(sizes: Sequence[int], files_per_task: int | str) -> list[range]:
    """The files (by index) each copy task copies: `files_per_task` of them, or by size (`auto`)."""
    count = len(sizes)
    if files_per_task == AUTO:
        share = min(AUTO_BATCH_BYTES, max(AUTO_MIN_BYTES, math.ceil(sum(sizes) / AUTO_TASKS)))
        found: list[range] = []
        start, held = 0, 0
        for index, size in enumerate(sizes):
            if index > start and (held + size > share or index - start >= AUTO_BATCH_FILES):
                found.append(range(start, index))
                start, held = index, 0
            held += size
        if start < count:
            found.append(range(start, count))
        if len(found) <= MAX_COPY_TASKS:
            return found
        files_per_task = 1
    step = max(1, int(files_per_task), math.ceil(count / MAX_COPY_TASKS))
    return [range(start, min(start + step, count)) for start in range(0, count, step)]


def copy_tasks(
    list_task: str,
    files: Sequence[Mapping[str, Any]],
    files_per_task: int | str,
    common: Mapping[str, Any],
) -> list[PlannedTask]:
    """One copy task per batch of `files` (snapshots with a `path` and a `size`), each depending on `list_task`.

    `common` goes into every task's params beside its `files` (the locations, `move`).
    """
    tasks = []
    for indexes in batches([int(entry["size"]) for entry in files], files_per_task):
        batch = [dict(files[index]) for index in indexes]
        tasks.append(
            PlannedTask(
                name=_copy_name(batch, indexes.start, len(files)),
                executor=COPY,
                stage="extract",  # what a copy moves counts as received (spec 002's number_received)
                metrics_type="task",  # spec 001: "task" is scripts and file operations; records are files here
                params={**common, "files": batch},
                depends_on=(Dependency(list_task),),
            )
        )
    return tasks


def _copy_name(batch: Sequence[Mapping[str, Any]], start: int, total: int) -> str:
    if len(batch) == 1:
        return f"Copy [{_label(str(batch[0]['path']))}]"
    return f"Copy files {start + 1}-{start + len(batch)} of {total}"


def _label(text: str) -> str:
    """`text` as it fits in a task name (300 characters); a shortened one keeps a hash, so names stay distinct."""
    if len(text) <= _MAX_LABEL:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{text[: _MAX_LABEL - 12]}…{digest}"
