"""The `List Files [...]` task: list the source once, refuse what must not be copied, spawn the copies.

What it refuses, naming the file: a file two patterns match, two files whose names render to the same
destination name, a name that renders outside the destination folder, a symbolic link leading out of the
allowed root, a file that would be copied onto itself. Nothing is copied when anything is refused.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.resources import EngineResources
from runyard.operations.storage_to_storage import globs
from runyard.operations.storage_to_storage.locations import Place, resolve
from runyard.operations.storage_to_storage.names import file_variables, name_problem, render_name
from runyard.operations.storage_to_storage.plan import AUTO, copy_tasks
from runyard.staging.storage import FileInfo, human_bytes

_CHECK_EVERY = 1_000  # files between two checkpoints while matching


def list_files(ctx: TaskContext, resources: EngineResources) -> None:
    config = ctx.params["operation"]
    execution_date = date.fromisoformat(str(ctx.params["execution_date"]))
    source = resolve(config["source"], resources, "source")
    destination = resolve(config["destination"], resources, "destination")
    ctx.checkpoint()
    listed = source.list_files(recursive=globs.recursive(config["files"]))
    destination.check_can_hold_files()
    ctx.checkpoint()
    entries = snapshot(ctx, listed, config, source, destination, execution_date)
    patterns = ", ".join(config["files"])
    if not entries:
        ctx.message("info", f"No file in {source.label} matches {patterns}: there is nothing to copy")
        return
    files_per_task = config.get("files_per_task", AUTO)
    tasks = copy_tasks(
        ctx.identity.name,
        entries,
        files_per_task,
        {"source": config["source"], "destination": config["destination"], "move": bool(config.get("move"))},
    )
    total = sum(int(entry["size"]) for entry in entries)
    ctx.message(
        "info",
        f"Found {_count(len(entries), 'file')} ({human_bytes(total)}) matching {patterns} in {source.label}; "
        f"{'moving' if config.get('move') else 'copying'} them to {destination.label} in "
        f"{_count(len(tasks), 'copy task')}",
    )
    ctx.spawn(tasks)


def snapshot(
    ctx: TaskContext,
    listed: list[FileInfo],
    config: dict[str, Any],
    source: Place,
    destination: Place,
    execution_date: date,
) -> list[dict[str, Any]]:
    """The matching files as the copies will see them, each with its destination name (TaskFailed on a refusal)."""
    patterns = [(pattern, globs.compile_pattern(pattern)) for pattern in config["files"]]
    template = str(config.get("destination_name") or "{{FD_NAME}}")
    same_place = source.storage.root == destination.storage.root and source.folder == destination.folder
    claimed: dict[str, str] = {}  # destination name -> the file that renders to it
    entries: list[dict[str, Any]] = []
    for index, info in enumerate(listed):
        if index % _CHECK_EVERY == 0:
            ctx.checkpoint()
        relative = source.relative(info.path)
        matched = [pattern for pattern, compiled in patterns if compiled.fullmatch(relative)]
        if not matched:
            continue
        if len(matched) > 1:
            raise TaskFailed(
                f"{source.show(relative)} is matched by more than one pattern ({', '.join(matched)}); "
                "a file may be matched once: make the patterns exclusive"
            )
        source.check_file(info, relative)
        name = render_name(template, file_variables(relative, info.modified, execution_date))
        problem = name_problem(name)
        if problem:
            raise TaskFailed(f"destination_name {problem} for {source.show(relative)}; nothing was copied")
        if name in claimed:
            raise TaskFailed(
                f"{source.show(claimed[name])} and {source.show(relative)} would both be copied to "
                f"{destination.show(name)}; give destination_name a variable that tells them apart ({{{{FD_NAME}}}})"
            )
        if same_place and name == relative:
            raise TaskFailed(f"{source.show(relative)} would be copied onto itself")
        claimed[name] = relative
        entries.append(
            {
                "path": relative,
                "size": info.size,
                "modified": info.modified.isoformat(),
                "version": info.version,
                "etag": info.etag,
                "destination": name,
            }
        )
    return entries


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
