"""The SQL Explorer's API: run a read-only query on your account's warehouse, stop it, list the tables.

The routes are plain `def`s: FastAPI runs them in its thread pool, so a long query never holds the event loop.
The work is services.sql_explorer's; this module only shapes requests and answers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from runyard.api.deps import OperatorDep
from runyard.api.schemas import StrictBody
from runyard.services.sql_explorer import (
    MAX_SQL_CHARS,
    NOT_HERE,
    QUERY_ID_PATTERN,
    SqlAnswer,
    SqlExplorer,
    csv_chunks,
    explorer_for,
    json_rows,
)
from runyard.warehouse.base import Column, TableInfo

router = APIRouter(prefix="/api/v1/sql", tags=["sql"])

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
CSV_FILENAME = "query.csv"
MAX_LIMIT = 1_000_000  # RUNYARD_SQL_ROW_LIMIT's own ceiling; the setting lowers it
QueryIdPath = Annotated[str, Path(pattern=f"^{QUERY_ID_PATTERN}$", description="The id the query was started with")]


class SqlQuery(StrictBody):
    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        description="One query that reads: SELECT, WITH ... SELECT, or EXPLAIN of one (DESCRIBE, SHOW, SUMMARIZE, "
        "VALUES and FROM-first queries are queries too)",
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIMIT,
        description="At most this many rows; default and maximum RUNYARD_SQL_ROW_LIMIT (a larger value is a 400)",
    )
    query_id: str | None = Field(
        default=None,
        pattern=f"^{QUERY_ID_PATTERN}$",
        description="An id you choose, to stop the query with DELETE /api/v1/sql/{query_id}; one is made if omitted",
    )


class SqlColumn(BaseModel):
    name: str
    type: str = Field(description="The database's type, e.g. BIGINT, VARCHAR, TIMESTAMP, STRUCT(a INTEGER)")

    @classmethod
    def of(cls, column: Column) -> SqlColumn:
        return cls(name=column.name, type=column.type)


class SqlResult(BaseModel):
    """A query's rows. Values are JSON: dates and times ISO 8601; DECIMAL, HUGEINT, UUID and non-finite floats as
    text; BLOBs base64; INTERVALs ISO 8601 durations; lists, structs and maps as arrays and objects."""

    query_id: str
    columns: list[SqlColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="The query had more rows than the limit: only the first ones are here")
    elapsed_ms: float


class SqlTable(BaseModel):
    name: str
    kind: Literal["table", "view"]
    columns: list[SqlColumn]

    @classmethod
    def of(cls, table: TableInfo) -> SqlTable:
        return cls(name=table.name, kind=table.kind, columns=[SqlColumn.of(column) for column in table.columns])


class SqlTables(BaseModel):
    tables: list[SqlTable]


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "This HTTP process holds no warehouse (RUNYARD_HTTP_PROCESSES > 1)"}
}
QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The query was refused, failed, ran past RUNYARD_SQL_TIMEOUT_SECONDS or was stopped: the "
        "database's message"
    },
    409: {"description": "You already run a query with this query_id"},
    429: {
        "description": "Your account ran RUNYARD_SQL_QUERIES_PER_MINUTE queries in the last minute: this one did not "
        "run; see Retry-After"
    },
}


def _explorer(request: Request) -> SqlExplorer:
    explorer = explorer_for(request.app.state, request.app.state.context)
    if not explorer.available():
        raise HTTPException(503, NOT_HERE)
    return explorer


def _wants_csv(format: str | None, accept: str | None) -> bool:
    if format is not None:
        return format == "csv"
    return accept is not None and "text/csv" in accept.lower()


@router.post(
    "",
    response_model=SqlResult,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "The rows (JSON), or CSV with `Accept: text/csv` or `?format=csv`: a header row of the "
            "column names, then the rows; nested values as JSON text",
        },
        **QUERY_ERRORS,
        **UNAVAILABLE,
    },
)
def run_query(
    body: SqlQuery,
    request: Request,
    principal: OperatorDep,
    format: Annotated[Literal["json", "csv"] | None, Query(description="csv: answer CSV (as Accept: text/csv)")] = None,
) -> Response:
    """Run one read-only query on your account's warehouse (operators and administrators). It runs in a transaction
    that cannot write, on a database that cannot read or write files, load extensions or change its settings; it
    is stopped after RUNYARD_SQL_TIMEOUT_SECONDS. Every refusal and database error is a 400 with the database's
    message; past RUNYARD_SQL_QUERIES_PER_MINUTE queries of your account in the last minute, a 429 with Retry-After
    (the query does not run)."""
    explorer = _explorer(request)
    if body.limit is not None and body.limit > explorer.row_limit:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "limit"),
                    "msg": f"Input should be less than or equal to {explorer.row_limit} (RUNYARD_SQL_ROW_LIMIT)",
                    "input": body.limit,
                }
            ]
        )
    answer = explorer.run(
        principal.account,
        principal.user_id,
        body.sql,
        account_id=principal.account_id,
        limit=body.limit,
        query_id=body.query_id,
    )
    if _wants_csv(format, request.headers.get("accept")):
        return csv_response(answer)
    return JSONResponse(_result(answer))


def _result(answer: SqlAnswer) -> dict[str, Any]:
    return {
        "query_id": answer.query_id,
        "columns": [{"name": column.name, "type": column.type} for column in answer.columns],
        "rows": json_rows(answer.rows),
        "row_count": answer.row_count,
        "truncated": answer.truncated,
        "elapsed_ms": answer.elapsed_ms,
    }


def csv_response(answer: SqlAnswer) -> StreamingResponse:
    return StreamingResponse(
        csv_chunks(answer.columns, answer.rows),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{CSV_FILENAME}"'},
    )


@router.delete(
    "/{query_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "You have no query running with this id"}, **UNAVAILABLE},
)
def stop_query(query_id: QueryIdPath, request: Request, principal: OperatorDep) -> Response:
    """Stop your running query `query_id` (its POST then answers 400 "the query was stopped")."""
    if not _explorer(request).stop(principal.user_id, query_id):
        raise HTTPException(404, f"you have no query {query_id!r} running")
    return Response(status_code=204)


@router.get("/tables", response_model=SqlTables, responses=UNAVAILABLE)
def tables(request: Request, principal: OperatorDep) -> SqlTables:
    """Your account's tables and views, with their columns, by name (runyard's own tables left out)."""
    return SqlTables(tables=[SqlTable.of(table) for table in _explorer(request).tables(principal.account)])
