"""The SQL Explorer over real HTTP: the API, the web UI without JavaScript, and the `runyard sql` command.

One stack for the module: a SQLite store with the accounts "default" and "other" (an administrator, an operator
and a viewer each), their DuckDB warehouses with different tables loaded the way runs load them, and
create_app(runtime) served by uvicorn on loopback. The CLI runs as a subprocess against that server.

Every escape attempt must fail with a 400 naming the problem AND change nothing: the tables, their rows and the
files of the warehouse folder are compared before and after. The slow query is the one of
test_warehouse_reads.py (a trillion-pair join, over half an hour on this machine): each stop or timeout must end
it within seconds.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from runyard.app import create_app
from runyard.runtime import Runtime, engine_resources, open_store
from runyard.services.accounts import bootstrap_admin, create_account, create_user
from runyard.services.sql_explorer import SqlExplorer
from runyard.settings import Settings
from runyard.warehouse import LoadRequest, TableLoad
from runyard.warehouse.base import LOADED_AT_COLUMN, Warehouse
from tests import live_server
from tests.integration.cli_helpers import Runyard
from tests.integration.rest_harness import ADMIN_PASSWORD, MISSING, USERS, cheap_hashing
from tests.integration.ui_client import UiClient, csrf_of

SLOW = "SELECT count(*) FROM range(1_000_000) a, range(1_000_000) b WHERE a.range + b.range < 0"
STOPPED_WITHIN = 10.0  # seconds; the slow query would run for over half an hour
HTTP_TIMEOUT = 30.0


@dataclass
class SqlStack:
    settings: Settings
    runtime: Runtime
    app: Any
    base_url: str
    tmp: Path
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    _clients: list[httpx.Client] = field(default_factory=list)

    def token(self, account: str, role: str) -> str:
        if (account, role) not in self._tokens:
            user = USERS[(account, role)]
            response = httpx.post(
                f"{self.base_url}/api/v1/auth/token",
                json={"login": user.login, "password": user.password},
                timeout=HTTP_TIMEOUT,
            )
            assert response.status_code == 200, response.text
            self._tokens[(account, role)] = response.json()["access_token"]
        return self._tokens[(account, role)]

    def api(self, account: str = "default", role: str = "operator") -> httpx.Client:
        client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token(account, role)}"},
            timeout=HTTP_TIMEOUT,
        )
        self._clients.append(client)
        return client

    def warehouse(self, account: str) -> Warehouse:
        assert self.runtime.warehouses is not None
        return self.runtime.warehouses.for_account(account)

    @property
    def folder(self) -> Path:
        return Path(self.settings.resolved_warehouse_url)

    @property
    def explorer(self) -> SqlExplorer:
        explorer = self.app.state.sql_explorer
        assert isinstance(explorer, SqlExplorer)
        return explorer

    def user_id(self, account: str, role: str) -> int:
        response = self.api(account, role).get("/v1/auth/whoami")
        assert response.status_code == 200, response.text
        return int(response.json()["user_id"])


def _load(warehouse: Warehouse, run_key: str, tables: dict[str, pa.Table]) -> None:
    """Load tables as a run does: staged, then loaded together with the loaded-at column."""
    for name, table in tables.items():
        warehouse.stage(run_key, name, table.to_reader())
    loads = tuple(TableLoad(name=name, mode="replace", loaded_at_column=LOADED_AT_COLUMN) for name in tables)
    warehouse.load(LoadRequest(run_key=run_key, operation_id=1, tables=loads))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStack]:
    home = tmp_path_factory.mktemp("sql")
    # Many queries a minute from one account (this file, test_explorer_bypass.py): RUNYARD_SQL_QUERIES_PER_MINUTE off.
    settings = Settings(
        home=home, secret_key="sql-explorer-test-key-of-at-least-32-bytes", sql_queries_per_minute=100_000
    )
    with cheap_hashing():
        store = open_store(settings)
        bootstrap_admin(store, ADMIN_PASSWORD)
        create_account(store, "other")
        for (account, role), user in USERS.items():
            if user.login != "admin":
                create_user(store, account=account, login=user.login, password=user.password, role=role)
        runtime = Runtime(settings, store, resources=engine_resources(settings))
        try:
            _load(
                runtime.warehouses.for_account("default"),  # type: ignore[union-attr]
                "run-1",
                {
                    "people": pa.table({"id": list(range(25)), "name": [f"p{i}" for i in range(25)]}),
                    "teams": pa.table({"team": ["red", "blue"], "size": [3, 4]}),
                },
            )
            runtime.warehouses.for_account("default").query(  # type: ignore[union-attr]
                "CREATE VIEW adults AS SELECT id, name FROM people WHERE id >= 18"
            )
            _load(
                runtime.warehouses.for_account("other"),  # type: ignore[union-attr]
                "run-2",
                {"orders": pa.table({"order_id": [10, 11, 12], "amount": [1.5, 2.5, 3.5]})},
            )
            app = create_app(runtime)
            with live_server.serving(app, name="uvicorn-sql") as url:
                made = SqlStack(settings, runtime, app, url, home)
                try:
                    yield made
                finally:
                    for client in made._clients:
                        client.close()
        finally:
            runtime.close()


def signed_in_as(base_url: str, account: str, role: str) -> UiClient:
    """A browser without JavaScript, signed in through the login form."""
    user = USERS[(account, role)]
    client = UiClient(base_url)
    response = client.sign_in(user.login, user.password)
    assert response.status_code == 303, response.text
    return client


def query(client: httpx.Client, sql: str, **extra: Any) -> httpx.Response:
    return client.post("/api/v1/sql", json={"sql": sql, **extra})


def snapshot(stack: SqlStack) -> dict[str, Any]:
    """What a query must not change: every account's tables (kind, columns, rows) and the names of the warehouse
    folder's files (no file written, attached or created). Not their sizes, nor DuckDB's `.wal` files: a process
    lets an account's file go after IDLE_RELEASE_SECONDS unused, which checkpoints its WAL into it, whenever the
    machine's timing has it."""
    accounts = {}
    for account in ("default", "other"):
        warehouse = stack.warehouse(account)
        accounts[account] = [
            (table.name, table.kind, table.columns, warehouse.query(f'SELECT count(*) FROM "{table.name}"'))
            for table in warehouse.tables()
        ]
    files = sorted(str(path.relative_to(stack.folder)) for path in stack.folder.rglob("*") if path.suffix != ".wal")
    return {"tables": accounts, "files": files}


