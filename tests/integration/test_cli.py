"""The `runyard` command as a person uses it: real subprocesses, real SQLite files under tmp_path, no mocks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from tests.integration.cli_helpers import (
    BROKEN,
    Background,
    Dump,
    Runyard,
    counts,
    dump,
    error_line,
    query,
    run_ids,
    run_status,
    wait_until,
)

QUICK = """\
configuration_type: tasks
configuration_id: quick
description: two short tasks
tasks:
  - {name: "Process [employees]", executor: sleep,
     params: {seconds: 0.2, units: 2, records_per_unit: 15, table: employees}}
  - {name: "Data Load", executor: noop, depends_on: ["Process [employees]"]}
"""

SLOW = """\
configuration_type: tasks
configuration_id: slow
tasks:
  - {name: "Wait [forever]", executor: sleep, params: {seconds: 60, units: 600}}
"""

BAD_SPECS: dict[str, str] = {
    "malformed.yaml": "configuration_type: tasks\nconfiguration_id: bad-yaml\ndescription: a: b\ntasks: []\n",
    "unknown-field.yaml": (
        "configuration_type: tasks\nconfiguration_id: typo\ndescription: a typo below\n"
        "retries: 3\ntasks:\n  - {name: a, executor: noop}\n"
    ),
    "no-id.yaml": "configuration_type: tasks\ntasks:\n  - {name: a, executor: noop}\n",
    "unknown-executor.yaml": (
        "configuration_type: tasks\nconfiguration_id: teleporting\ntasks:\n"
        "  - {name: a, executor: noop}\n  - {name: b, executor: teleport}\n"
    ),
    "missing-upstream.yaml": (
        "configuration_type: tasks\nconfiguration_id: orphan\ntasks:\n"
        "  - {name: Load, executor: noop, depends_on: [Ghost]}\n"
    ),
    "unknown-step.yaml": (
        "configuration_type: table-to-table\nconfiguration_id: steps\nsteps:\n"
        "  - target: detail\n    sql: SELECT 1 AS one\n    depends_on: [sumary]\n"
        "  - target: summary\n    sql: SELECT count(*) AS n FROM detail\n"
    ),
    "cycle.yaml": (
        "configuration_type: tasks\nconfiguration_id: loop\ntasks:\n"
        "  - {name: a, executor: noop, depends_on: [b]}\n  - {name: b, executor: noop, depends_on: [a]}\n"
    ),
}

# A folder whose first file is good (it would update `quick` and create `fresh`) and whose second is bad.
QUICK_CHANGED = QUICK.replace("two short tasks", "CHANGED") + "---\n" + QUICK.replace("quick", "fresh")
FOLDERS: dict[str, dict[str, str]] = {
    "mixed-parse": {"a-good.yaml": QUICK_CHANGED, "b-bad.yaml": BAD_SPECS["unknown-field.yaml"]},
    "mixed-deploy": {"a-good.yaml": QUICK_CHANGED, "b-bad.yaml": BAD_SPECS["unknown-executor.yaml"]},
}

# Against the `seed` home: run 1 of slow Canceled, run 2 waiting; account default and user admin.
# (Retry and cancel of a Completed run: test_run_wait_follows_the_run_to_completed.)
ERROR_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("malformed-yaml", ("deploy", "{bad}/malformed.yaml"), ("malformed.yaml, line 3", "not valid YAML")),
    (
        "unknown-field",
        ("deploy", "{bad}/unknown-field.yaml"),
        ("unknown-field.yaml, line 4", "field 'retries'", "not a known field"),
    ),
    ("missing-configuration-id", ("deploy", "{bad}/no-id.yaml"), ("no-id.yaml", "'configuration_id'", "required")),
    (
        "unknown-executor",
        ("deploy", "{bad}/unknown-executor.yaml"),
        ("unknown-executor.yaml, line 5: field 'tasks.1.executor'", "unknown executor 'teleport'"),
    ),
    (
        "missing-upstream",
        ("deploy", "{bad}/missing-upstream.yaml"),
        ("missing-upstream.yaml, line 4: field 'tasks.0.depends_on.0'", "'Load' depends on 'Ghost'"),
    ),
    ("cycle", ("deploy", "{bad}/cycle.yaml"), ("cycle.yaml, line 4: field 'tasks.0.depends_on'", "a -> b -> a")),
    (
        "unknown-step",
        ("deploy", "{bad}/unknown-step.yaml"),
        ("unknown-step.yaml, line 6: field 'steps.0.depends_on.0'", "depends on 'sumary', which is no step's target"),
    ),
    ("folder-bad-parse", ("deploy", "{folders}/mixed-parse"), ("b-bad.yaml, line 4", "field 'retries'")),
    (
        "folder-bad-deploy",
        ("deploy", "{folders}/mixed-deploy"),
        ("b-bad.yaml, line 5: field 'tasks.1.executor'", "unknown executor 'teleport'"),
    ),
    ("no-such-path", ("deploy", "{bad}/nowhere.yaml"), ("nowhere.yaml", "no such file or folder")),
    ("run-unknown-operation", ("run", "nope"), ("operation nope not found",)),
    ("retry-not-latest", ("retry", "1"), ("run 1 cannot be retried", "run 2 is more recent")),
    ("cancel-finished", ("cancel", "1"), ("run 1 cannot be canceled", "already ended as Canceled")),
    ("show-missing-run", ("runs", "show", "999"), ("run 999 not found",)),
    (
        "user-unknown-role",
        ("users", "create", "--account", "default", "--login", "eve", "--password", "long-enough", "--role", "god"),
        ("'god' is not a role",),
    ),
    (
        "user-duplicate-login",
        ("users", "create", "--account", "default", "--login", "admin", "--password", "long-enough"),
        ("login admin is taken",),
    ),
    ("account-duplicate", ("accounts", "create", "default"), ("account default already exists",)),
]


def write_specs(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def start_worker(cli: Runyard, log: Path) -> Background:
    """`runyard worker` in the background; it picks up runs launched before it is ready, so no wait here."""
    return cli.spawn("worker", log=log)


def copy_home(template: Path, home: Path) -> Runyard:
    shutil.copytree(template, home)
    return Runyard(home)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template home: upgraded, with operations quick (1), broken (2) and slow (3), no run yet."""
    root = tmp_path_factory.mktemp("deployed")
    cli = Runyard(root / "home")
    cli("db", "upgrade")
    cli("deploy", str(write_specs(root / "specs", {"a.yaml": QUICK, "b.yaml": BROKEN, "c.yaml": SLOW})))
    return cli.home


