"""SQL Explorer escapes beyond tests/integration/test_sql_explorer.py's (RELIABILITY.md S8), over real HTTP.

That file covers one statement of each kind (DDL, DML, COPY, EXPORT, ATTACH, INSTALL/LOAD, SET, PRAGMA, CALL),
read_csv/read_text/glob of /etc, two statements, query(), and DELETE/INSERT ... RETURNING in a CTE. Here: comment
and case tricks, more multi-statement forms, COPY FROM, other file readers, http(s) URLs, another account's
database file by path, UPDATE in a CTE, EXPLAIN ANALYZE of a write, USE/RESET/secrets/macros. Each is refused with
a 400 and changes nothing: the same module stack and snapshot (tables, rows, warehouse files) as that file's.
"""

from __future__ import annotations

import pytest

from tests.integration.test_sql_explorer import SqlStack, query, signed_in_as, snapshot
from tests.integration.test_sql_explorer import stack as stack  # that file's module-scoped stack fixture

ESCAPES = [
    # comments, case and whitespace around a write
    "/* just a select */ DROP TABLE people",
    "-- SELECT\nDROP TABLE people",
    "  \n\t dRoP TaBlE people",
    "SELECT 1 -- ;\n; DELETE FROM people",
    "SELECT 1;;DELETE FROM people",
    "SELECT 1; -- and\nUPDATE people SET name = 'x'",
    "SELECT 1 /* ; */ ; INSERT INTO teams VALUES ('x', 1, now())",
    "SELECT 1;\r\nDROP TABLE teams",
    "(SELECT 1); DROP TABLE teams",
    # files of the machine
    "COPY people FROM '/etc/passwd'",
    "COPY (SELECT * FROM people) TO '{tmp}/x.csv' (FORMAT csv)",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM read_csv(['/etc/passwd', '/etc/hosts'])",
    "SELECT * FROM read_csv('file:///etc/passwd')",
    "SELECT * FROM glob('{tmp}/**')",
    "SELECT * FROM '/etc/passwd'",
    # other accounts' database files, by path
    "ATTACH '{folder}/other.duckdb' AS theirs",
    "ATTACH '{folder}/other.duckdb' AS theirs (READ_ONLY)",
    "SELECT * FROM '{folder}/other.duckdb'",
    "SELECT * FROM read_blob('{folder}/other.duckdb')",
    "SELECT * FROM parquet_metadata('{folder}/other.duckdb')",
    "ATTACH ':memory:' AS scratch",
    "USE other",
    # the network
    "SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')",
    "SELECT * FROM 'https://example.com/x.parquet'",
    "SELECT * FROM read_json('http://169.254.169.254/latest/meta-data/')",
    "INSTALL httpfs FROM 'http://127.0.0.1:1'",
    "FORCE INSTALL httpfs",
    "LOAD '{tmp}/evil.duckdb_extension'",
    # writes inside a SELECT
    "WITH changed AS (UPDATE people SET name = 'x' RETURNING *) SELECT * FROM changed",
    "SELECT * FROM (WITH gone AS (DELETE FROM teams RETURNING *) SELECT * FROM gone)",
    "EXPLAIN ANALYZE DELETE FROM people",
    "EXPLAIN ANALYZE CREATE TABLE z AS SELECT 1",
    # settings, secrets, macros, maintenance
    "RESET enable_external_access",
    "SET GLOBAL enable_external_access = true",
    "PRAGMA enable_external_access",
    "SELECT * FROM duckdb_settings() WHERE (SELECT set_config('x', 'y'))",
    "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "CREATE MACRO leak() AS 1",
    "CREATE TEMP TABLE t AS SELECT 1",
    "VACUUM",
    "ANALYZE people",
    "IMPORT DATABASE '{tmp}'",
    "DETACH default",
]


@pytest.mark.parametrize("sql", ESCAPES, ids=[sql[:40] for sql in ESCAPES])
def test_an_escape_is_refused_and_changes_nothing(stack: SqlStack, sql: str) -> None:
    client = stack.api("default", "administrator")
    query(client, "SELECT 1")  # the account's warehouse is open before the snapshot
    before = snapshot(stack)
    response = query(client, sql.format(tmp=stack.tmp, folder=stack.folder))
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert snapshot(stack) == before
    assert not (stack.tmp / "x.csv").exists()
    settings = query(client, "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')")
    assert settings.json()["rows"] == [[False, True]]


def test_another_accounts_file_cannot_be_reached_from_the_ui_either(stack: SqlStack) -> None:
    before = snapshot(stack)
    ui = signed_in_as(stack.base_url, "default", "operator")
    try:
        refused = ui.post_form("/sql", "/sql", {"sql": f"ATTACH '{stack.folder}/other.duckdb' AS theirs"})
        assert refused.status_code == 400
    finally:
        ui.close()
    assert snapshot(stack) == before