# -- what a query may do ------------------------------------------------------------------------------------------


def test_a_query_answers_columns_rows_count_and_time(stack: SqlStack) -> None:
    response = query(stack.api(), "SELECT id, name FROM people WHERE id < 3 ORDER BY id", query_id="first-one")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_id"] == "first-one"
    assert body["columns"] == [{"name": "id", "type": "BIGINT"}, {"name": "name", "type": "VARCHAR"}]
    assert body["rows"] == [[0, "p0"], [1, "p1"], [2, "p2"]]
    assert body["row_count"] == 3
    assert body["truncated"] is False
    assert isinstance(body["elapsed_ms"], float)
    assert 0 <= body["elapsed_ms"] < HTTP_TIMEOUT * 1000


def test_a_query_id_is_made_when_none_is_given(stack: SqlStack) -> None:
    ids = {query(stack.api(), "SELECT 1").json()["query_id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(len(found) == 32 for found in ids)


def test_loaded_tables_carry_the_loaded_at_column_and_values_are_json(stack: SqlStack) -> None:
    body = query(
        stack.api(),
        f"SELECT {LOADED_AT_COLUMN}, 12.50::DECIMAL(10,2) AS price, 'NaN'::DOUBLE AS nan, 'ab'::BLOB AS raw, "
        "'00000000-0000-0000-0000-00000000002a'::UUID AS u, DATE '2024-02-29' AS day, INTERVAL 1 DAY AS span, "
        "{'a': [1, 2]} AS nested FROM teams LIMIT 1",
    ).json()
    (row,) = body["rows"]
    loaded_at, *rest = row
    loaded = datetime.fromisoformat(loaded_at)  # a TIMESTAMP (UTC) in ISO 8601
    assert abs(datetime.now(UTC).replace(tzinfo=None) - loaded) < timedelta(hours=1)
    assert rest == ["12.50", "NaN", "YWI=", "00000000-0000-0000-0000-00000000002a", "2024-02-29", "P1D", {"a": [1, 2]}]


def test_with_and_explain_run(stack: SqlStack) -> None:
    client = stack.api()
    with_query = query(client, "WITH big AS (SELECT * FROM teams WHERE size > 3) SELECT team FROM big")
    assert with_query.json()["rows"] == [["blue"]]
    explained = query(client, "EXPLAIN SELECT * FROM people")
    assert explained.status_code == 200
    assert explained.json()["rows"][0][0] == "physical_plan"


def test_the_limit_and_truncated(stack: SqlStack) -> None:
    client = stack.api()
    limited = query(client, "SELECT id FROM people ORDER BY id", limit=5).json()
    assert limited["rows"] == [[0], [1], [2], [3], [4]]
    assert (limited["row_count"], limited["truncated"]) == (5, True)
    whole = query(client, "SELECT id FROM people", limit=25).json()
    assert (whole["row_count"], whole["truncated"]) == (25, False)
    everything = query(client, "SELECT id FROM people").json()  # the default: RUNYARD_SQL_ROW_LIMIT (10,000)
    assert (everything["row_count"], everything["truncated"]) == (25, False)


def test_the_row_limit_setting_caps_every_answer(stack: SqlStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.runtime, "settings", stack.settings.model_copy(update={"sql_row_limit": 10}))
    client = stack.api()
    capped = query(client, "SELECT id FROM people").json()
    assert (capped["row_count"], capped["truncated"]) == (10, True)
    over = query(client, "SELECT id FROM people", limit=11)
    assert over.status_code == 400
    assert over.json() == {"detail": "limit: Input should be less than or equal to 10 (RUNYARD_SQL_ROW_LIMIT)"}
    csv_rows = client.post("/api/v1/sql", params={"format": "csv"}, json={"sql": "SELECT id FROM people"}).text
    assert len(csv_rows.splitlines()) == 11  # the header and ten rows


def test_tables_lists_the_accounts_tables_and_views(stack: SqlStack) -> None:
    response = stack.api().get("/api/v1/sql/tables")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "tables": [
            {
                "name": "adults",
                "kind": "view",
                "columns": [{"name": "id", "type": "BIGINT"}, {"name": "name", "type": "VARCHAR"}],
            },
            {
                "name": "people",
                "kind": "table",
                "columns": [
                    {"name": "id", "type": "BIGINT"},
                    {"name": "name", "type": "VARCHAR"},
                    {"name": LOADED_AT_COLUMN, "type": "TIMESTAMP"},
                ],
            },
            {
                "name": "teams",
                "kind": "table",
                "columns": [
                    {"name": "team", "type": "VARCHAR"},
                    {"name": "size", "type": "BIGINT"},
                    {"name": LOADED_AT_COLUMN, "type": "TIMESTAMP"},
                ],
            },
        ]
    }


# -- CSV --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["accept", "format"])
def test_csv_download(stack: SqlStack, how: str) -> None:
    sql = "SELECT id, name, [id, id + 1] AS pair, NULL AS nothing FROM people WHERE id IN (1, 2) ORDER BY id"
    if how == "accept":
        response = stack.api().post("/api/v1/sql", json={"sql": sql}, headers={"Accept": "text/csv"})
    else:
        response = stack.api().post("/api/v1/sql", params={"format": "csv"}, json={"sql": sql})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="query.csv"'
    assert list(csv.reader(io.StringIO(response.text))) == [
        ["id", "name", "pair", "nothing"],
        ["1", "p1", "[1,2]", ""],
        ["2", "p2", "[2,3]", ""],
    ]


def test_csv_of_a_failing_query_is_a_json_400(stack: SqlStack) -> None:
    response = stack.api().post("/api/v1/sql", params={"format": "csv"}, json={"sql": "SELECT nope FROM people"})
    assert response.status_code == 400
    assert "Binder Error" in response.json()["detail"]


# -- escapes: each fails, names its problem and changes nothing -----------------------------------------------------


ESCAPES = [
    ("CREATE TABLE z AS SELECT 1", "this is a CREATE statement"),
    ("INSERT INTO people VALUES (99, 'x', now())", "this is an INSERT statement"),
    ("UPDATE people SET name = 'x'", "this is an UPDATE statement"),
    ("DELETE FROM people", "this is a DELETE statement"),
    ("DROP TABLE people", "this is a DROP statement"),
    ("COPY people TO '{tmp}/x.csv'", "this is a COPY statement"),
    ("COPY (SELECT 1) TO '{tmp}/y.csv'", "this is a COPY statement"),
    ("EXPORT DATABASE '{tmp}/export'", "this is an EXPORT statement"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "this is an ATTACH statement"),
    ("DETACH acme", "this is a DETACH statement"),
    ("INSTALL httpfs", "this is a LOAD statement"),
    ("LOAD httpfs", "this is a LOAD statement"),
    ("SET memory_limit='1GB'", "this is a SET statement"),
    ("SET enable_external_access = true", "this is a SET statement"),
    ("PRAGMA threads=1", "this is a SET statement"),
    ("CHECKPOINT", "this is a CALL statement"),
    ("CALL pragma_version()", "this is a CALL statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd" - file system operations are disabled'),
    (
        "SELECT * FROM read_text('/etc/passwd')",
        'Cannot access file "/etc/passwd" - file system operations are disabled',
    ),
    ("SELECT * FROM glob('/etc/*')", 'Cannot access file "/etc/*" - file system operations are disabled'),
    ("SELECT * FROM '{tmp}/x.csv'", "file system operations are disabled"),
    ("SELECT 1; SELECT 2", "run one query at a time: this text holds 2 statements"),
    ("SELECT 1; DROP TABLE people", "run one query at a time: this text holds 2 statements"),
    ("SELECT * FROM query('CREATE TABLE z AS SELECT 1')", "Parser Error: Expected a single SELECT statement"),
    ("SELECT nextval('s')", "Sequence with name s does not exist"),
    # A SELECT to the parser, a write inside: the READ ONLY transaction refuses it.
    ("WITH gone AS (DELETE FROM people RETURNING *) SELECT * FROM gone", "transaction is launched in read-only mode"),
    ("WITH added AS (INSERT INTO teams VALUES ('x', 1, now()) RETURNING *) SELECT * FROM added", "read-only mode"),
]


@pytest.mark.parametrize(("sql", "message"), ESCAPES, ids=[sql[:40] for sql, _ in ESCAPES])
def test_an_escape_fails_names_the_problem_and_changes_nothing(stack: SqlStack, sql: str, message: str) -> None:
    client = stack.api("default", "administrator")  # the most powerful caller
    query(client, "SELECT 1")  # the account's warehouse is open before the snapshot
    before = snapshot(stack)
    text = sql.format(tmp=stack.tmp)
    response = query(client, text)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"], response.json()
    assert snapshot(stack) == before
    assert not any(stack.tmp.glob("x.csv"))
    assert not any(stack.tmp.glob("y.csv"))
    assert not (stack.tmp / "export").exists()
    assert not (stack.tmp / "other.duckdb").exists()
    settings = query(client, "SELECT current_setting('enable_external_access'), current_setting('memory_limit')")
    assert settings.json()["rows"] == [[False, "488.2 MiB"]]


def test_a_database_error_comes_back_with_the_databases_words(stack: SqlStack) -> None:
    response = query(stack.api(), "SELECT nmae FROM people")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith('Binder Error: Referenced column "nmae" not found in FROM clause!\nCandidate bindings: ')
    assert '"name"' in detail
    syntax = query(stack.api(), "SELECT 1\nFROM people\nWHER id = 1")
    assert syntax.status_code == 400
    assert syntax.json()["detail"].startswith('Parser Error: syntax error at or near "id"')
    assert "LINE 3: WHER id = 1" in syntax.json()["detail"]


# -- accounts ---------------------------------------------------------------------------------------------------


def test_each_account_sees_only_its_own_tables(stack: SqlStack) -> None:
    default_tables = [t["name"] for t in stack.api("default").get("/api/v1/sql/tables").json()["tables"]]
    other_tables = [t["name"] for t in stack.api("other").get("/api/v1/sql/tables").json()["tables"]]
    assert default_tables == ["adults", "people", "teams"]
    assert other_tables == ["orders"]
    assert query(stack.api("other"), "SELECT sum(amount) AS total FROM orders").json()["rows"] == [[7.5]]


@pytest.mark.parametrize(
    ("account", "table"),
    [("default", "orders"), ("other", "people"), ("other", "main.people"), ("default", "other.orders")],
)
def test_another_accounts_table_does_not_exist(stack: SqlStack, account: str, table: str) -> None:
    response = query(stack.api(account, "administrator"), f"SELECT * FROM {table}")
    assert response.status_code == 400
    assert "does not exist" in response.json()["detail"]


def test_the_warehouse_folder_holds_one_file_per_account(stack: SqlStack) -> None:
    query(stack.api("other"), "SELECT 1")
    names = {path.name for path in stack.folder.iterdir() if path.suffix == ".duckdb"}
    assert names == {"default.duckdb", "other.duckdb"}


# -- timeout and stop --------------------------------------------------------------------------------------------


def test_a_query_past_the_timeout_setting_is_stopped(stack: SqlStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.runtime, "settings", stack.settings.model_copy(update={"sql_timeout_seconds": 0.5}))
    started = time.monotonic()
    response = query(stack.api(), SLOW)
    elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert response.json() == {"detail": "the query ran longer than 0.5 s and was stopped"}
    assert 0.5 <= elapsed < STOPPED_WITHIN


def test_delete_stops_the_callers_running_query(stack: SqlStack) -> None:
    owner = stack.api("default", "operator")
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(query(owner, SLOW, query_id="stop-me")))
    thread.start()
    try:
        owner_id = stack.user_id("default", "operator")
        deadline = time.monotonic() + STOPPED_WITHIN
        while "stop-me" not in stack.explorer.registry.running(owner_id):
            assert thread.is_alive(), answers[0].text
            assert time.monotonic() < deadline, "the query was never registered"
            time.sleep(0.01)
        # Not yours: someone else of the account, an operator of another account.
        for account, role in (("default", "administrator"), ("other", "operator")):
            refused = stack.api(account, role).delete("/api/v1/sql/stop-me")
            assert refused.status_code == 404
            assert refused.json() == {"detail": "you have no query 'stop-me' running"}
        assert thread.is_alive()
        taken = query(owner, "SELECT 1", query_id="stop-me")  # the id is taken while it runs
        assert taken.status_code == 409
        started = time.monotonic()
        stopped = owner.delete("/api/v1/sql/stop-me")
        assert stopped.status_code == 204
        assert stopped.content == b""
    finally:
        thread.join(STOPPED_WITHIN + 5)
    assert time.monotonic() - started < STOPPED_WITHIN
    assert not thread.is_alive()
    assert answers[0].status_code == 400
    assert answers[0].json() == {"detail": "the query was stopped"}
    gone = owner.delete("/api/v1/sql/stop-me")
    assert gone.status_code == 404
    assert query(owner, "SELECT 1", query_id="stop-me").status_code == 200  # the id is free again


def test_deleting_an_unknown_query_is_a_404(stack: SqlStack) -> None:
    response = stack.api().delete("/api/v1/sql/never-started")
    assert response.status_code == 404
    assert "never-started" in response.json()["detail"]


# -- who ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/sql", {"sql": "SELECT 1"}),
        ("GET", "/api/v1/sql/tables", None),
        ("DELETE", "/api/v1/sql/q", None),
    ],
)
def test_viewers_are_refused_and_strangers_unauthenticated(
    stack: SqlStack, method: str, path: str, body: dict[str, Any] | None
) -> None:
    refused = stack.api("default", "viewer").request(method, path, json=body)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Your role (viewer) cannot do this: it needs operator or administrator"}
    stranger = httpx.request(method, f"{stack.base_url}{path}", json=body, timeout=HTTP_TIMEOUT)
    assert stranger.status_code == 401
    assert stranger.json() == MISSING
    assert stranger.headers["www-authenticate"] == "Bearer"