@pytest.fixture(scope="module")
def seed(deployed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template home with run 1 of slow Canceled and run 2 of slow waiting (no worker runs it)."""
    cli = copy_home(deployed, tmp_path_factory.mktemp("seed") / "home")
    cli("run", "slow")
    cli("cancel", "1")
    cli("run", "slow")
    assert [run_status(cli.db, n) for n in (1, 2)] == ["canceled", "waiting_to_start"]
    return cli.home


@dataclass(frozen=True)
class Outcome:
    result: subprocess.CompletedProcess[str]
    before: Dump
    after: Dump


@pytest.fixture(scope="module")
def error_outcomes(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every ERROR_CASES command, each on its own copy of the seed, a few at a time (start-up dominates)."""
    root = tmp_path_factory.mktemp("errors")
    bad = write_specs(root / "bad", BAD_SPECS)
    for name, files in FOLDERS.items():
        write_specs(root / "folders" / name, files)
    before = dump(seed / "runyard.db")

    def attempt(case: tuple[str, tuple[str, ...], tuple[str, ...]]) -> tuple[str, Outcome]:
        name, args, _ = case
        cli = copy_home(seed, root / name / "home")
        result = cli(*(arg.format(bad=bad, folders=root / "folders") for arg in args), check=False)
        return name, Outcome(result, before, dump(cli.db))

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        return dict(pool.map(attempt, ERROR_CASES))


@pytest.fixture
def cli(deployed: Path, tmp_path: Path) -> Runyard:
    """This test's own copy of the `deployed` home."""
    return copy_home(deployed, tmp_path / "home")


@pytest.fixture
def worker(cli: Runyard, tmp_path: Path) -> Iterator[Background]:
    running = start_worker(cli, tmp_path / "worker")
    yield running
    # A graceful stop waits out a 10 s grace for running tasks (it is tested on its own below); this store is
    # thrown away, so the teardown does not wait.
    running.stop(signal.SIGKILL)


# --- db upgrade ---------------------------------------------------------------------------------------------


def test_db_upgrade_prints_a_generated_password_once(tmp_path: Path) -> None:
    cli = Runyard(tmp_path / "home")

    first = cli("db", "upgrade")

    assert "(was empty)" in first.stdout
    found = re.search(r"administrator login: admin\s+password: (\S+)\s+\(shown once\)", first.stdout)
    assert found, first.stdout
    ((password_hash,),) = query(cli.db, "SELECT password_hash FROM users WHERE login = 'admin'")
    assert PasswordHasher().verify(password_hash, found.group(1))

    second = cli("db", "upgrade")

    assert "runs database at revision" in second.stdout
    assert "password" not in second.stdout + second.stderr
    assert found.group(1) not in second.stdout + second.stderr
    assert counts(cli.db)["users"] == 1


def test_db_upgrade_takes_the_password_from_the_environment_and_never_prints_it(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple"
    cli = Runyard(tmp_path / "home", extra_env={"RUNYARD_ADMIN_PASSWORD": secret})

    result = cli("db", "upgrade")

    assert "administrator login: admin (password from RUNYARD_ADMIN_PASSWORD)" in result.stdout
    assert secret not in result.stdout + result.stderr
    ((password_hash,),) = query(cli.db, "SELECT password_hash FROM users WHERE login = 'admin'")
    assert PasswordHasher().verify(password_hash, secret)


# --- deploy -------------------------------------------------------------------------------------------------


def test_deploy_a_file_then_a_folder_updates_instead_of_duplicating(tmp_path: Path) -> None:
    cli = Runyard(tmp_path / "home")
    cli("db", "upgrade")
    spec = write_specs(tmp_path / "one", {"quick.yaml": QUICK}) / "quick.yaml"

    created = cli("deploy", str(spec))
    assert created.stdout.strip() == "created operation 1 (quick)"

    folder = write_specs(tmp_path / "many", {"a.yml": QUICK_CHANGED, "b.yaml": BROKEN})
    again = cli("deploy", str(folder))

    assert again.stdout.splitlines() == [
        "updated operation 1 (quick)",
        "  description: 'two short tasks' -> CHANGED",
        "created operation 2 (fresh)",
        "created operation 3 (broken)",
    ]
    rows = query(cli.db, "SELECT id, configuration_id, description FROM operations ORDER BY id")
    assert rows == [(1, "quick", "CHANGED"), (2, "fresh", "two short tasks"), (3, "broken", "")]


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"), [pytest.param(name, expected, id=name) for name, _, expected in ERROR_CASES]
)
def test_bad_input_gets_one_error_line_and_changes_nothing(
    error_outcomes: dict[str, Outcome], name: str, expected: tuple[str, ...]
) -> None:
    outcome = error_outcomes[name]

    message = error_line(outcome.result)

    for text in expected:
        assert text in message
    assert outcome.after == outcome.before


# --- run, runs, retry, cancel -------------------------------------------------------------------------------


def test_a_second_launch_while_the_first_is_active_is_rejected_and_listed(cli: Runyard) -> None:
    cli("run", "slow")

    message = cli.fails("run", "slow")

    assert "Rejected - previous load still running" in message
    assert "run 1 is still active" in message
    assert "rejected run 2" in message
    assert [run_status(cli.db, n) for n in (1, 2)] == ["waiting_to_start", "rejected"]
    listed = cli("runs", "--status", "rejected").stdout
    assert re.search(r"^\s*2\s+slow\s+incremental\s+Rejected - previous load still running", listed, re.M), listed
    assert not re.search(r"^\s*1\s+slow", listed, re.M), listed
    assert "1 of 1 runs" in listed
    assert "blocked by run 1" in cli("runs", "show", "2").stdout


def test_run_wait_follows_the_run_to_completed(cli: Runyard, worker: Background) -> None:
    result = cli("run", "quick", "--wait")

    assert re.search(r"run 1 of quick launched \(incremental\); job name quick#\S+", result.stdout), result.stdout
    assert re.search(r"Process \[employees\].*Completed\s+30 records", result.stdout), result.stdout
    assert re.search(r"Data Load.*Completed", result.stdout), result.stdout
    assert "run 1 ended Completed" in result.stdout
    shown = cli("runs", "show", "1").stdout
    assert re.search(r"^run 1\s+quick\s+incremental\s+Completed$", shown, re.M), shown
    assert "employees (30)" in shown
    before = dump(cli.db)
    assert "run 1 cannot be retried: it is Completed" in cli.fails("retry", "1")
    assert "run 1 cannot be canceled: it already ended as Completed" in cli.fails("cancel", "1")
    assert dump(cli.db) == before
    assert worker.stop() == 0, worker.describe()
    assert "stopping" in worker.stderr


def test_a_failed_run_exits_non_zero_shows_why_and_can_be_retried(cli: Runyard, worker: Background) -> None:
    result = cli("run", "broken", "--wait", check=False)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "run 1 ended Failed" in result.stdout
    shown = cli("runs", "show", "1").stdout
    assert re.search(r"^run 1\s+broken\s+incremental\s+Failed$", shown, re.M), shown
    assert "[error] Fetch [departments]: the source answered 500" in shown

    retried = cli("retry", "1")

    assert retried.stdout.strip() == "run 2 launched as a retry of run 1"
    shown = cli("runs", "show", "2").stdout
    assert "retry of run 1" in shown
    assert "trigger retry" in shown
    assert "Reused the output of task 1 from run 1" in shown  # the reusable task did not run again
    assert run_ids(cli.db, "broken") == [1, 2]


def test_cancel_a_running_run_then_launch_again(cli: Runyard, worker: Background) -> None:
    cli("run", "slow")
    wait_until(lambda: run_status(cli.db, 1) == "running", timeout=15, what="run 1 to start")

    result = cli("cancel", "1")

    assert result.stdout.strip() in ("run 1 is Canceling", "run 1 is Canceled")
    wait_until(lambda: run_status(cli.db, 1) == "canceled", timeout=15, what="run 1 to be Canceled")
    assert re.search(r"^run 1\s+slow\s+incremental\s+Canceled$", cli("runs", "show", "1").stdout, re.M)

    relaunched = cli("run", "slow")

    assert relaunched.stdout.startswith("run 2 of slow launched")
    assert run_status(cli.db, 2) in ("waiting_to_start", "running")
