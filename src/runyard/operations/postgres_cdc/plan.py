"""The task graph of a postgres-cdc run, and the names the configuration implies.

    Initial Snapshot (the tables, read at the replication slot's starting point, one load)
        ─► Stream Changes [slot] (runs until the run is canceled: each batch of changes, one load)

The plan works on the configuration as plain data, so it stays pure; spec.py uses the naming helpers below.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from runyard.domain.graph import STREAM_STAGE, Dependency, PlannedTask, validate_plan
from runyard.domain.statuses import RunType

SNAPSHOT = "cdc_snapshot"
STREAM = "cdc_stream"
EXECUTORS = (SNAPSHOT, STREAM)
SNAPSHOT_TASK = "Initial Snapshot"
# A lost lease (a worker killed, a machine restarted) hands the stream to another worker, attempt + 1: a stream
# that runs for weeks may be taken over many times, and each take-over resumes from the warehouse's position.
STREAM_ATTEMPTS = 1000
SLOT_MAX = 63  # PostgreSQL's NAMEDATALEN - 1
_SLOT_UNSAFE = re.compile(r"[^a-z0-9_]+")


def default_slot(account: str, configuration_id: str, environment: str) -> str:
    """`runyard_<account>_<configuration_id>_<env>` in the letters a slot name allows (a-z, 0-9, _); a long
    one is cut and ends in a hash of the whole, so that two operations never share a slot."""
    whole = f"runyard_{account}_{configuration_id}_{environment}".lower()
    name = _SLOT_UNSAFE.sub("_", whole)
    if len(name) <= SLOT_MAX:
        return name
    digest = hashlib.sha256(whole.encode()).hexdigest()[:10]
    return f"{name[: SLOT_MAX - 11]}_{digest}"


def target_name(source_table: str) -> str:
    """The warehouse table of `schema.table`: the table's name without its schema."""
    return source_table.split(".", 1)[1]


def slot_of(spec: Mapping[str, Any]) -> str:
    return spec.get("slot") or default_slot(
        spec.get("account", "default"), spec["configuration_id"], spec.get("environment", "DEV")
    )


def plan_cdc(spec: Mapping[str, Any], run_type: RunType) -> list[PlannedTask]:
    slot = slot_of(spec)
    common = {
        "url_env": spec["source"]["url_env"],
        "slot": slot,
        "tables": [{"source": table, "target": target_name(table)} for table in spec["tables"]],
    }
    snapshot = PlannedTask(
        name=SNAPSHOT_TASK,
        executor=SNAPSHOT,
        stage="extract",
        metrics_type="extract",
        params={**common, "destructive": run_type is RunType.DESTRUCTIVE},
    )
    stream = PlannedTask(
        name=f"Stream Changes [{slot}]",
        executor=STREAM,
        stage=STREAM_STAGE,
        metrics_type="stream",
        params={
            **common,
            "batch_max_changes": int(spec.get("batch_max_changes", 10_000)),
            "poll_seconds": float(spec.get("poll_seconds", 1.0)),
        },
        depends_on=(Dependency(snapshot.name),),
        max_attempts=STREAM_ATTEMPTS,
    )
    planned = [snapshot, stream]
    validate_plan(planned)
    return planned