def test_operators_and_administrators_may_query(stack: SqlStack) -> None:
    for account in ("default", "other"):
        for role in ("operator", "administrator"):
            assert query(stack.api(account, role), "SELECT 42 AS answer").json()["rows"] == [[42]]


# -- bad requests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "sql: Field required"),
        ({"sql": ""}, "sql: String should have at least 1 character"),
        ({"sql": "SELECT 1" + " " * 100_000}, "sql: String should have at most 100000 characters"),
        ({"sql": 1}, "sql: Input should be a valid string"),
        ({"sql": "SELECT 1", "limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"sql": "SELECT 1", "limit": "many"}, "limit: Input should be a valid integer"),
        ({"sql": "SELECT 1", "limit": 1_000_001}, "limit: Input should be less than or equal to 1000000"),
        ({"sql": "SELECT 1", "limit": 10_001}, "limit: Input should be less than or equal to 10000"),
        ({"sql": "SELECT 1", "query_id": "has space"}, "query_id: String should match pattern"),
        ({"sql": "SELECT 1", "query_id": "x" * 65}, "query_id: String should match pattern"),
        ({"sql": "SELECT 1", "database": "other"}, "database: Extra inputs are not permitted"),
    ],
)
def test_bad_bodies_are_400(stack: SqlStack, body: dict[str, Any], detail: str) -> None:
    response = stack.api().post("/api/v1/sql", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(detail), response.json()


def test_a_body_that_is_not_json_is_400_and_a_bad_format_too(stack: SqlStack) -> None:
    client = stack.api()
    not_json = client.post("/api/v1/sql", content=b"SELECT 1", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400
    bad_format = client.post("/api/v1/sql", params={"format": "xml"}, json={"sql": "SELECT 1"})
    assert bad_format.status_code == 400
    bad_id = client.delete("/api/v1/sql/not.an.id")
    assert bad_id.status_code == 400


def test_a_process_without_a_warehouse_answers_503(stack: SqlStack) -> None:
    """An extra HTTP process (RUNYARD_HTTP_PROCESSES > 1) holds no warehouse: it says so."""
    bare = Runtime(stack.settings, stack.runtime.store)
    assert bare.warehouses is None
    with live_server.serving(create_app(bare), name="uvicorn-sql-bare") as url:
        headers = {"Authorization": f"Bearer {stack.token('default', 'operator')}"}
        with httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT) as client:
            for response in (
                client.post("/api/v1/sql", json={"sql": "SELECT 1"}),
                client.get("/api/v1/sql/tables"),
                client.delete("/api/v1/sql/q"),
            ):
                assert response.status_code == 503
                assert "holds no warehouse" in response.json()["detail"]


# -- the web UI without JavaScript ------------------------------------------------------------------------------


def test_the_page_lists_the_tables_and_a_form_post_renders_the_result(stack: SqlStack) -> None:
    ui = signed_in_as(stack.base_url, "default", "operator")
    try:
        page = ui.get("/sql")
        assert page.status_code == 200
        assert 'href="/sql" aria-current="page">SQL Explorer</a>' in page.text
        assert 'data-table="people"' in page.text
        assert 'data-table="adults"' in page.text
        assert 'data-table="orders"' not in page.text
        assert 'data-insert="name"' in page.text
        ran = ui.post_form("/sql", "/sql", {"sql": "SELECT id, name FROM people ORDER BY id", "limit": "2"})
        assert ran.status_code == 200
        assert "<strong>2 rows</strong> in " in ran.text
        assert 'id="sql-truncated"' in ran.text
        assert "<td>p1</td>" in ran.text
        assert "<td>p2</td>" not in ran.text
        assert ">SELECT id, name FROM people ORDER BY id</textarea>" in ran.text  # the editor keeps the query
        assert 'name="sql" value="SELECT id, name FROM people ORDER BY id"' in ran.text  # for Download CSV
        failed = ui.post_form("/sql", "/sql", {"sql": "SELECT nope FROM people"})
        assert failed.status_code == 400
        assert "Binder Error: Referenced column &#34;nope&#34; not found" in failed.text
        refused = ui.post_form("/sql", "/sql", {"sql": "DROP TABLE people"})
        assert refused.status_code == 400
        assert "this is a DROP statement" in refused.text
        assert stack.warehouse("default").count("people") == 25
    finally:
        ui.close()


def test_the_result_fragment_csv_and_stop_for_the_pages_script(stack: SqlStack) -> None:
    ui = signed_in_as(stack.base_url, "default", "administrator")
    try:
        fragment = ui.post_form(
            "/sql", "/sql", {"sql": "SELECT team FROM teams ORDER BY team"}, headers={"X-Runyard-Fragment": "result"}
        )
        assert fragment.status_code == 200
        assert fragment.headers["x-runyard-fragment"] == "result"
        assert "<html" not in fragment.text
        assert "<td>blue</td>" in fragment.text
        downloaded = ui.post_form("/sql", "/sql/csv", {"sql": "SELECT team, size FROM teams ORDER BY team"})
        assert downloaded.status_code == 200
        assert downloaded.headers["content-disposition"] == 'attachment; filename="query.csv"'
        assert downloaded.text == "team,size\r\nblue,4\r\nred,3\r\n"
        assert ui.post_form("/sql", "/sql/stop", {"query_id": "nothing-running"}).status_code == 404
        no_token = ui.http.post("/sql", data={"sql": "SELECT 1"})
        assert no_token.status_code == 403  # the CSRF check, as every form
    finally:
        ui.close()


def test_viewers_see_no_link_and_are_refused(stack: SqlStack) -> None:
    ui = signed_in_as(stack.base_url, "default", "viewer")
    try:
        assert 'href="/sql"' not in ui.get("/sources").text
        page = ui.get("/sql")
        assert page.status_code == 403
        assert "Your role (viewer) cannot run SQL queries" in page.text
        posted = ui.http.post("/sql", data={"csrf_token": csrf_of(ui.get("/sources").text), "sql": "SELECT 1"})
        assert posted.status_code == 303
        assert posted.headers["location"] == "/sources"
    finally:
        ui.close()


def test_signed_out_the_page_sends_to_the_login(stack: SqlStack) -> None:
    ui = UiClient(stack.base_url)
    try:
        response = ui.get("/sql")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/sql"
    finally:
        ui.close()


# -- the CLI -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(stack: SqlStack, tmp_path_factory: pytest.TempPathFactory) -> Runyard:
    """`runyard` in a home of its own, with RUNYARD_URL and an operator's token: it reaches the server only."""
    return Runyard(
        tmp_path_factory.mktemp("cli") / "home",
        extra_env={"RUNYARD_URL": stack.base_url, "RUNYARD_TOKEN": stack.token("default", "operator")},
    )


def test_cli_prints_the_rows_and_the_count(cli: Runyard) -> None:
    result = cli("sql", "SELECT id, name FROM people WHERE id < 3 ORDER BY id")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "name"]
    assert [line.split() for line in lines[1:4]] == [["0", "p0"], ["1", "p1"], ["2", "p2"]]
    assert lines[4].startswith("3 rows in ")
    assert lines[4].endswith(" ms")
    assert len(lines) == 5
    assert result.stderr == ""
    assert not (cli.home / "runyard.db").exists()  # it went through the server


