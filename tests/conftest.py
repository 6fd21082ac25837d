"""Shared fixtures: a migrated store on SQLite and on PostgreSQL.

PostgreSQL comes from `make test` (scripts/test-postgres.sh), which exports
RUNYARD_TEST_POSTGRES_URL. Without it, tests that need PostgreSQL fail under CI=true
and are skipped with a reason elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from runyard.store import migrate
from runyard.store.database import Store

PG_ENV = "RUNYARD_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def postgres_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        message = f"PostgreSQL is not available: {PG_ENV} is not set (run `make test` or `make pg`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def _psycopg_dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(sql: str) -> None:
    with psycopg.connect(_psycopg_dsn(postgres_admin_url()), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once; each test copies it (CREATE DATABASE ... TEMPLATE is fast)."""
    name = f"ry_template_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}"')
    _admin(f'CREATE DATABASE "{name}"')
    store = Store(sa.make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False))
    migrate.upgrade(store)
    store.dispose()
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_postgres_url(template: str) -> str:
    name = f"ry_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return sa.make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty runs database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'runyard.db'}"
        store = Store(url)
        migrate.upgrade(store)
        store.dispose()
        yield url
        return
    url = new_postgres_url(request.getfixturevalue("pg_template"))
    yield url
    drop_postgres(url)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A migrated, empty database on the PostgreSQL test server alone, for what only PostgreSQL has (NOTIFY, one
    clock for every host); fails under CI=true without the server."""
    url = new_postgres_url(pg_template)
    yield url
    drop_postgres(url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    yield store
    store.dispose()


# -- PostgreSQL warehouses: a database of their own, and the reader roles runyard makes per account ------------------

WAREHOUSE_ACCOUNTS = ("default", "acme", "globex")  # the accounts the tests' warehouses have


def new_postgres_warehouse_url() -> str:
    """A new, empty database on the test server (no store template: a warehouse starts from nothing)."""
    name = f"ry_wh_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    return sa.make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)


def drop_postgres_warehouse(url: str) -> None:
    """Drop the database, then the reader roles runyard made for its accounts (roles belong to the whole server)."""
    from runyard.warehouse.postgres import reader_role  # the PostgreSQL backend's naming, for the cleanup alone

    drop_postgres(url)
    database = str(sa.make_url(url).database)
    for account in WAREHOUSE_ACCOUNTS:
        _admin(f'DROP ROLE IF EXISTS "{reader_role(database, account)}"')


@pytest.fixture
def pg_warehouse_url() -> Iterator[str]:
    """An empty database for a PostgreSQL warehouse, dropped afterwards with its reader roles."""
    url = new_postgres_warehouse_url()
    try:
        yield url
    finally:
        drop_postgres_warehouse(url)
