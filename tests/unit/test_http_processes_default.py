"""RUNYARD_HTTP_PROCESSES's default: the CPUs `runyard serve` may use, one more with a PostgreSQL store; a value
that is set always wins."""

from __future__ import annotations

import os

import pytest

from runyard.settings import MAX_HTTP_PROCESSES, Settings, usable_cpus

PG = "postgresql+psycopg://runyard@db.example/runyard"


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNYARD_HTTP_PROCESSES", raising=False)
    monkeypatch.delenv("RUNYARD_DATABASE_URL", raising=False)


def test_the_default_is_the_cpus_this_process_may_use_on_sqlite() -> None:
    assert Settings().http_processes == usable_cpus() == min(len(os.sched_getaffinity(0)), MAX_HTTP_PROCESSES)


def test_a_postgresql_store_gets_one_process_more() -> None:
    assert Settings(database_url=PG).http_processes == min(usable_cpus() + 1, MAX_HTTP_PROCESSES)


@pytest.mark.parametrize("database_url", [None, PG])
def test_a_value_that_is_set_wins(monkeypatch: pytest.MonkeyPatch, database_url: str | None) -> None:
    monkeypatch.setenv("RUNYARD_HTTP_PROCESSES", "1")
    assert Settings(database_url=database_url).http_processes == 1
    assert Settings(database_url=database_url, http_processes=5).http_processes == 5
