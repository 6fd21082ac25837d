"""Follow a run in the terminal: a Rich progress bar per task until the run ends."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from runyard.domain.statuses import TASK_FINAL, TaskStatus
from runyard.services.queries import list_tasks
from runyard.services.runs import RunService
from runyard.services.views import RunView

POLL_SECONDS = 0.25


def follow_run(service: RunService, run_id: int, console: Console) -> RunView:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[records]} records"),
        TimeElapsedColumn(),
    )
    bars: dict[int, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        while True:
            view = service.get_run(run_id)
            with service.store.read() as conn:
                tasks = list_tasks(conn, run_id)
            for task in tasks:
                done = task.status in TASK_FINAL
                status, records = task.status.label, f"{task.records_processed:,}"
                if task.id not in bars:
                    bars[task.id] = progress.add_task(escape(task.name), total=1, status=status, records=records)
                started = task.status is not TaskStatus.WAITING_TO_START
                progress.update(bars[task.id], completed=1 if done else 0, status=status, records=records)
                if started and not done:
                    progress.start_task(bars[task.id])
            if view.status.is_final:
                return view
            time.sleep(POLL_SECONDS)
