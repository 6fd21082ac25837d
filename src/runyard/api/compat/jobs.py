"""Spec 002: GET /api/v1/bulk_metadata/job/?id=N or ?name=<url-encoded job name>, with a TOKEN header."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from runyard.api.deps import MAX_ID, PrincipalDep, StoreDep
from runyard.services.jobs import find_job, job_status
from runyard.services.runs import get_run

router = APIRouter(tags=["jobs (spec 002)"])

# The document's two query parameters, one required: documented as one form-exploded object (`?id=N` or
# `?name=...`) whose `oneOf` says so, since OpenAPI cannot tie two parameters together. Neither or both is a 400.
JOB_QUERY: dict[str, Any] = {
    "name": "job",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": True,
    "description": "Exactly one of `id` (the job's integer id, a run id) or `name` (the job name, which contains #)",
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            "name": {"type": "string", "minLength": 1, "maxLength": 400},
        },
        "oneOf": [{"required": ["id"]}, {"required": ["name"]}],
    },
}


class JobStatusPublic(BaseModel):
    status: str
    msg: str
    result: str


@router.get("/api/v1/bulk_metadata/job/", response_model=JobStatusPublic, openapi_extra={"parameters": [JOB_QUERY]})
@router.get("/api/v1/bulk_metadata/job", response_model=JobStatusPublic, include_in_schema=False)  # no redirect
def job(
    store: StoreDep,
    principal: PrincipalDep,
    id: int | None = Query(default=None, ge=1, le=MAX_ID, include_in_schema=False),  # JOB_QUERY documents both
    name: str | None = Query(default=None, min_length=1, max_length=400, include_in_schema=False),
) -> JobStatusPublic:
    """The status of a job: `running`, `successful` or `failed`, a message, and a JSON result string."""
    with store.read() as conn:
        run_id = find_job(conn, principal.account_id, job_id=id, name=name)
        status = job_status(conn, get_run(conn, run_id))
    return JobStatusPublic(status=status.status, msg=status.msg, result=status.result)
