"""The task graph of an api-to-table run (spec 000, "How an API Run Works").

    Get High Watermark [ep] ─► Process [ep] (one per slice) ─► Metadata Consolidation [ep]
        ─► ep Consolidation ─► Ingestion [ep] ─► Data Load (every table, one transaction)

An endpoint with `mode: stream` is one long task instead, `Stream [ep]`, which loads its own micro-batches
until the run is canceled; the Data Load then covers the batch endpoints only (none: no Data Load).

The plan works on the spec as plain data (the config layer dumps it), so it stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from runyard.domain.graph import STREAM_STAGE, Dependency, PlannedTask, validate_plan
from runyard.domain.statuses import RunType

HWM = "hwm"
EXTRACT = "extract"
METADATA = "metadata_consolidation"
CONSOLIDATE = "table_consolidation"
INGEST = "ingest"
DATA_LOAD = "data_load"
STREAM = "stream"
EXECUTORS = (HWM, EXTRACT, METADATA, CONSOLIDATE, INGEST, DATA_LOAD, STREAM)
DEFAULT_POLL_SECONDS = 5.0
# A stream that loses its worker is taken over by another (attempt + 1) and resumes from the stored watermark;
# it ends only when canceled, so its attempts are many.
STREAM_ATTEMPTS = 1000


def plan_api_run(spec: Mapping[str, Any], run_type: RunType, today: date) -> list[PlannedTask]:
    source = {key: value for key, value in spec.items() if key in _SOURCE_KEYS}
    planned: list[PlannedTask] = []
    loads: list[Dependency] = []
    batch = [e for e in spec["endpoints"] if e.get("mode", "batch") == "batch"]
    for endpoint in spec["endpoints"]:
        if endpoint.get("mode", "batch") == "stream":
            planned.append(_stream_task(source, endpoint, run_type))
            continue
        chain = _endpoint_tasks(source, endpoint, run_type, today)
        planned.extend(chain)
        loads.append(Dependency(chain[-1].name, soft=not endpoint.get("required", True)))
    if batch:
        planned.append(
            PlannedTask(
                name="Data Load",
                executor=DATA_LOAD,
                stage="load",
                metrics_type="load",
                params={"run_type": run_type.value, "tables": [_table_load(e, run_type) for e in batch]},
                depends_on=tuple(loads),
            )
        )
    validate_plan(planned)
    return planned


_SOURCE_KEYS = (
    "base_url",
    "auth",
    "headers",
    "rate_limit",
    "timeout_seconds",
    "request_deadline_seconds",
    "max_retries",
)


def _endpoint_tasks(
    source: Mapping[str, Any], endpoint: Mapping[str, Any], run_type: RunType, today: date
) -> list[PlannedTask]:
    name = endpoint["name"]
    required = bool(endpoint.get("required", True))
    incremental = run_type is RunType.INCREMENTAL and endpoint.get("incremental") is not None
    common = {"table": name, "run_type": run_type.value}
    tasks: list[PlannedTask] = []
    upstream: tuple[Dependency, ...] = ()
    if incremental:
        hwm = PlannedTask(
            name=f"Get High Watermark [{name}]",
            executor=HWM,
            stage="hwm",
            metrics_type="hwm",
            params={**common, "incremental": endpoint["incremental"]},
            required=required,
            table=name,
        )
        tasks.append(hwm)
        upstream = (Dependency(hwm.name),)
    slices = _slices(endpoint.get("slicing"), today)
    for index, slice_ in enumerate(slices):
        label = f"Process [{name}]" if len(slices) == 1 else f"Process [{name}] {index + 1}/{len(slices)}"
        tasks.append(
            PlannedTask(
                name=label,
                executor=EXTRACT,
                stage="extract",
                metrics_type="extract",
                params={
                    **common,
                    "source": dict(source),
                    "endpoint": dict(endpoint),
                    "slice": slice_,
                    "incremental": incremental,
                },
                depends_on=upstream,
                required=required,
                reusable=True,
                table=name,
            )
        )
    extracts = tuple(Dependency(t.name) for t in tasks if t.executor == EXTRACT)
    metadata = PlannedTask(
        name=f"Metadata Consolidation [{name}]",
        executor=METADATA,
        stage="consolidate",
        params=common,
        depends_on=extracts,
        required=required,
        table=name,
    )
    consolidation = PlannedTask(
        name=f"{name} Consolidation",
        executor=CONSOLIDATE,
        stage="consolidate",
        params=common,
        depends_on=(Dependency(metadata.name),),
        required=required,
        table=name,
    )
    ingestion = PlannedTask(
        name=f"Ingestion [{name}]",
        executor=INGEST,
        stage="ingest",
        metrics_type="load",
        params=common,
        depends_on=(Dependency(consolidation.name),),
        required=required,
        table=name,
    )
    return [*tasks, metadata, consolidation, ingestion]


def _stream_task(source: Mapping[str, Any], endpoint: Mapping[str, Any], run_type: RunType) -> PlannedTask:
    name = endpoint["name"]
    return PlannedTask(
        name=f"Stream [{name}]",
        executor=STREAM,
        stage=STREAM_STAGE,
        metrics_type="stream",
        params={
            "table": name,
            "run_type": run_type.value,
            "source": dict(source),
            "endpoint": dict(endpoint),
            "poll_seconds": float(endpoint.get("poll_seconds") or DEFAULT_POLL_SECONDS),
            "load": _table_load(endpoint, RunType.INCREMENTAL),
        },
        required=bool(endpoint.get("required", True)),
        max_attempts=STREAM_ATTEMPTS,
        table=name,
    )


def _slices(slicing: Mapping[str, Any] | None, today: date) -> list[dict[str, Any] | None]:
    if not slicing:
        return [None]
    if slicing["by"] == "pages":
        count = int(slicing["slices"])
        return [{"by": "pages", "index": i, "count": count} for i in range(count)]
    start = date.fromisoformat(str(slicing["start"]))
    end = today if slicing.get("end", "today") == "today" else date.fromisoformat(str(slicing["end"]))
    return [
        {
            "by": "date_window",
            "param_from": slicing["param_from"],
            "param_to": slicing["param_to"],
            "from": low.isoformat(),
            "to": high.isoformat(),
        }
        for low, high in date_windows(start, end, int(slicing["window_days"]))
    ]


def date_windows(start: date, end: date, days: int) -> list[tuple[date, date]]:
    """Consecutive windows covering start..end inclusive, each at most `days` long."""
    windows: list[tuple[date, date]] = []
    low = start
    while low <= end:
        high = min(end, low + timedelta(days=days - 1))
        windows.append((low, high))
        low = high + timedelta(days=1)
    return windows


def _table_load(endpoint: Mapping[str, Any], run_type: RunType) -> dict[str, Any]:
    incremental = endpoint.get("incremental")
    merge = run_type is RunType.INCREMENTAL and bool(endpoint.get("primary_key") or incremental)
    return {
        "name": endpoint["name"],
        "mode": "merge" if merge else "replace",
        "primary_key": list(endpoint.get("primary_key") or []),
        "cursor_field": incremental["cursor_field"] if incremental else None,
        "required": bool(endpoint.get("required", True)),
    }
