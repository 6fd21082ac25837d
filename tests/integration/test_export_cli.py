"""`runyard export` against a live server: one CSV file from every page, in order, through the continuation token."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_helpers import Runyard
from tests.integration.rest_harness import RestStack, rest_stack

ROWS = 1_234


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    directory = tmp_path_factory.mktemp("export-cli")
    with rest_stack(directory / "home", f"sqlite:///{directory / 'runyard.db'}") as running:
        warehouses = running.runtime.warehouses
        assert warehouses is not None
        warehouses.for_account("default").query(
            f"CREATE TABLE events AS SELECT range AS id, 'line ' || range || E'\\nwith, \"quotes\"' AS note, "
            f"TIMESTAMP '2024-01-01' + to_seconds(range) AS _runyard_loaded_at FROM range({ROWS}) ORDER BY random()"
        )
        yield running


@pytest.fixture(scope="module")
def cli(stack: RestStack, tmp_path_factory: pytest.TempPathFactory) -> Runyard:
    return Runyard(
        tmp_path_factory.mktemp("cli") / "home",
        extra_env={"RUNYARD_URL": stack.base_url, "RUNYARD_TOKEN": stack.token_of("default", "operator")},
    )


def test_export_writes_every_row_once_in_time_order_with_one_header(cli: Runyard, tmp_path: Path) -> None:
    target = tmp_path / "events.csv"

    result = cli("export", "events", "--output", str(target), "--page-size", "100")

    assert result.stdout.strip() == f"{ROWS:,} rows in 13 pages written to {target}"
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [int(row["id"]) for row in rows] == list(range(ROWS))
    assert rows[7]["note"] == 'line 7\nwith, "quotes"'
    assert not target.with_name("events.csv.partial").exists()


def test_export_of_a_window_to_standard_output(cli: Runyard) -> None:
    result = cli("export", "events", "--from", "2024-01-01T00:10:00", "--to", "2024-01-01T00:10:05")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(row["id"]) for row in rows] == [600, 601, 602, 603, 604]


def test_an_unknown_view_is_one_line_and_leaves_no_file(cli: Runyard, tmp_path: Path) -> None:
    target = tmp_path / "nothing.csv"

    line = cli.fails("export", "nowhere", "--output", str(target))

    assert line == "error: there is no view or table of that name in your account"
    assert list(tmp_path.iterdir()) == []


def test_a_bad_window_is_one_line(cli: Runyard) -> None:
    line = cli.fails("export", "events", "--from", "yesterday")
    assert line.startswith("error: fromDate must be written yyyy-MM-ddTHH:mm:ss")
