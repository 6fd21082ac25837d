"""`runyard deploy --env/--dry-run` and `runyard operations` as a person uses them: the real command in subprocesses,
on its local store (direct mode) and through a real `runyard serve` (RUNYARD_URL with RUNYARD_TOKEN)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import (
    Background,
    Runyard,
    answers_health,
    dump,
    free_port,
    query,
    run_ids,
    wait_until,
)

PASSWORD = "correct-horse-battery-staple"
OPERATOR = ("opal", "operator-password-1")
STARTUP_SECONDS = 20.0

QUICK = """\
configuration_type: tasks
configuration_id: quick
environment: PROD
description: two short tasks
tasks:
  - {name: "Process [employees]", executor: sleep, params: {seconds: 0.1}}
  - {name: "Data Load", executor: noop, depends_on: ["Process [employees]"]}
"""
NIGHTLY_JSON = (
    '{"configuration_type": "tasks", "configuration_id": "nightly",\n'
    ' "tasks": [{"name": "check", "executor": "noop"}]}\n'
)
HR = """\
configuration_type: api-to-table
configuration_id: hr
base_url: https://api.example.com/v1
endpoints:
  - {name: employees, path: /a, records: data, pagination: {style: none}}
"""
TYPO = "configuration_type: tasks\nconfiguration_id: typo\nretries: 3\ntasks:\n  - {name: a, executor: noop}\n"


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def cli(tmp_path: Path) -> Runyard:
    runyard = Runyard(tmp_path / "home")
    runyard("db", "upgrade")
    return runyard


# --- deploy ---------------------------------------------------------------------------------------------------------


def test_deploy_a_folder_of_yaml_and_json_to_one_environment_then_see_and_apply_what_changed(
    cli: Runyard, tmp_path: Path
) -> None:
    specs = write(tmp_path / "specs", {"a.yaml": QUICK, "b.json": NIGHTLY_JSON, "c.yml": HR})

    created = cli("deploy", str(specs), "--env", "DEV")

    assert created.stdout.splitlines() == [
        "created operation 1 (quick)",
        "created operation 2 (nightly)",
        "created operation 3 (hr)",
    ]
    assert query(cli.db, "SELECT DISTINCT environment FROM operations") == [("DEV",)]
    launched = cli("run", "quick")  # no worker: it stays waiting, and must survive the redeploy
    assert launched.stdout.startswith("run 1 of quick launched")

    write(specs, {"a.yaml": QUICK + 'schedule: "0 6 * * *"\n', "c.yml": HR.replace("path: /a", "path: /b")})
    before = dump(cli.db)
    preview = cli("deploy", str(specs), "--env", "DEV", "--dry-run")

    assert preview.stdout.splitlines() == [
        "would update operation 1 (quick)",
        "  schedule: None -> '0 6 * * *'",
        "unchanged operation 2 (nightly)",
        "would update operation 3 (hr)",
        "  endpoints.0.path: /a -> /b",
        "dry run: nothing was deployed (0 to create, 2 to update, 1 unchanged)",
    ]
    assert dump(cli.db) == before

    applied = cli("deploy", str(specs), "--env", "DEV")
    again = cli("deploy", str(specs), "--env", "DEV")

    assert applied.stdout.splitlines() == [
        "updated operation 1 (quick)",
        "  schedule: None -> '0 6 * * *'",
        "unchanged operation 2 (nightly)",
        "updated operation 3 (hr)",
        "  endpoints.0.path: /a -> /b",
    ]
    assert again.stdout.splitlines() == [
        "unchanged operation 1 (quick)",
        "unchanged operation 2 (nightly)",
        "unchanged operation 3 (hr)",
    ]
    assert query(cli.db, "SELECT id, schedule FROM operations WHERE configuration_id = 'quick'") == [(1, "0 6 * * *")]
    assert run_ids(cli.db, "quick") == [1]  # the run is kept, on the same operation


def test_deploy_to_another_environment_makes_other_operations(cli: Runyard, tmp_path: Path) -> None:
    specs = write(tmp_path / "specs", {"a.yaml": QUICK})

    cli("deploy", str(specs))  # the file's own environment
    second = cli("deploy", str(specs), "--environment", "QA")

    assert second.stdout.splitlines() == ["created operation 2 (quick)"]
    assert query(cli.db, "SELECT id, environment FROM operations ORDER BY id") == [(1, "PROD"), (2, "QA")]


def test_a_wrong_file_or_environment_deploys_nothing_and_says_where_in_one_line(cli: Runyard, tmp_path: Path) -> None:
    mixed = write(tmp_path / "mixed", {"a.yaml": QUICK, "b.yaml": TYPO})
    flags = write(tmp_path / "flags", {"a.yaml": QUICK + "activated: true\narchived: true\n"})
    before = dump(cli.db)

    wrong_file = cli.fails("deploy", str(mixed), "--env", "DEV")
    wrong_env = cli.fails("deploy", str(mixed), "--env", "dev")
    wrong_flags = cli.fails("deploy", str(flags), "--dry-run")

    where = f"{mixed / 'b.yaml'}, line 3: field 'retries'"
    assert wrong_file == f"error: {where}: is not a known field (check its spelling)"
    assert "'dev' is not an environment name" in wrong_env
    assert f"{flags / 'a.yaml'}: field 'activated': an archived operation is always deactivated" in wrong_flags
    assert dump(cli.db) == before


# --- operations, direct mode ----------------------------------------------------------------------------------------


ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(Active|Inactive|Archived)\b", re.M)


def listed(cli: Runyard, *args: str) -> list[tuple[str, ...]]:
    """(id, operation, type, environment, state) of each row `runyard operations ARGS` prints."""
    output = cli("operations", *args).stdout
    return [tuple(row) for row in ROW.findall(output)]


def test_operations_list_deactivate_archive_and_activate_on_the_local_store(cli: Runyard, tmp_path: Path) -> None:
    specs = write(tmp_path / "specs", {"a.yaml": QUICK, "b.json": NIGHTLY_JSON, "c.yml": HR})
    cli("deploy", str(specs), "--env", "DEV")
    cli("deploy", str(write(tmp_path / "prod", {"a.yaml": QUICK})))  # quick in PROD too: id 4
    cli("run", "quick", "--env", "DEV")

    ambiguous = cli.fails("operations", "deactivate", "quick")
    deactivated = cli("operations", "deactivate", "quick", "--env", "DEV")
    refused = cli.fails("run", "quick", "--env", "DEV")

    assert ambiguous == (
        "error: operation: 'quick' names several operations; name its environment or use an id: "
        "1 (default/DEV/tasks), 4 (default/PROD/tasks)"
    )
    assert deactivated.stdout.strip() == "operation 1 (quick, DEV) is now Inactive (was Active)"
    assert refused == "error: operation quick is deactivated; activate it to launch it"
    assert cli("operations", "deactivate", "1").stdout.strip() == "operation 1 (quick, DEV) was already Inactive"

    archived = cli("operations", "archive", "1")

    assert archived.stdout.strip() == "operation 1 (quick, DEV) is now Archived (was Inactive)"
    assert listed(cli) == [
        ("2", "nightly", "tasks", "DEV", "Active"),
        ("3", "hr", "api-to-table", "DEV", "Active"),
        ("4", "quick", "tasks", "PROD", "Active"),
    ]
    assert [row[0] for row in listed(cli, "--archived")] == ["1", "2", "3", "4"]
    assert listed(cli, "list", "--state", "archived") == [("1", "quick", "tasks", "DEV", "Archived")]
    assert [row[0] for row in listed(cli, "--type", "tasks", "--env", "DEV")] == ["2"]
    assert "3 operations" in cli("operations").stdout
    runs = cli("runs", "--operation", "1").stdout  # its runs stay readable
    assert re.search(r"^\s*1\s+quick\s+incremental\s+Waiting to Start", runs, re.M), runs
    assert re.search(r"^run 1\s+quick\s+incremental\s+Waiting to Start$", cli("runs", "show", "1").stdout, re.M)
    assert cli.fails("run", "1") == "error: operation quick is archived; it cannot be launched"

    activated = cli("operations", "activate", "quick", "--env", "DEV")

    assert activated.stdout.strip() == "operation 1 (quick, DEV) is now Active (was Archived)"
    assert query(cli.db, "SELECT activated, archived FROM operations WHERE id = 1") == [(1, 0)]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("operations", "archive", "nope"), "error: operation nope not found"),
        (("operations", "archive", "99"), "error: operation 99 not found"),
        (("operations", "activate", "1", "--env", "QA"), "error: operation 1 in environment QA not found"),
        (("operations", "--state", "sleeping"), "error: --state: 'sleeping' is not a state; use one of: active,"),
        (("operations", "list", "--type", "nope"), "error: type: 'nope' is not a configuration type; allowed: "),
        (("operations", "--env", "dev"), "'dev' is not an environment name"),
    ],
)
def test_operations_bad_input_is_one_error_line(
    cli: Runyard, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    cli("deploy", str(write(tmp_path / "specs", {"a.yaml": QUICK})))
    before = dump(cli.db)

    assert words in cli.fails(*args)
    assert dump(cli.db) == before


# --- operations, through a server ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: Background

    def token(self, login: str, password: str) -> str:
        response = httpx.post(f"{self.url}/api/v1/auth/token", json={"login": login, "password": password}, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    cli = Runyard(root / "home", extra_env={"RUNYARD_ADMIN_PASSWORD": PASSWORD})
    cli("db", "upgrade")
    login, password = OPERATOR
    cli("users", "create", "--account", "default", "--login", login, "--password", password, "--role", "operator")
    cli("deploy", str(write(root / "specs", {"a.yaml": QUICK, "b.json": NIGHTLY_JSON})), "--env", "DEV")
    port = free_port()
    running = Server(f"http://127.0.0.1:{port}", cli.spawn("serve", "--port", str(port), log=root / "serve"))
    try:
        wait_until(
            lambda: answers_health(running.url, running.process),
            timeout=STARTUP_SECONDS,
            what="runyard serve to answer",
        )
        yield running
    finally:
        running.process.stop(signal.SIGKILL)


def through(server: Server, home: Path, login: str, password: str) -> Runyard:
    return Runyard(home, extra_env={"RUNYARD_URL": server.url, "RUNYARD_TOKEN": server.token(login, password)})


def test_operations_through_a_server_as_an_administrator(server: Server, tmp_path: Path) -> None:
    cli = through(server, tmp_path / "home", "admin", PASSWORD)

    archived = cli("operations", "archive", "quick")
    hidden = listed(cli)
    shown = listed(cli, "--state", "archived")
    refused = cli.fails("run", "quick")
    its_runs = cli("runs", "--operation", "quick").stdout  # an archived operation can still be named
    activated = cli("operations", "activate", "quick", "--env", "DEV")

    assert archived.stdout.strip() == "operation 1 (quick, DEV) is now Archived (was Active)"
    assert hidden == [("2", "nightly", "tasks", "DEV", "Active")]
    assert shown == [("1", "quick", "tasks", "DEV", "Archived")]
    assert refused == "error: operation quick is archived; it cannot be launched"
    assert "0 of 0 runs" in its_runs
    assert activated.stdout.strip() == "operation 1 (quick, DEV) is now Active (was Archived)"
    assert cli.fails("operations", "deactivate", "quick", "--env", "PROD") == (
        "error: operation quick in environment PROD not found"
    )
    assert not (cli.home / "runyard.db").exists()  # every command went over HTTP


def test_operations_through_a_server_refuse_an_operator_in_one_line(server: Server, tmp_path: Path) -> None:
    cli = through(server, tmp_path / "home", *OPERATOR)

    refused = cli.fails("operations", "deactivate", "nightly")

    assert refused == "error: Your role (operator) cannot do this: it needs administrator"
    assert listed(cli, "--type", "tasks") == [
        ("1", "quick", "tasks", "DEV", "Active"),
        ("2", "nightly", "tasks", "DEV", "Active"),
    ]
