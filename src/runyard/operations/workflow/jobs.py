"""The jobs a workflow names, resolved to full identities (account, environment, type, deployed id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runyard.operations import registry
from runyard.operations.job_ids import JobRef, parse_job_id


@dataclass(frozen=True)
class WorkflowJobs:
    upstreams: tuple[JobRef, ...]  # every field set
    target: JobRef


def resolve_jobs(spec: Mapping[str, Any]) -> WorkflowJobs:
    """The upstreams and target of a workflow configuration (as stored: plain JSON). ValueError with the dotted
    field of the entry that cannot be read: `(field, reason)` in its args."""
    upstreams = tuple(
        _resolve(entry, spec, f"authorized_job_ids.{index}") for index, entry in enumerate(spec["authorized_job_ids"])
    )
    return WorkflowJobs(upstreams, _resolve(spec["target_dag"], spec, "target_dag"))


def _resolve(entry: Mapping[str, Any], workflow: Mapping[str, Any], field: str) -> JobRef:
    if entry.get("job_id"):
        try:
            ref = parse_job_id(entry["job_id"])
        except ValueError as error:
            raise ValueError(f"{field}.job_id", str(error)) from None
    else:
        ref = JobRef(
            entry["configuration_type"], entry["configuration_id"], entry.get("account"), entry.get("environment")
        )
        if ref.configuration_type not in registry.configuration_types():
            allowed = ", ".join(registry.configuration_types())
            raise ValueError(
                f"{field}.configuration_type",
                f"{ref.configuration_type!r} is not a configuration type; allowed: {allowed}",
            )
    account = ref.account or workflow.get("account", "default")
    environment = ref.environment or workflow.get("environment", "DEV")
    deployed = registry.operation_type(ref.configuration_type).deployed_id(ref.configuration_id, environment)
    return JobRef(ref.configuration_type, deployed, account, environment)
