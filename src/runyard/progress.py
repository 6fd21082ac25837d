"""Follow a run in the terminal: a Rich progress bar per task until the run ends.

Both ways of following share `render_tasks`: polling the local store (`follow_run`, no server) and
reading a server's events stream (`follow_events`), which also reads the tasks every REFRESH_SECONDS while
the run goes on: records and rates change without an event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from runyard.api.schemas import RunPublic, TaskPublic
from runyard.client import ClientError, RunyardClient, parse_run
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.listing import run_tasks
from runyard.services.metrics import format_rate, rate_per_second
from runyard.services.runs import RunService

POLL_SECONDS = 0.25
REFRESH_SECONDS = 1.0  # the live metrics are written about once a second (RUNYARD_METRICS_SECONDS)
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
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def completed_at(self) -> datetime | None: ...


Bars = dict[int, TaskID]


def task_progress(console: Console) -> Progress:
    """The display: spinner, task name, bar, status label, records, rate, elapsed time."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[records]} records"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=False)


def render_tasks(progress: Progress, bars: Bars, tasks: Iterable[TaskRow]) -> None:
    """Add a bar for each new task and bring every bar to its task's status, records and rate."""
    now = datetime.now(UTC)
    for task in tasks:
        status = TaskStatus(task.status)
        label, records, rate = task.status_label, f"{task.records_processed:,}", _rate(task, now)
        if task.id not in bars:
            bars[task.id] = progress.add_task(escape(task.name), total=1, status=label, records=records, rate=rate)
        done = 1 if status.is_final else 0
        progress.update(bars[task.id], completed=done, status=label, records=records, rate=rate)
        if status is not TaskStatus.WAITING_TO_START and not status.is_final:
            progress.start_task(bars[task.id])


def _rate(task: TaskRow, now: datetime) -> str:
    """Records per second: so far while the task runs, over its whole duration once it ended."""
    if task.started_at is None or not task.records_processed:
        return ""
    return format_rate(rate_per_second(task.records_processed, task.started_at, task.completed_at or now))


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
        lock = threading.Lock()  # the stream's refreshes and the timer's draw the same bars
        render_tasks(progress, bars, client.tasks(run_id))
        ended = threading.Event()
        timer = threading.Thread(
            target=_refresh_every, args=(ended, lock, progress, bars, client, run_id), name="runyard-wait", daemon=True
        )
        timer.start()
        try:
            final = _until_final(client, run_id, progress, bars, lock)
        finally:
            ended.set()
            timer.join()
        _refresh(progress, bars, client, run_id, lock)
    return final or client.run(run_id)


def _refresh_every(
    ended: threading.Event, lock: threading.Lock, progress: Progress, bars: Bars, client: RunyardClient, run_id: int
) -> None:
    """Redraw every REFRESH_SECONDS until the run ends; a failure is left to the stream, which reports it."""
    while not ended.wait(REFRESH_SECONDS):
        try:
            _refresh(progress, bars, client, run_id, lock)
        except ClientError:
            continue


def _until_final(
    client: RunyardClient, run_id: int, progress: Progress, bars: Bars, lock: threading.Lock
) -> RunPublic | None:
    """The run as the stream last showed it, once final (None if the stream ended without saying so)."""
    with closing(client.events(run_id)) as events:
        for event, data in events:
            if event.startswith(TASK_EVENT_PREFIX):
                _refresh(progress, bars, client, run_id, lock)
            elif event == "run" and RunStatus((run := parse_run(data)).status).is_final:
                return run
    return None


def _refresh(progress: Progress, bars: Bars, client: RunyardClient, run_id: int, lock: threading.Lock) -> None:
    """Redraw from the server's task list; a server gone for a moment is left to the stream's reconnects."""
    try:
        tasks = client.tasks(run_id)
    except ClientError as error:
        if error.status is not None:
            raise
        return
    with lock:
        render_tasks(progress, bars, tasks)
