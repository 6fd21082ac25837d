"""Data > SQL Explorer: a read-only query on the account's warehouse, its tables and columns, results and CSV.

Progressive: the editor is a form that posts to /sql, and the server renders the page with the result, so it
works without JavaScript. With it (static/sql.js), the same post is sent by fetch with the header
`X-Runyard-Fragment: result`, and only the result's HTML comes back into the page; Ctrl/Cmd+Enter runs, clicking a
table or column name inserts it, and Stop posts the query's id to /sql/stop. Operators and administrators only,
as in the API; the work is services.sql_explorer's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from runyard.errors import RunyardError, TooManyRequests
from runyard.services.sql_explorer import SqlAnswer, SqlExplorer, cell_text, csv_chunks, explorer_for
from runyard.ui.web import (
    FormDep,
    Viewer,
    ViewerDep,
    check_form,
    first,
    parse_int,
    refuse_unless_operator,
    render,
    ui_state,
)

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[1] / "static"
STATIC_MAX_AGE = "public, max-age=3600"
PAGE_ROWS = 1_000  # rows the page shows by default (the form may ask for up to RUNYARD_SQL_ROW_LIMIT)
FRAGMENT_HEADER = "X-Runyard-Fragment"
CSV_FILENAME = "query.csv"
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _explorer(request: Request) -> SqlExplorer:
    return explorer_for(request.app.state, ui_state(request).context)


def identifier(name: str) -> str:
    """`name` as the editor should insert it: as is when DuckDB would read it unquoted, else double-quoted."""
    return name if _PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def elapsed_text(milliseconds: float) -> str:
    return f"{milliseconds:,.1f} ms" if milliseconds < 1000 else f"{milliseconds / 1000:,.2f} s"


def _page(
    request: Request,
    who: Viewer,
    *,
    sql: str = "",
    limit: int | None = None,
    answer: SqlAnswer | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    explorer = _explorer(request)
    tables, tables_error = [], None
    try:
        tables = explorer.tables(who.principal.account)
    except RunyardError as exc:
        tables_error = str(exc)
    row_limit = explorer.row_limit
    return render(
        request,
        "sql.html",
        who,
        active="sql",
        status_code=status_code,
        sql=sql,
        limit=limit or min(PAGE_ROWS, row_limit),
        row_limit=row_limit,
        timeout=explorer.timeout_seconds,
        tables=tables,
        tables_error=tables_error,
        refused=None,
        identifier=identifier,
        **_result_context(answer, error, sql),
    )


def _result_context(answer: SqlAnswer | None, error: str | None, sql: str) -> dict[str, Any]:
    return {
        "answer": answer,
        "error": error,
        "ran_sql": sql,
        "cell_text": cell_text,
        "elapsed": elapsed_text(answer.elapsed_ms) if answer else "",
    }


@router.get("/static/sql.js")
def script() -> Response:
    return FileResponse(STATIC / "sql.js", media_type="text/javascript", headers={"Cache-Control": STATIC_MAX_AGE})


@router.get("/static/sql.css")
def stylesheet() -> Response:
    return FileResponse(STATIC / "sql.css", media_type="text/css", headers={"Cache-Control": STATIC_MAX_AGE})


@router.get("/sql")
def sql_page(request: Request, who: ViewerDep) -> Response:
    if not who.can_operate:
        return render(
            request,
            "sql.html",
            who,
            active="sql",
            status_code=403,
            refused=f"Your role ({who.principal.role.value}) cannot run SQL queries: it needs operator or "
            "administrator.",
        )
    return _page(request, who)


@router.post("/sql")
def run_query(request: Request, who: ViewerDep, form: FormDep) -> Response:
    check_form(request, who, form)
    refused = refuse_unless_operator(request, who, "/sources", "run SQL queries")
    if refused is not None:
        return refused
    sql = first(form, "sql") or ""
    answer, error, limit = None, None, None
    try:
        limit = parse_int(first(form, "limit"), "Max rows")
        answer = _explorer(request).run(
            who.principal.account,
            who.principal.user_id,
            sql,
            account_id=who.principal.account_id,
            limit=limit,
            query_id=first(form, "query_id") or None,
        )
    except TooManyRequests as exc:
        error, status_code, retry_after = str(exc), 429, exc.retry_after_seconds
    except (ValueError, RunyardError) as exc:
        error, status_code, retry_after = str(exc), 400, None
    else:
        status_code, retry_after = 200, None
    response: Response
    if request.headers.get(FRAGMENT_HEADER) == "result":
        response = render(
            request, "sql_result.html", who, status_code=status_code, **_result_context(answer, error, sql)
        )
        response.headers[FRAGMENT_HEADER] = "result"
    else:
        response = _page(request, who, sql=sql, limit=limit, answer=answer, error=error, status_code=status_code)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@router.post("/sql/stop")
def stop_query(request: Request, who: ViewerDep, form: FormDep) -> Response:
    """Stop the user's running query (its id is in the form): 204, or 404 when it is not running (yet, or anymore)."""
    check_form(request, who, form)
    if not who.can_operate:
        return Response(status_code=403)
    stopped = _explorer(request).stop(who.principal.user_id, first(form, "query_id") or "")
    return Response(status_code=204 if stopped else 404)


@router.post("/sql/csv")
def download_csv(request: Request, who: ViewerDep, form: FormDep) -> Response:
    """The query's rows as CSV (up to RUNYARD_SQL_ROW_LIMIT), or the page with the error."""
    check_form(request, who, form)
    refused = refuse_unless_operator(request, who, "/sources", "run SQL queries")
    if refused is not None:
        return refused
    sql = first(form, "sql") or ""
    try:
        answer = _explorer(request).run(
            who.principal.account, who.principal.user_id, sql, account_id=who.principal.account_id
        )
    except TooManyRequests as exc:
        response = _page(request, who, sql=sql, error=str(exc), status_code=429)
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    except RunyardError as exc:
        return _page(request, who, sql=sql, error=str(exc), status_code=400)
    return StreamingResponse(
        csv_chunks(answer.columns, answer.rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{CSV_FILENAME}"', "Cache-Control": "no-store"},
    )
