"""JSON keys that try to inject DDL (RELIABILITY.md S14): an api-to-table source whose records carry hostile keys.

A real loopback source answers records keyed `x"); DROP TABLE t; --`, `"`, a very long name, names differing
only by case, and so on. Each run either loads the keys as quoted columns, values intact, or fails with a clear
message; either way the warehouse's other tables are intact and no statement in a key ran.
"""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from runyard.domain.statuses import RunStatus
from tests.integration.api_harness import ApiHarness, api_harness
from tests.live_server import serving_handler

HOSTILE = [
    'x"); DROP TABLE victims; --',
    '"',
    "'",
    'a"b',
    "; DELETE FROM victims",
    "x` INT); DROP TABLE victims; --",
    "_runyard_loaded_at",  # runyard's own column
    "col\nwith newline",
    "ünï—cödé 🙂",
    "L" * 300,
]


@contextmanager
def json_source(records: list[dict[str, Any]]) -> Iterator[str]:
    """A loopback source answering `{"data": records}` to every GET."""
    body = json.dumps({"data": records}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving_handler(Handler) as url:
        yield url


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    with api_harness(tmp_path_factory.mktemp("ddl")) as running:
        running.query("CREATE TABLE victims AS SELECT range AS id FROM range(5)")
        running.query("CREATE TABLE t AS SELECT 1 AS one")
        yield running


def tables(harness: ApiHarness) -> dict[str, int]:
    query = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    names = [str(row[0]) for row in harness.query(query)]
    return {name: int(str(harness.query(f'SELECT count(*) FROM "{name}"')[0][0])) for name in names}


def load(harness: ApiHarness, name: str, records: list[dict[str, Any]]) -> tuple[RunStatus, str]:
    with json_source(records) as base_url:
        text = (
            f"configuration_type: api-to-table\nconfiguration_id: {name}\nenvironment: DEV\n"
            f'base_url: "{base_url}"\nendpoints:\n  - {{name: {name}, path: /items, records: data}}\n'
        )
        run = harness.wait(harness.launch(harness.deploy_text(text)).id)
    messages = "\n".join(
        f"{task.name}: {m.text}" for task in harness.tasks(run.id).values() for m in task.messages if m.level == "error"
    )
    return run.status, messages


@pytest.mark.parametrize("key", HOSTILE, ids=[f"key{i}" for i in range(len(HOSTILE))])
def test_a_hostile_key_is_a_quoted_column_or_a_clear_refusal(harness: ApiHarness, key: str) -> None:
    before = tables(harness)
    name = f"items_{HOSTILE.index(key)}"
    status, errors = load(harness, name, [{"id": 1, key: "v1"}, {"id": 2, key: "v2"}])
    after = tables(harness)
    assert after["victims"] == 5
    assert after["t"] == 1
    assert {k: v for k, v in after.items() if k != name} == before
    if status is RunStatus.COMPLETED:
        columns = [
            row[0]
            for row in harness.query(
                f"SELECT column_name FROM information_schema.columns "
                f"WHERE table_name = '{name}' ORDER BY ordinal_position"
            )
        ]
        assert key in columns or key == "_runyard_loaded_at", columns
        if key != "_runyard_loaded_at":
            assert harness.query(f'SELECT "{key.replace(chr(34), chr(34) * 2)}" FROM "{name}" ORDER BY id') == [
                ("v1",),
                ("v2",),
            ]
    else:
        assert status is RunStatus.FAILED
        assert errors.strip(), "a failed run names its problem"
        assert "Traceback" not in errors


def test_names_differing_only_by_case_are_kept_apart_or_refused(harness: ApiHarness) -> None:
    before = tables(harness)
    status, errors = load(harness, "cased", [{"id": 1, "Name": "upper", "name": "lower", "NAME": "shout"}])
    after = tables(harness)
    assert {k: v for k, v in after.items() if k != "cased"} == before
    if status is RunStatus.COMPLETED:
        # DuckDB's names are case-insensitive: the later ones get a suffix (Name, name_1, NAME_2), none is lost.
        (row,) = harness.query("SELECT * EXCLUDE (id, _runyard_loaded_at) FROM cased")
        assert sorted(map(str, row)) == ["lower", "shout", "upper"], row
    else:
        assert status is RunStatus.FAILED
        assert "name" in errors.lower(), errors
