"""Server-Sent Events of a run: its status and its tasks' changes, as they happen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from runyard.api.deps import IdPath, PrincipalDep, StoreDep
from runyard.api.schemas import RunPublic
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.services.events import RunEvent, events_after
from runyard.services.runs import get_run
from runyard.store.database import Store

router = APIRouter(tags=["runs"])
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


@router.get(
    "/api/v1/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "A stream of run and task events"}},
)
async def run_events(run_id: IdPath, request: Request, store: StoreDep, principal: PrincipalDep) -> StreamingResponse:
    """`event: run` carries the run; `event: task_*` a task's change; `event: end` closes a finished run's stream.

    Reconnecting clients send Last-Event-ID and get only what they missed.
    """
    await run_in_threadpool(_run, store, run_id, principal.account_id)  # 404 before the stream starts
    after = _last_event_id(request.headers.get("last-event-id"))
    stream = _stream(request, store, run_id, principal.account_id, after)
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _stream(request: Request, store: Store, run_id: int, account_id: int, after: int) -> AsyncIterator[bytes]:
    run = await run_in_threadpool(_run, store, run_id, account_id)
    yield _frame("run", run.model_dump(mode="json"))
    idle = 0.0
    while not await request.is_disconnected():
        batch = await run_in_threadpool(_events, store, run_id, after)
        for event in batch:
            after = event.id
            yield _frame(event.kind, _event_data(event), event.id)
        if batch:
            idle = 0.0
            run = await run_in_threadpool(_run, store, run_id, account_id)
            yield _frame("run", run.model_dump(mode="json"))
        if RunStatus(run.status).is_final and not batch:
            yield _frame("end", {"status": run.status, "status_label": run.status_label})
            return
        await asyncio.sleep(POLL_SECONDS)
        idle += POLL_SECONDS
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield b": keep-alive\n\n"


def _run(store: Store, run_id: int, account_id: int) -> RunPublic:
    with store.read() as conn:
        return RunPublic.of(get_run(conn, run_id, account_id=account_id))


def _events(store: Store, run_id: int, after: int) -> list[RunEvent]:
    with store.read() as conn:
        return events_after(conn, run_id, after)


def _event_data(event: RunEvent) -> dict[str, object]:
    label = None
    if event.status and event.task_id is not None:
        label = TaskStatus(event.status).label
    elif event.status:
        label = RunStatus(event.status).label
    return {
        "id": event.id,
        "run_id": event.run_id,
        "task_id": event.task_id,
        "task_name": event.task_name,
        "kind": event.kind,
        "status": event.status,
        "status_label": label,
        "detail": event.detail,
        "created_at": event.created_at.isoformat(),
    }


def _frame(kind: str, data: object, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _last_event_id(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
