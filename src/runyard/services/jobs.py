"""Every run as a job (spec 002): its status by id or by job name, in the words of that API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runyard.domain.graph import STREAM_STAGE
from runyard.domain.statuses import RUN_ACTIVE, RunStatus
from runyard.errors import InvalidInput, NotFound
from runyard.services.views import RunView
from runyard.store.tables import data_loads, runs, task_messages, tasks

_SUCCESSFUL = {RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS}
RECEIVING_STAGES = ("extract", STREAM_STAGE)  # the stages whose records are what a run received
LOAD_STAGE = "load"


@dataclass(frozen=True)
class JobStatus:
    status: str  # running | successful | failed
    msg: str
    result: str  # a JSON document, as a string (spec 002)


def find_job(conn: Connection, account_id: int, *, job_id: int | None, name: str | None) -> int:
    """The run id of a job given by integer id or by name; another account's job is not found."""
    if (job_id is None) == (name is None):
        raise InvalidInput("id", "give exactly one of the parameters id or name")
    condition = runs.c.id == job_id if job_id is not None else runs.c.job_name == name
    found = conn.execute(sa.select(runs.c.id).where(condition, runs.c.account_id == account_id)).scalar()
    if found is None:
        raise NotFound("job", job_id if job_id is not None else name)
    return int(found)


def job_status(conn: Connection, run: RunView) -> JobStatus:
    errors = (
        conn.execute(
            sa.select(task_messages.c.text)
            .where(task_messages.c.run_id == run.id, task_messages.c.level == "error")
            .order_by(task_messages.c.id)
        )
        .scalars()
        .all()
    )
    received = records_received(conn, run.id)
    updated = conn.execute(sa.select(data_loads.c.rows).where(data_loads.c.run_id == run.id)).scalar() or 0
    result = {
        "updated_objects": int(updated),
        "number_received": int(received),
        "error_objects": list(errors),
        "error": f"{len(errors)} errors were ignored" if errors and run.status in _SUCCESSFUL else "",
    }
    if run.status is RunStatus.FAILED or run.status is RunStatus.CANCELED or run.status is RunStatus.REJECTED:
        result["error"] = run.message or (errors[-1] if errors else run.status.label)
    return JobStatus(status=_status(run.status), msg=_message(run), result=orjson.dumps(result).decode())


def records_received(conn: Connection, run_id: int) -> int:
    """Spec 002's number_received: the records the run's tasks took in, whatever the run's type.

    Where the run has tasks that bring data in (the `extract` and `stream` stages: api-to-table's Process and Stream
    tasks, postgres-cdc's snapshot and stream, storage-to-storage's copies), their records; the later stages count
    the same records again (consolidation, ingestion, load) and are left out. A run without such a stage (a
    hand-written `tasks` run, table-to-table) counts every task's records but its `load` stage's.
    """
    per_stage = conn.execute(
        sa.select(tasks.c.stage, sa.func.sum(tasks.c.records_processed))
        .where(tasks.c.run_id == run_id)
        .group_by(tasks.c.stage)
    ).all()
    records = {str(stage): int(total or 0) for stage, total in per_stage}
    receiving = [records[stage] for stage in RECEIVING_STAGES if stage in records]
    if receiving:
        return sum(receiving)
    return sum(total for stage, total in records.items() if stage != LOAD_STAGE)


def _status(status: RunStatus) -> str:
    if status in RUN_ACTIVE:
        return "running"
    return "successful" if status in _SUCCESSFUL else "failed"


def _message(run: RunView) -> str:
    if run.status in RUN_ACTIVE:
        since = run.started_at or run.created_at
        return f"Job is {run.status.label.lower()} since {_stamp(since)}"
    end = run.completed_at or run.created_at
    start = run.started_at or run.created_at
    seconds = max(0.0, (end - start).total_seconds())
    verb = "finished" if run.status in _SUCCESSFUL else run.status.label.lower()
    return f"Job {verb} in {seconds} seconds at {_stamp(end)}"


def _stamp(moment: datetime) -> str:
    """2017-10-05 19:36:48.374593+00:00, as spec 002 prints it."""
    return str(moment)
