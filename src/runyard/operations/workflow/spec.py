"""The workflow configuration: the upstream jobs it waits for and the job it launches.

    configuration_type: workflow
    configuration_id: hr-summaries-after-hr
    authorized_job_ids:                       # the upstream jobs, by spec 003 job_id ...
      - "api-to-table|default|demo-hr|DEV"
      - {configuration_type: table-to-table, configuration_id: prepare}   # ... or by identity
    target_dag: {configuration_type: table-to-table, configuration_id: demo-hr-summaries}

A job named by identity is in the workflow's account, and in its environment unless it says otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from runyard.operations.spec import ENVIRONMENT, OperationBase, StrictModel

MAX_UPSTREAMS = 100


class JobSpec(StrictModel):
    """One job: a spec 003 job_id, or its configuration_type and configuration_id (and environment)."""

    job_id: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    configuration_type: str | None = None
    configuration_id: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    environment: Annotated[str, Field(pattern=ENVIRONMENT)] | None = None
    account: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _job_id_alone(cls, value: Any) -> Any:
        return {"job_id": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way(self) -> JobSpec:
        by_identity = self.configuration_type is not None or self.configuration_id is not None
        if self.job_id is not None and by_identity:
            raise ValueError("name a job by job_id or by configuration_type and configuration_id, not both")
        if self.job_id is None and (self.configuration_type is None or self.configuration_id is None):
            raise ValueError("name a job by job_id, or by both configuration_type and configuration_id")
        return self


class WorkflowOperation(OperationBase):
    configuration_type: Literal["workflow"]
    authorized_job_ids: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_UPSTREAMS)] = Field(
        description="The upstream jobs: the target is launched once each has succeeded since the last launch"
    )
    target_dag: JobSpec = Field(description="The job the workflow launches")