def test_cli_limit_says_the_rows_were_truncated(cli: Runyard, tmp_path: Path) -> None:
    script = tmp_path / "q.sql"
    script.write_text("SELECT id\nFROM people\nORDER BY id\n")
    result = cli("sql", "--file", str(script), "--limit", "2")
    lines = result.stdout.splitlines()
    assert [line.strip() for line in lines[:3]] == ["id", "0", "1"]
    assert lines[3].startswith("2 rows in ")
    assert lines[4].startswith("truncated: the query has more rows than 2")


def test_cli_csv(cli: Runyard) -> None:
    result = cli("sql", "--csv", "SELECT team, size, NULL AS nothing FROM teams ORDER BY team")
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["team", "size", "nothing"],
        ["blue", "4", ""],
        ["red", "3", ""],
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("SELECT nope FROM people",), 'error: Binder Error: Referenced column "nope" not found in FROM clause!'),
        (("DROP TABLE people",), "error: only queries that read can run here (SELECT, WITH, EXPLAIN): this is a DROP"),
        (("SELECT * FROM orders",), "error: Catalog Error: Table with name orders does not exist!"),
        (("SELEC 1",), 'error: Parser Error: syntax error at or near "SELEC" LINE 1: SELEC 1 ^^^^^'),
        ((), "error: sql: give the query, or --file with a file that holds it (not both)"),
    ],
)
def test_cli_errors_are_one_line(cli: Runyard, stack: SqlStack, args: tuple[str, ...], message: str) -> None:
    line = cli.fails("sql", *args)
    assert line.startswith(message), line
    assert stack.warehouse("default").count("people") == 25


def test_cli_viewer_is_refused(stack: SqlStack, tmp_path: Path) -> None:
    viewer = Runyard(
        tmp_path / "home", extra_env={"RUNYARD_URL": stack.base_url, "RUNYARD_TOKEN": stack.token("default", "viewer")}
    )
    assert (
        viewer.fails("sql", "SELECT 1")
        == "error: Your role (viewer) cannot do this: it needs operator or administrator"
    )


def test_cli_needs_a_server(tmp_path: Path) -> None:
    line = Runyard(tmp_path / "home").fails("sql", "SELECT 1")
    assert line.startswith("error: not logged in: run `runyard login`")
