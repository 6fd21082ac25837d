"""Spec 003: launch a job, read its runs' statuses, reset a workflow, (de)activate or archive a configuration.

    POST /v1/dag/launch            launch_job                 {"run_id": "<run key>"}
    POST /v1/dag/status            check_run_status           {"results": [<the run>]}
                                   get_last_status            {"results": [<runs, newest first>]}
    POST /v1/workflow/status       reset_workflow_status      {"code": 200, "data": {}, "message": "ok"}
    POST /v1/configuration/status  set_configuration_status   {"code": 200, "data": {}, "message": "ok"}
    GET  /v1/auth/whoami           who the token is (for `runyard auth get-token`)

Every body names the configuration as spec 003 does (account, environment, configuration_type, configuration_id)
and an `action`. Every error, whatever raised it (authentication, an unreadable body, the services), is answered
in spec 003's shape, `{"code": <HTTP status>, "data": {}, "message": "<what is wrong>"}`, by Spec003Route, never
in the native `{"detail": ...}` one:

    400  the body is not JSON, not an object, too big a field, a field missing, mistyped or unknown, an unknown
         action (the message lists this path's actions), an invalid value or combination
    401  no credential, or an invalid or expired one        403  the role does not allow the action
    404  no such configuration in the token's account, another account named, a job_id or run_id not of it
    409  launch: the configuration is deactivated, archived or a workflow, or another run is active (the message
         names the rejected run_id and the active one)
    429  launch: another run is active and too many launches were rejected in the last minute (nothing recorded;
         the message names the active run_id; Retry-After)
    413  a body over MAX_BODY_BYTES                         503  the runs database is unavailable
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from runyard.api.auth import (
    CHALLENGE,
    Authenticator,
    AuthFailed,
    CredentialsMissing,
    Forbidden,
    admin_only,
    operator_only,
)
from runyard.api.deps import RunsDep, StoreDep
from runyard.api.errors import headers_for, status_for
from runyard.errors import InvalidInput, RunyardError
from runyard.services.dag_status import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SPEC003_STATUSES,
    Caller,
    Identity,
    RunStatusItem,
    StatusQuery,
    find_configuration,
    launch_job,
    run_statuses,
)
from runyard.services.operations import set_status
from runyard.services.tokens import Principal
from runyard.services.workflows import reset_workflow

log = logging.getLogger("runyard.api.spec003")

MAX_BODY_BYTES = 64 * 1024  # a request is a few hundred bytes; refuse megabytes before parsing them
MAX_PROBLEMS = 5
WORKFLOW = "workflow"

#: The actions each path takes, listed when a body names another.
ACTIONS: dict[str, tuple[str, ...]] = {
    "/v1/dag/launch": ("launch_job",),
    "/v1/dag/status": ("check_run_status", "get_last_status"),
    "/v1/workflow/status": ("reset_workflow_status",),
    "/v1/configuration/status": ("set_configuration_status",),
}


# --- errors in spec 003's shape ------------------------------------------------------------------------------------


class Spec003Reply(BaseModel):
    """Spec 003's answer to an action that returns nothing, and to every error: `data` is always {}."""

    code: int
    data: dict[str, Any] = Field(default_factory=dict)
    message: str


def reply(code: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "data": {}, "message": message}, status_code=code, headers=headers)


def refusal(path: str, code: int, message: str) -> dict[str, Any]:
    """The body of a request refused before routing (runyard.limits): spec 003's shape on its paths, else `detail`."""
    return {"code": code, "data": {}, "message": message} if path in ACTIONS else {"detail": message}


class Spec003Route(APIRoute):
    """Authenticates first, caps the body, and answers every error of the route in spec 003's shape."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()
        actions = ACTIONS.get(self.path, ())

        async def guarded(request: Request) -> Response:
            try:
                authenticator: Authenticator = request.app.state.authenticator
                request.state.spec003_principal = await run_in_threadpool(authenticator.principal, request)
                await _read_body(request)
                response: Response = await handler(request)
            except Exception as error:  # each kind is answered in the one shape, by _error_reply
                return _error_reply(error, request, self.path, actions)
            return response

        return guarded


class _BodyTooLarge(RunyardError):
    def __init__(self) -> None:
        super().__init__(f"the body is larger than {MAX_BODY_BYTES} bytes")


async def _read_body(request: Request) -> None:
    """Read the body (at most MAX_BODY_BYTES) before FastAPI does, which then finds it read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge()
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Starlette's cache of the body: request.body() returns it


