"""Spec 004 (BI Views v2): paged exports with continuation tokens, and the activity monitoring of their queues.

Every route is served under /api/integrations/v2 (the document's path) and /api/integration/v2 (the BI Views v2
download's). Errors are `{"detail": ...}` like the rest of the API; past the last page the answer also carries
`total_pages` and `total_rows`; past the account's exports per minute, page 1 is a 429 with Retry-After.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from runyard.api.auth import operator_only
from runyard.api.deps import PrincipalDep
from runyard.errors import TooManyRequests
from runyard.services.export_format import EXTENSIONS, MEDIA_TYPES, TOKEN_HEADER
from runyard.services.exports import (
    ExportError,
    ExportService,
    parse_page_number,
    parse_request,
)

router = APIRouter(tags=["exports (spec 004)"])
PREFIXES = ("/api/integrations/v2", "/api/integration/v2")

ViewName = Annotated[str, Path(min_length=1, max_length=300, description="A declared view or a warehouse table")]
TaskId = Annotated[str, Path(min_length=1, max_length=200, description="The continuation token of page 1")]
Text = Annotated[str | None, Query(max_length=40)]


def _exports(request: Request) -> ExportService:
    service: ExportService = request.app.state.exports
    return service


def _refusal(error: ExportError) -> JSONResponse:
    extra = {key: value for key, value in error.extra.items() if key != "token"}
    headers = {TOKEN_HEADER: error.extra["token"]} if "token" in error.extra else None
    return JSONResponse({"detail": error.detail, **extra}, status_code=error.status, headers=headers)


def biview(
    request: Request,
    principal: PrincipalDep,
    view: ViewName,
    fromDate: Text = None,
    toDate: Text = None,
    pagenum: Text = None,
    pageSize: Text = None,
    outputType: Text = None,
    count: Annotated[bool, Query(description='Answer {"count": rows} instead of a page')] = False,
    continuation_token: Annotated[str | None, Header(alias=TOKEN_HEADER, max_length=200)] = None,
) -> Response:
    """One page of a view or table: CSV by default (`outputType=gzip` or `json`), `pageSize` rows (default 1,000).

    Page 1 starts the export and answers the `continuation-token` header; send it with every later page.
    `pagenum=0` answers 204; `count=true` answers the row count. Page 1 past RUNYARD_EXPORTS_PER_MINUTE exports
    started by your account in the last minute answers 429 with Retry-After and starts nothing."""
    operator_only(principal)
    exports = _exports(request)
    try:
        number = parse_page_number(pagenum)
        if number == 0:
            return Response(status_code=204)
        if count:
            checked = parse_request(view, fromDate, toDate, pageSize, outputType)
            return JSONResponse({"count": exports.count(principal.account, checked)})
        if continuation_token:
            # Parameters repeated with the token are checked against page 1's (a changed filter is a 400).
            asked = {"fromDate": fromDate, "toDate": toDate, "pageSize": pageSize, "outputType": outputType}
            page = exports.page(principal.account_id, principal.account, continuation_token, view, number, asked=asked)
        elif number == 1:
            checked = parse_request(view, fromDate, toDate, pageSize, outputType)
            page = exports.start(principal.account, principal.account_id, principal.user_id, checked)
        else:
            raise ExportError(400, f"pages after the first need the {TOKEN_HEADER} header that page 1 answered")
    except ExportError as error:
        return _refusal(error)
    except TooManyRequests as throttled:
        headers = {"Retry-After": str(throttled.retry_after_seconds)}
        return JSONResponse({"detail": str(throttled)}, status_code=429, headers=headers)
    headers = {TOKEN_HEADER: page.token, "page-number": str(page.number)}
    if page.total_pages is not None and page.total_rows is not None:
        headers |= {"total-pages": str(page.total_pages), "total-rows": str(page.total_rows)}
    headers["Content-Disposition"] = f'attachment; filename="{view}-page-{page.number}.{EXTENSIONS[page.output_type]}"'
    return Response(page.data, media_type=MEDIA_TYPES[page.output_type], headers=headers)


def sessions(request: Request, principal: PrincipalDep) -> dict[str, list[dict[str, Any]]]:
    """Every export session of your account, grouped by queue: active, completed, draining, stale."""
    operator_only(principal)
    return _exports(request).sessions(principal.account, principal.account_id)


def session(request: Request, principal: PrincipalDep, task_id: TaskId) -> Response:
    """One export session (its queue included)."""
    operator_only(principal)
    try:
        return JSONResponse(_exports(request).session(principal.account, principal.account_id, task_id))
    except ExportError as error:
        return _refusal(error)


def cancel(request: Request, principal: PrincipalDep, task_id: TaskId) -> Response:
    """Cancel an export session: caching stops, it drains, and its cached pages are deleted."""
    operator_only(principal)
    try:
        return JSONResponse(_exports(request).cancel(principal.account, principal.account_id, task_id))
    except ExportError as error:
        return _refusal(error)


for _prefix in PREFIXES:
    router.add_api_route(
        f"{_prefix}/biviews/{{view}}",
        biview,
        methods=["GET"],
        response_class=Response,
        responses={
            204: {"description": "pagenum=0: no page"},
            429: {
                "description": "Page 1 past RUNYARD_EXPORTS_PER_MINUTE exports started by your account in the last "
                "minute: nothing started; see Retry-After"
            },
        },
    )
    router.add_api_route(f"{_prefix}/biviews-status", sessions, methods=["GET"])
    router.add_api_route(f"{_prefix}/biviews-status/{{task_id}}", session, methods=["GET"])
    router.add_api_route(f"{_prefix}/biviews-status/{{task_id}}", cancel, methods=["DELETE"])
