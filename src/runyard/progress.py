"""Follow a run in the terminal: a Rich progress bar per task until the run ends.

Both ways of following share `render_tasks`: polling the local store (`follow_run`, no server) and
reading a server's events stream (`follow_events`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import closing
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from runyard.api.schemas import RunPublic, TaskPublic
from runyard.client import ClientError, RunyardClient, parse_run
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.listing import run_tasks
from runyard.services.runs import RunService

POLL_SECONDS = 0.25
TASK_EVENT_PREFIX = "task_"


class TaskRow(Protocol):
    """What a bar shows of a task (TaskPublic has it)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def status_label(self) -> str: ...
    @property
    def records_processed(self) -> int: ...


Bars = dict[int, TaskID]


def task_progress(console: Console) -> Progress:
    """The display: spinner, task name, bar, status label, records, elapsed time."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[records]} records"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=False)


def render_tasks(progress: Progress, bars: Bars, tasks: Iterable[TaskRow]) -> None:
    """Add a bar for each new task and bring every bar to its task's status and records."""
    for task in tasks:
        status = TaskStatus(task.status)
        label, records = task.status_label, f"{task.records_processed:,}"
        if task.id not in bars:
            bars[task.id] = progress.add_task(escape(task.name), total=1, status=label, records=records)
        progress.update(bars[task.id], completed=1 if status.is_final else 0, status=label, records=records)
        if status is not TaskStatus.WAITING_TO_START and not status.is_final:
            progress.start_task(bars[task.id])


def follow_run(service: RunService, run_id: int, console: Console) -> RunPublic:
    """Without a server: poll the local store until the run ends."""
    bars: Bars = {}
    with task_progress(console) as progress:
        while True:
            view = service.get_run(run_id)
            with service.store.read() as conn:
                render_tasks(progress, bars, [TaskPublic.of(task) for task in run_tasks(conn, run_id)])
            if view.status.is_final:
                return RunPublic.of(view)
            time.sleep(POLL_SECONDS)


def follow_events(client: RunyardClient, run_id: int, console: Console) -> RunPublic:
    """Through a server: redraw on the run's events (tasks fetched when a task changes) until the run ends."""
    bars: Bars = {}
    with task_progress(console) as progress:
        render_tasks(progress, bars, client.tasks(run_id))
        final = _until_final(client, run_id, progress, bars)
        _refresh(progress, bars, client, run_id)
    return final or client.run(run_id)


def _until_final(client: RunyardClient, run_id: int, progress: Progress, bars: Bars) -> RunPublic | None:
    """The run as the stream last showed it, once final (None if the stream ended without saying so)."""
    with closing(client.events(run_id)) as events:
        for event, data in events:
            if event.startswith(TASK_EVENT_PREFIX):
                _refresh(progress, bars, client, run_id)
            elif event == "run" and RunStatus((run := parse_run(data)).status).is_final:
                return run
    return None


def _refresh(progress: Progress, bars: Bars, client: RunyardClient, run_id: int) -> None:
    """Redraw from the server's task list; a server gone for a moment is left to the stream's reconnects."""
    try:
        tasks = client.tasks(run_id)
    except ClientError as error:
        if error.status is not None:
            raise
        return
    render_tasks(progress, bars, tasks)