def _error_reply(error: Exception, request: Request, path: str, actions: tuple[str, ...]) -> JSONResponse:
    if isinstance(error, CredentialsMissing):
        return reply(401, "Authentication credentials were not provided.", CHALLENGE)
    if isinstance(error, AuthFailed):
        log.info("%s", error)  # the reason stays on the server
        return reply(401, "Authentication failed", CHALLENGE)
    if isinstance(error, Forbidden):
        return reply(403, str(error))
    if isinstance(error, _BodyTooLarge):
        return reply(413, str(error))
    if isinstance(error, RequestValidationError):
        empty = not getattr(request, "_body", b"").strip()
        return reply(400, describe_invalid(error, f"{request.method} {path}", actions, empty=empty))
    if isinstance(error, RunyardError):
        return reply(status_for(error), str(error), headers_for(error))
    if isinstance(error, StarletteHTTPException):  # FastAPI's own: a body it could not parse
        return reply(error.status_code, str(error.detail), error.headers)
    if isinstance(error, sa.exc.OperationalError):
        log.warning("runs database unavailable: %s", str(error.orig).splitlines()[0] if error.orig else error)
        return reply(503, "The runs database is unavailable; try again shortly", {"Retry-After": "5"})
    if isinstance(error, sa.exc.DataError):
        return reply(400, "A value in the request is out of range")
    log.exception("unexpected error")
    return reply(500, "Internal error; it has been logged")


def describe_invalid(error: RequestValidationError, route: str, actions: tuple[str, ...], *, empty: bool) -> str:
    """One sentence for what is wrong with a body: the body itself, else its action, else each field (a few)."""
    problems = list(error.errors())
    allowed = ", ".join(actions)
    for problem in problems:
        whole = _whole_body_problem(problem, allowed, empty=empty)
        if whole:
            return whole
    for problem in problems:
        kind, where = problem["type"], _where(problem, actions)
        if kind == "union_tag_not_found" or (where == "action" and kind == "missing"):
            return f"action: required, one of: {allowed}"
        if kind == "union_tag_invalid" or where == "action":
            given = problem.get("ctx", {}).get("tag") if kind == "union_tag_invalid" else problem.get("input")
            return f"action: {str(given)[:60]!r} is not an action of {route}; allowed: {allowed}"
    return "; ".join(_field_problem(problem, actions) for problem in problems[:MAX_PROBLEMS])


def _whole_body_problem(problem: Any, allowed: str, *, empty: bool) -> str:
    kind, loc = problem["type"], problem["loc"]
    if kind == "json_invalid":
        reason = problem.get("ctx", {}).get("error", "invalid")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON: {reason}{at}"
    if tuple(loc) != ("body",):
        return ""
    if kind == "missing" and empty:
        return f"the body is empty: send a JSON object with an action ({allowed}) and its fields"
    if kind == "missing":  # FastAPI reads a JSON null as no body
        return "the body must be a JSON object, not null"
    if kind == "model_attributes_type":
        if isinstance(problem.get("input"), bytes):
            return "the body is not JSON: send it as JSON, with the header content-type: application/json"
        return f"the body must be a JSON object, not {_json_kind(problem.get('input'))}"
    return ""


