"""What only the PostgreSQL warehouse has: the reader role and its limits, the statement timeout, a whole
table-to-table run (after an api-to-table run loaded its inputs) on PostgreSQL, `runyard db upgrade` preparing the
warehouse, and COPY of every Arrow type. The behaviour both backends share is tests/contract/."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from psycopg import sql

from runyard.demo import demo_specs
from runyard.domain.statuses import RunStatus, TaskStatus
from runyard.errors import TransientError
from runyard.services.operations import deploy
from runyard.warehouse.base import LOADED_AT_COLUMN, LoadRequest, QueryFailed, TableLoad, WarehouseUnavailable
from runyard.warehouse.postgres import PostgresWarehouse, PostgresWarehouses, account_schema
from runyard.warehouse.provider import open_warehouses
from tests.conftest import postgres_admin_url
from tests.integration.api_harness import api_harness, wait_for
from tests.integration.cli_helpers import Runyard

pytestmark = pytest.mark.postgres


def _admin_dsn() -> str:
    return sa.make_url(postgres_admin_url()).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def provider(pg_warehouse_url: str) -> Iterator[PostgresWarehouses]:
    warehouses = open_warehouses(pg_warehouse_url)
    assert isinstance(warehouses, PostgresWarehouses)
    yield warehouses
    warehouses.close_all()


def load(wh: PostgresWarehouse, run_key: str, table: str, columns: dict[str, object], mode: str = "replace") -> None:
    wh.stage(run_key, table, pa.table(columns).to_reader())
    wh.load(LoadRequest(run_key, 1, (TableLoad(name=table, mode=mode),)))  # type: ignore[arg-type]
    wh.drop_staging(run_key)


# -- the reader role ------------------------------------------------------------------------------------------------


def test_the_reader_role_reads_its_account_only_and_cannot_write(provider: PostgresWarehouses) -> None:
    acme, globex = provider.for_account("acme"), provider.for_account("globex")
    load(acme, "r1", "people", {"id": [1, 2], "name": ["a", "b"]})
    load(globex, "r1", "secrets", {"id": [1], "secret": ["s"]})

    assert acme.read("SELECT id, name FROM people ORDER BY id", limit=10, timeout_seconds=10).rows == [
        (1, "a"),
        (2, "b"),
    ]
    for other in (f"{account_schema('globex')}.secrets", "_runyard.loads", "_runyard.state"):
        with pytest.raises(QueryFailed, match="permission denied"):
            acme.read(f"SELECT * FROM {other}", limit=10, timeout_seconds=10)
    with pytest.raises(QueryFailed, match="read-only"):
        acme.read("WITH gone AS (DELETE FROM people RETURNING *) SELECT * FROM gone", limit=10, timeout_seconds=10)
    with pytest.raises(QueryFailed, match="one query at a time"):
        acme.read("SELECT 1; COMMIT; RESET ROLE; DROP TABLE people", limit=10, timeout_seconds=10)
    # Outside any read-only transaction, the role itself can neither write nor create.
    with psycopg.connect(_admin_dsn().rsplit("/", 1)[0] + "/" + provider.target.database, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(acme.role)))
        for statement in (
            f"INSERT INTO {acme.schema}.people VALUES (3, 'c')",
            f"CREATE TABLE {acme.schema}.mine (id int)",
            f"SELECT * FROM {globex.schema}.secrets",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
    assert acme.role != globex.role
    assert acme.count("people") == 2
    # A table created later (default privileges) and one moved in by a load are both readable.
    acme.query("CREATE TABLE later AS SELECT 1 AS x")
    assert acme.read("SELECT x FROM later", limit=10, timeout_seconds=10).rows == [(1,)]


# -- timeouts and stops ---------------------------------------------------------------------------------------------


def test_the_statement_timeout_interrupts_a_query(provider: PostgresWarehouses) -> None:
    wh = provider.for_account("acme")
    started = time.monotonic()

    with pytest.raises(QueryFailed, match=r"longer than 0\.5 s") as failed:
        wh.read("SELECT pg_sleep(20)", limit=10, timeout_seconds=0.5)

    assert failed.value.interrupted
    assert time.monotonic() - started < 10
    assert wh.read("SELECT 1", limit=10, timeout_seconds=10).rows == [(1,)]


def test_a_stop_from_another_thread_cancels_the_query(provider: PostgresWarehouses) -> None:
    wh = provider.for_account("acme")
    stops: list[Callable[[], None]] = []
    timer = threading.Timer(0.5, lambda: stops[0]())
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(QueryFailed, match="stopped") as failed:
            wh.read("SELECT pg_sleep(20)", limit=10, timeout_seconds=60, on_start=stops.append)
    finally:
        timer.cancel()

    assert failed.value.interrupted
    assert time.monotonic() - started < 10
    assert wh.read("SELECT 2", limit=10, timeout_seconds=10).rows == [(2,)]


# -- errors name no password ------------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_transient_error_without_the_password() -> None:
    warehouses = open_warehouses("postgresql://runyard:s3cret-pw@127.0.0.1:1/nowhere")

    with pytest.raises(WarehouseUnavailable) as failed:
        warehouses.for_account("acme")

    assert isinstance(failed.value, TransientError)
    assert "s3cret-pw" not in str(failed.value)
    assert "127.0.0.1:1/nowhere" in str(failed.value)


# -- runyard db upgrade -----------------------------------------------------------------------------------------------


def test_db_upgrade_prepares_the_postgres_warehouse(pg_warehouse_url: str, tmp_path: Path) -> None:
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_WAREHOUSE_URL": pg_warehouse_url})

    result = cli("db", "upgrade")

    database = sa.make_url(pg_warehouse_url).database
    assert f"PostgreSQL warehouse at 127.0.0.1:54329/{database} ready" in result.stdout
    with psycopg.connect(_admin_dsn().rsplit("/", 1)[0] + f"/{database}") as conn:
        found = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '_runyard' ORDER BY 1"
        ).fetchall()
    assert found == [("loads",), ("state",)]
    assert "ready" in cli("db", "upgrade").stdout  # again: nothing to do, no error


# -- COPY: every type, 200k rows ------------------------------------------------------------------------------------

ROWS = 200_000


def every_type(rows: int) -> pa.Table:
    ids = list(range(rows))
    moment = datetime(2024, 1, 1)
    texts = ["plain", "", 'quote " and, comma', "line\nbreak", "ünïcödé ✓", "back\\slash", "percent %s ?"]
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "small": pa.array([i % 100 for i in ids], pa.int16()),
            "int": pa.array(ids, pa.int32()),
            "real": pa.array([i / 4 for i in ids], pa.float32()),
            "double": pa.array([None if i % 11 == 0 else i / 3 for i in ids], pa.float64()),
            "flag": pa.array([None if i % 7 == 0 else i % 2 == 0 for i in ids], pa.bool_()),
            "text": pa.array([None if i % 13 == 0 else texts[i % len(texts)] for i in ids], pa.string()),
            "large": pa.array([f"row {i}" for i in ids], pa.large_string()),
            "blob": pa.array([bytes([i % 256, 0, 255]) for i in ids], pa.binary()),
            "day": pa.array([date(2024, 1, 1) + timedelta(days=i % 400) for i in ids], pa.date32()),
            "naive": pa.array([moment + timedelta(seconds=i) for i in ids], pa.timestamp("us")),
            "aware": pa.array(
                [moment.replace(tzinfo=UTC) + timedelta(seconds=i) for i in ids], pa.timestamp("us", "UTC")
            ),
            "clock": pa.array([(i % 86_400) * 1_000_000 for i in ids], pa.time64("us")),
            "amount": pa.array([Decimal(i) / 1000 for i in ids], pa.decimal128(12, 3)),
            "tags": pa.array([[i, i + 1] if i % 5 else None for i in ids], pa.list_(pa.int64())),
            "point": pa.array(
                [{"x": i, "label": f"p{i}"} for i in ids], pa.struct([("x", pa.int64()), ("label", pa.string())])
            ),
            "kind": pa.array([("a", "b", "c")[i % 3] for i in ids]).dictionary_encode(),
            "wait": pa.array([timedelta(seconds=i) for i in ids], pa.duration("us")),
        }
    )


EXPECTED_TYPES = {
    "id": "bigint",
    "small": "smallint",
    "int": "integer",
    "real": "real",
    "double": "double precision",
    "flag": "boolean",
    "text": "text",
    "large": "text",
    "blob": "bytea",
    "day": "date",
    "naive": "timestamp without time zone",
    "aware": "timestamp with time zone",
    "clock": "time without time zone",
    "amount": "numeric(12,3)",
    "tags": "jsonb",
    "point": "jsonb",
    "kind": "text",
    "wait": "interval",
    LOADED_AT_COLUMN: "timestamp without time zone",
}


def test_copy_round_trips_every_type(provider: PostgresWarehouses) -> None:
    wh = provider.for_account("acme")
    source = every_type(ROWS)

    started = time.monotonic()
    staged = wh.stage("r1", "everything", source.to_reader(max_chunksize=50_000))
    staging_seconds = time.monotonic() - started
    result = wh.load(
        LoadRequest(
            "r1",
            1,
            (TableLoad(name="everything", mode="merge", primary_key=("id",), loaded_at_column=LOADED_AT_COLUMN),),
        )
    )

    assert staged == ROWS
    assert staging_seconds < 60, f"staging {ROWS} rows took {staging_seconds:.1f} s"
    assert result.tables[0].rows == ROWS
    assert wh.columns("everything") == EXPECTED_TYPES
    names = list(source.column_names)
    back = wh.query(f"SELECT {', '.join(quote_all(names))} FROM everything ORDER BY id")
    expected = source.to_pylist()
    assert len(back) == ROWS
    for row, want in zip(back, expected, strict=True):
        assert dict(zip(names, row, strict=True)) == want, want["id"]


def quote_all(names: list[str]) -> list[str]:
    return ['"' + name.replace('"', '""') + '"' for name in names]


# -- a table-to-table run, end to end -------------------------------------------------------------------------------


def t2t(name: str, steps: str, parameters: str = "") -> str:
    return (
        f"configuration_type: table-to-table\nconfiguration_id: {name}\nenvironment: DEV\n"
        f"{parameters}steps:\n{textwrap.indent(textwrap.dedent(steps), '  ')}"
    )


def test_a_table_to_table_run_on_postgres(pg_warehouse_url: str, tmp_path: Path) -> None:
    with api_harness(tmp_path, warehouse_url=pg_warehouse_url) as hr:
        assert hr.runtime.resources is not None
        wh = hr.runtime.resources.warehouses.for_account("default")
        assert isinstance(wh, PostgresWarehouse)
        loaded = hr.run(hr.deploy_demo())  # api-to-table: extract, stage through COPY, merge
        assert loaded.status is RunStatus.COMPLETED, hr.describe(loaded.id)
        employees = wh.count("employees")
        assert employees > 0
        wh.query("CREATE TABLE headcount AS SELECT 'stale' AS department, 0::bigint AS headcount")

        run = hr.run(
            hr.deploy_text(
                t2t(
                    "summaries",
                    """\
                    - target: headcount
                      sql: |
                        SELECT e.department__name AS department, count(*) AS headcount
                        FROM employees AS e
                        GROUP BY e.department__name
                    - target: summary
                      sql: |
                        SELECT department, headcount, {{ execution_date }} AS as_of, '100%' AS share
                        FROM headcount
                        WHERE headcount > {{ at_least }}
                    """,
                    parameters="parameters:\n  at_least: 0\n",
                )
            )
        )

        assert run.status is RunStatus.COMPLETED, hr.describe(run.id)
        assert wh.query("SELECT sum(headcount) FROM summary") == [(employees,)]
        assert wh.query("SELECT count(*) FROM headcount WHERE department = 'stale'") == [(0,)]
        assert wh.query("SELECT DISTINCT share FROM summary") == [("100%",)]
        assert {info.name for info in wh.tables()} >= {"employees", "headcount", "summary"}
        assert LOADED_AT_COLUMN in (wh.columns("summary") or {})
        assert wh.has_load(run.run_key)
        assert len(hr.data_loads(run.id)) == 1
        assert run.run_key not in wh.staged_runs()
        assert wh.read("SELECT count(*) FROM summary", limit=1, timeout_seconds=10).rows[0][0] > 0

        # The demo's own table-to-table operation: its SQL is written for both warehouses.
        (demo,) = [s for s in demo_specs(hr.source.base_url) if s.configuration_type == "table-to-table"]
        (deployed,) = deploy(hr.runtime.store, [demo], hr.runtime.registry)
        summaries = hr.run(deployed.operation_id)
        assert summaries.status is RunStatus.COMPLETED, hr.describe(summaries.id)
        assert wh.query("SELECT sum(headcount) FROM department_summary") == [(employees,)]
        (per_head,) = wh.query(
            "SELECT count(*) FROM department_summary "
            "WHERE days_off_per_head <> round(CAST(days_off AS numeric) / headcount, 2)"
        )
        assert per_head == (0,)  # days off per head to the hundredth, not a whole-number division

        failed = hr.run(
            hr.deploy_text(
                t2t(
                    "broken",
                    """\
                    - target: chain_a
                      sql: SELECT 'after' AS state FROM employees
                    - target: chain_b
                      sql: |
                        SELECT state
                        FROM chain_a
                        WHERE no_such_column > 0
                    """,
                )
            )
        )

        assert failed.status is RunStatus.FAILED
        tasks = hr.tasks(failed.id)
        assert tasks["chain_a"].status is TaskStatus.COMPLETED
        (message,) = [m.text for m in tasks["chain_b"].messages if m.level == "error"]
        assert "line 3 of its SQL: WHERE no_such_column > 0" in message, message
        assert 'column "no_such_column" does not exist' in message
        assert wh.columns("chain_a") is None
        wait_for(lambda: failed.run_key not in wh.staged_runs() or None, timeout=30, what="the run's staging to go")
