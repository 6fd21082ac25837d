"""Spec 003's job_id: how scripts name a job, in each type's form, and reading one back.

    table-to-table       gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV
    storage-to-storage   storage-to-storage|000099|000099-jarvis-demo|DEV|stores-{{FD_DATE}}-{{FD_TIME}}.csv
    any other type       <type>|<account>|<configuration_id>|<ENV>

Each type's form lives in its definition (`OperationType.job_id`); this module only dispatches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runyard.operations import registry
from runyard.operations.definition import JobIdentity


@dataclass(frozen=True)
class JobRef:
    """A job as a job_id or a configuration names it; what it leaves out comes from the context (the
    account and environment of the workflow or request that names it)."""

    configuration_type: str
    configuration_id: str
    account: str | None = None
    environment: str | None = None


def job_id(
    *, account: str, environment: str, configuration_type: str, configuration_id: str, spec: Mapping[str, Any]
) -> str:
    definition = registry.operation_type(configuration_type)
    return definition.job_id(JobIdentity(account, environment, configuration_type, configuration_id, spec))


def parse_job_id(text: str) -> JobRef:
    """The job a job_id names. ValueError, saying which forms are accepted, for anything else."""
    segments = text.split("|")
    first = segments[0]
    configuration_type = _type_of(first)
    if configuration_type is None:
        known = ", ".join(sorted({*registry.configuration_types(), *_aliases()}))
        raise ValueError(f"job_id {text[:200]!r} starts with {first[:60]!r}, which is not a job type ({known})")
    if len(segments) == 2 and segments[1]:
        return JobRef(configuration_type, segments[1])
    if len(segments) >= 4 and all(segments[1:4]):
        return JobRef(configuration_type, segments[2], account=segments[1], environment=segments[3])
    raise ValueError(
        f"job_id {text[:200]!r} is not in a known form: '<type>|<configuration_id>' or "
        "'<type>|<account>|<configuration_id>|<ENV>[|...]'"
    )


def _type_of(first: str) -> str | None:
    if first in registry.configuration_types():
        return first
    for definition in registry.operation_types().values():
        if first in definition.job_id_aliases:
            return definition.name
    return None


def _aliases() -> set[str]:
    return {alias for each in registry.operation_types().values() for alias in each.job_id_aliases}