def _json_kind(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"), (list, "an array"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _where(problem: Any, actions: tuple[str, ...]) -> str:
    """The field a problem is about, without `body` and the action tag a union puts in its location."""
    parts = [str(part) for part in problem["loc"][1:]]
    if parts and parts[0] in actions and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _field_problem(problem: Any, actions: tuple[str, ...]) -> str:
    where, kind = _where(problem, actions), problem["type"]
    if kind == "missing":
        return f"{where}: required"
    if kind == "extra_forbidden":
        return f"{where}: not a field of this action"
    message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"


# --- bodies ----------------------------------------------------------------------------------------------------------


def _execution_date(value: str) -> str:
    try:
        if len(value) == 10:
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise ValueError(f"{value[:40]!r} is not a date: send YYYY-MM-DD, e.g. 2020-12-09")


def _status(value: str) -> str:
    if value not in SPEC003_STATUSES:
        raise ValueError(f"{value[:40]!r} is not a status; use one of: {', '.join(SPEC003_STATUSES)}")
    return value


ExecutionDate = Annotated[str, Field(max_length=10, examples=["2020-12-09"]), AfterValidator(_execution_date)]
JobId = Annotated[str, Field(min_length=1, max_length=1000, examples=["gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV"])]


class _Identity(BaseModel):
    """A configuration as spec 003 names it; JSON types are not coerced ("true" is not a boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    account: Annotated[str, Field(min_length=1, max_length=100, examples=["000099"])]
    environment: Annotated[str, Field(min_length=1, max_length=50, examples=["DEV"])]
    configuration_type: Annotated[str, Field(min_length=1, max_length=50, examples=["table-to-table"])]
    configuration_id: Annotated[
        str, Field(min_length=1, max_length=300, examples=["000099_iowa_liquor_prepare_pda_DEV"])
    ]

    def identity(self) -> Identity:
        return Identity(self.account, self.environment, self.configuration_type, self.configuration_id)


class LaunchJob(_Identity):
    action: Literal["launch_job"]
    execution_date: ExecutionDate | None = Field(
        default=None, description="The run's execution_date (YYYY-MM-DD); default: today (UTC)"
    )
    job_id: JobId | None = Field(default=None, description="Optional: checked to be this configuration's job")


class CheckRunStatus(_Identity):
    action: Literal["check_run_status"]
    job_id: JobId
    run_id: Annotated[
        str, Field(min_length=1, max_length=64, examples=["20201230-112837-0a795c70-2557-4a60-ba16-788aa2bea179"])
    ]


class GetLastStatus(_Identity):
    action: Literal["get_last_status"]
    job_id: JobId | None = None
    execution_date: ExecutionDate | None = Field(default=None, description="Only the runs of this execution_date")
    status: Annotated[str, Field(max_length=40), AfterValidator(_status)] | None = Field(
        default=None, description=f"Only the runs in this status: {', '.join(SPEC003_STATUSES)}"
    )
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


class ResetWorkflowStatus(_Identity):
    action: Literal["reset_workflow_status"]


class SetConfigurationStatus(_Identity):
    action: Literal["set_configuration_status"]
    activated: bool
    archived: bool


StatusAction = Annotated[CheckRunStatus | GetLastStatus, Field(discriminator="action")]


# --- answers ---------------------------------------------------------------------------------------------------------


class Launched(BaseModel):
    run_id: str = Field(examples=["20201230-113940-1fb692b0-3531-4578-9919-acf6fdb0a5b1"])


class RunStatusPublic(BaseModel):
    account: str
    configuration_id: str
    configuration_type: str
    duration: str = Field(examples=["0:01:24.002519"])
    environment: str
    job_id: str
    last_update_date: str = Field(examples=["2020-12-30T11:30:07.960767+00:00"])
    run_id: str
    start_execution_date: str = Field(examples=["2020-12-30T11:28:43.861340+00:00"])
    status: str = Field(examples=["SUCCESS"])

    @classmethod
    def of(cls, item: RunStatusItem) -> RunStatusPublic:
        return cls(**vars(item))


class RunStatuses(BaseModel):
    results: list[RunStatusPublic]


class WhoAmI(BaseModel):
    account: str
    login: str
    role: str
    user_id: int


OK = Spec003Reply(code=200, message="ok")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Spec003Reply, "description": description}
    for status, description in (
        (400, "The body is not a JSON object of this path's actions, or a field is missing, mistyped or invalid"),
        (401, "No credentials, or invalid ones"),
        (403, "Your role does not allow this"),
        (404, "No such configuration in your token's account (or the job_id or run_id is not its own)"),
        (413, "The body is too large"),
        (503, "The runs database is unavailable"),
        ("default", "Any other error, in the same shape"),
    )
}
CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {"model": Spec003Reply, "description": "Deactivated, archived or a workflow; or another run is active"}
}

router = APIRouter(tags=["dag (spec 003)"], route_class=Spec003Route, responses=ERRORS)


# --- callers -------------------------------------------------------------------------------------------------------


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.spec003_principal  # set by Spec003Route before anything else
    return principal


def _operator(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    return operator_only(principal)


def _administrator(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    return admin_only(principal)


def _caller(principal: Principal) -> Caller:
    return Caller(principal.account_id, principal.account, principal.user_id, principal.login)


ReaderDep = Annotated[Principal, Depends(_principal)]
OperatorDep = Annotated[Principal, Depends(_operator)]
AdministratorDep = Annotated[Principal, Depends(_administrator)]


# --- routes ----------------------------------------------------------------------------------------------------------


# 200, not the native launch's 202: spec 003 shows only the body, and scripts written from it test for 200.
@router.post("/v1/dag/launch", response_model=Launched, responses=CONFLICTS)
def launch(body: LaunchJob, store: StoreDep, runs: RunsDep, principal: OperatorDep) -> Launched:
    """Launch a job (operators): its run_id. 409 when it is deactivated, archived or a workflow, or when another
    of its runs is active (that launch is recorded as a Rejected run, named in the message)."""
    run_key = launch_job(
        store,
        runs,
        _caller(principal),
        body.identity(),
        execution_date=date.fromisoformat(body.execution_date) if body.execution_date else None,
        job=body.job_id,
    )
    return Launched(run_id=run_key)


@router.post("/v1/dag/status", response_model=RunStatuses)
def status(body: Annotated[StatusAction, Body()], store: StoreDep, principal: ReaderDep) -> RunStatuses:
    """`check_run_status`: the run `run_id` of the job. `get_last_status`: its runs, newest first, filtered by
    `execution_date`, `status` and `limit` (1 to 100, default 10)."""
    if isinstance(body, CheckRunStatus):
        query = StatusQuery(run_key=body.run_id, limit=1)
    else:
        query = StatusQuery(
            execution_date=date.fromisoformat(body.execution_date) if body.execution_date else None,
            status=body.status,
            limit=body.limit,
        )
    found = run_statuses(store, _caller(principal), body.identity(), query, job=body.job_id)
    return RunStatuses(results=[RunStatusPublic.of(item) for item in found])


@router.post("/v1/workflow/status", response_model=Spec003Reply)
def workflow_status(body: ResetWorkflowStatus, store: StoreDep, principal: OperatorDep) -> Spec003Reply:
    """Reset a workflow (operators): every upstream success counted so far is forgotten."""
    if body.configuration_type != WORKFLOW:
        raise InvalidInput(
            "configuration_type", f"reset_workflow_status resets a workflow: send configuration_type {WORKFLOW!r}"
        )
    with store.read() as conn:
        workflow = find_configuration(conn, body.identity(), _caller(principal))
    reset_workflow(store, workflow.id, account=principal.account_id)
    return OK


@router.post("/v1/configuration/status", response_model=Spec003Reply)
def configuration_status(body: SetConfigurationStatus, store: StoreDep, principal: AdministratorDep) -> Spec003Reply:
    """Activate (`activated` true, `archived` false), deactivate (false, false) or archive (false, true) a
    configuration (administrators, as POST /api/v1/operations/{id}/status). true, true is refused: archiving
    deactivates."""
    caller = _caller(principal)
    with store.read() as conn:
        operation = find_configuration(conn, body.identity(), caller)
    set_status(
        store,
        operation.id,
        activated=body.activated,
        archived=body.archived,
        account=principal.account_id,
        changed_by=caller.changed_by,
    )
    return OK


@router.get("/v1/auth/whoami", response_model=WhoAmI)
def whoami(principal: ReaderDep) -> WhoAmI:
    """Who the token is: what `runyard auth get-token` prints beside it."""
    return WhoAmI(
        account=principal.account, login=principal.login, role=principal.role.value, user_id=principal.user_id
    )
