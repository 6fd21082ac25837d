"""Spec 003's curl commands, as its document writes them, against a real `runyard serve` (SQLite and PostgreSQL).

Each command below is copied from the document (spec/003_*.txt) character for character; the test changes only
the host (the document's Cloud Run URL becomes the server's) and the first line, which gets the token: the
document's `TAILER_API_JWT = \\` tailer auth get-token | ...\\`` is not valid shell (no spaces around `=`), so it
becomes `TAILER_API_JWT=\\` runyard auth get-token | ...\\``, run through `bash -c` with the real curl, `--http2`
included. Over http:// curl's --http2 asks to upgrade (`Upgrade: h2c`); uvicorn answers in HTTP/1.1, which
curl accepts: one test shows it on the wire. The run_ids the document shows are replaced by the real ones.

Everything is done as a user would: `runyard db upgrade`, `accounts create`, `users create`, `deploy` of a folder
of YAML files, `serve`, `login`, `auth get-token`. Waits poll the status with a deadline, never sleep blindly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.store.database import Store
from runyard.store.tables import operations, runs, workflow_upstreams
from tests.conftest import BACKENDS
from tests.integration.cli_helpers import Background, Runyard, answers_health, free_port, wait_until
from tests.integration.rest_harness import database

DOC_HOST = "https://tailer-api-nqonovswsq-ew.a.run.app"
DOC_TOKEN_LINE = "TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\"
TOKEN_LINE = "TAILER_API_JWT=` runyard auth get-token | awk '/User token :/ {print $4}'` \\"
ACCOUNT = "000099"
LOGIN = "acme-admin"
PASSWORD = "acme-correct-horse-1"
STARTUP_SECONDS = 30.0
RUN_SECONDS = 45.0
SERVER_TIMINGS = {
    "RUNYARD_LEASE_SECONDS": "3",
    "RUNYARD_HEARTBEAT_SECONDS": "0.3",
    "RUNYARD_POLL_SECONDS": "0.1",
    "RUNYARD_SWEEP_SECONDS": "0.3",
}
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DURATION = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)\.(\d{6})$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
OK = {"code": 200, "data": {}, "message": "ok"}
FINAL = {"SUCCESS", "SUCCESS_WITH_ERRORS", "FAILED", "CANCELED", "REJECTED"}
PREPARE_JOB = "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV"
STORES_JOB = (
    "storage-to-storage|000099|000099-jarvis-demo-iowa-liquor-storage-to-storage|DEV|stores-{{FD_DATE}}-{{FD_TIME}}.csv"
)

# --- the document's commands, verbatim --------------------------------------------------------------------------

LAUNCH = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "launch_job",
"account": "000099",
"environment": "DEV",
"configuration_type": "table-to-table",
"configuration_id": "000099_iowa_liquor_prepare_pda_DEV"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/dag/launch"
"""
CHECK_RUN_STATUS = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{"action": "check_run_status",
"account": "000099",
"environment": "DEV",
"configuration_type": "table-to-table",
"configuration_id": "000099_iowa_liquor_prepare_pda_DEV",
"job_id": "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV",
"run_id": "20201230-112837-0a795c70-2557-4a60-ba16-788aa2bea179"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/dag/status"
"""
DOC_RUN_ID = "20201230-112837-0a795c70-2557-4a60-ba16-788aa2bea179"
LAST_STATUS_OF_A_JOB = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "get_last_status",
"account": "000099",
"environment": "DEV",
"configuration_type": "table-to-table",
"configuration_id": "000099_iowa_liquor_prepare_pda_DEV"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/dag/status"
"""
LAST_STATUS_OF_A_DATA_OPERATION = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "get_last_status",
"account": "000099",
"environment": "DEV",
"configuration_type": "storage-to-storage",
"configuration_id": "000099-jarvis-demo-iowa-liquor-storage-to-storage"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/dag/status"
"""
LAST_STATUS_WITH_PARAMETERS = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "get_last_status",
"account": "000099",
"environment": "DEV",
"configuration_type": "storage-to-storage",
"configuration_id": "000099-jarvis-demo-iowa-liquor-storage-to-storage",
"execution_date": "2020-12-09",
"status": "SUCCESS",
"limit": 2}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/dag/status"
"""
RESET_WORKFLOW = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "reset_workflow_status",
"account": "000099",
"environment": "DEV",
"configuration_type": "workflow",
"configuration_id": "000099-iowa-liquor-load-pda"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/workflow/status"
"""
DISABLE = """\
TAILER_API_JWT = ` tailer auth get-token | awk '/User token :/ {print $4}'` \\
&& curl --request POST \\
--http2 \\
--header "content-type:application/json" \\
--header "Authorization: Bearer ${TAILER_API_JWT}" \\
--data '{ "action": "set_configuration_status",
"activated" : false,
"archived" : false,
"account": "000099",
"environment": "DEV",
"configuration_type": "table-to-table",
"configuration_id": "000099_Load_PDA_f_traffic_ma_DEV"}' \\
"https://tailer-api-nqonovswsq-ew.a.run.app/v1/configuration/status"
"""
ENABLE = DISABLE.replace('"activated" : false', '"activated" : true')
ARCHIVE = DISABLE.replace('"archived" : false', '"archived" : true')

# --- the configurations, as a user's folder of YAML files -------------------------------------------------------

CONFIGURATIONS = {
    "prepare.yaml": f"""\
configuration_type: table-to-table
configuration_id: 000099_iowa_liquor_prepare_pda
environment: DEV
account: "{ACCOUNT}"
steps:
  - target: iowa_liquor_prepared
    sql: SELECT {{{{ execution_date }}}} AS execution_date, 12 AS bottles
""",
    "traffic.yaml": f"""\
configuration_type: table-to-table
configuration_id: 000099_Load_PDA_f_traffic_ma
environment: DEV
account: "{ACCOUNT}"
steps:
  - target: f_traffic_ma
    sql: SELECT 1 AS visits
""",
    "stores.yaml": f"""\
configuration_type: storage-to-storage
configuration_id: 000099-jarvis-demo-iowa-liquor-storage-to-storage
environment: DEV
account: "{ACCOUNT}"
source: landing
destination: archive
files: ["stores-*.csv"]
destination_name: "stores-{{{{FD_DATE}}}}-{{{{FD_TIME}}}}.csv"
""",
    "workflow.yaml": f"""\
configuration_type: workflow
configuration_id: 000099-iowa-liquor-load-pda
environment: DEV
account: "{ACCOUNT}"
authorized_job_ids: ["{PREPARE_JOB}", "tasks|{ACCOUNT}|000099-iowa-liquor-checked-by-hand|DEV"]
target_dag: {{configuration_type: table-to-table, configuration_id: 000099_Load_PDA_f_traffic_ma}}
""",
    # The workflow's second upstream: never run here, so the successes of the first are never consumed.
    "checked-by-hand.yaml": f"""\
configuration_type: tasks
configuration_id: 000099-iowa-liquor-checked-by-hand
environment: DEV
account: "{ACCOUNT}"
tasks:
  - {{name: "Check [stores]", executor: noop}}
""",
}


def curl() -> str:
    """curl's path: a skip without it, but a failure under CI=true, where it must be installed."""
    found = shutil.which("curl")
    if found is None:
        message = "curl is not installed (apt-get install curl)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


# --- the server and the user's shell ------------------------------------------------------------------------------


@dataclass
class Shell:
    """bash with `runyard` (the user's CLI, logged in to the server) and curl on its PATH."""

    server: Background
    url: str
    database_url: str
    client: Runyard

    def bash(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**self.client.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if check:
            assert result.returncode == 0, f"exit {result.returncode}\n{script}\n{result.stdout}\n{result.stderr}"
        return result

    def document(self, command: str, **replace: str) -> Any:
        """Run one of the document's commands, changed only in its host and token line; its JSON answer."""
        assert command.startswith(DOC_TOKEN_LINE), command
        script = command.replace(DOC_TOKEN_LINE, TOKEN_LINE).replace(DOC_HOST, self.url)
        for old, new in replace.items():
            assert old in script, old
            script = script.replace(old, new)
        answer = self.bash(script).stdout
        assert answer, script
        return json.loads(answer)

    def launch(self, configuration_type: str, configuration_id: str, **more: str) -> str:
        """The document's launch command for another configuration (and an execution_date): its run_id."""
        documented = (
            '"configuration_type": "table-to-table",\n"configuration_id": "000099_iowa_liquor_prepare_pda_DEV"}\''
        )
        extra = "".join(f',\n"{name}": "{value}"' for name, value in more.items())
        instead = f'"configuration_type": "{configuration_type}",\n"configuration_id": "{configuration_id}"{extra}}}\''
        answer = self.document(LAUNCH, **{documented: instead})
        assert set(answer) == {"run_id"}, answer
        assert RUN_ID.match(answer["run_id"]), answer
        return str(answer["run_id"])

    def row(self, run_id: str) -> dict[str, Any]:
        store = Store(self.database_url)
        try:
            with store.read() as conn:
                found = conn.execute(sa.select(runs).where(runs.c.run_key == run_id)).mappings().one()
                return dict(found)
        finally:
            store.dispose()

    def read(self, query: Callable[[sa.engine.Connection], Any]) -> Any:
        store = Store(self.database_url)
        try:
            with store.read() as conn:
                return query(conn)
        finally:
            store.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def shell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    curl()
    kind = str(request.param)
    root = tmp_path_factory.mktemp(f"spec003-curl-{kind}")
    with database(kind, root, lambda: str(request.getfixturevalue("pg_template"))) as url:
        admin = Runyard(root / "server", extra_env={"RUNYARD_DATABASE_URL": url, **SERVER_TIMINGS})
        admin("db", "upgrade")
        admin("accounts", "create", ACCOUNT)
        admin(
            "users", "create", "--account", ACCOUNT, "--login", LOGIN, "--password", PASSWORD, "--role", "administrator"
        )
        folder = root / "configurations"
        folder.mkdir()
        for name, text in CONFIGURATIONS.items():
            (folder / name).write_text(text)
        admin("deploy", str(folder))
        landing = admin.home / "files" / "landing"
        landing.mkdir(parents=True)
        (landing / "stores-1.csv").write_text("store,bottles\n1,12\n")
        port = free_port()
        server = admin.spawn("serve", "--port", str(port), log=root / "serve")
        try:
            server_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: answers_health(server_url, server), timeout=STARTUP_SECONDS, what="runyard serve")
            client = Runyard(root / "user", extra_env={"RUNYARD_URL": server_url})
            client("login", "--login", LOGIN, "--password", PASSWORD)
            yield Shell(server, server_url, url, client)
        finally:
            server.stop(signal.SIGKILL)


# --- checks ----------------------------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    assert TIMESTAMP.match(text), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


def parse_duration(text: str) -> timedelta:
    found = DURATION.match(text)
    assert found, text
    hours, minutes, seconds, micros = (int(part) for part in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)


def assert_result(shell: Shell, result: dict[str, Any], expected: dict[str, str]) -> None:
    """Every field: the identity as expected, and the run's own values as its row in the store says."""
    row = shell.row(result["run_id"])
    assert set(result) == {*expected, "duration", "last_update_date", "run_id", "start_execution_date", "status"}
    assert {name: result[name] for name in expected} == expected, result
    assert parse_time(result["start_execution_date"]) == (row["started_at"] or row["created_at"])
    assert parse_time(result["last_update_date"]) == row["updated_at"]
    assert result["status"] == {"completed": "SUCCESS", "rejected": "REJECTED"}.get(row["status"], "?"), result
    if row["started_at"] is None:
        assert result["duration"] == "0:00:00.000000"
    else:
        assert parse_duration(result["duration"]) == row["completed_at"] - row["started_at"]


def wait_success(shell: Shell, configuration_type: str, configuration_id: str, job_id: str, run_id: str) -> None:
    def final() -> dict[str, Any] | None:
        answer = shell.document(
            CHECK_RUN_STATUS,
            **{
                DOC_RUN_ID: run_id,
                '"configuration_type": "table-to-table"': f'"configuration_type": "{configuration_type}"',
                '"configuration_id": "000099_iowa_liquor_prepare_pda_DEV"': f'"configuration_id": "{configuration_id}"',
                f'"job_id": "{PREPARE_JOB}"': f'"job_id": "{job_id}"',
            },
        )
        (result,) = answer["results"]
        return result if result["status"] in FINAL else None

    result = wait_until(final, timeout=RUN_SECONDS, what=f"run {run_id} to end", interval=0.2)
    assert result["status"] == "SUCCESS", result


PREPARE = {
    "account": ACCOUNT,
    "configuration_id": "000099_iowa_liquor_prepare_pda_DEV",
    "configuration_type": "table-to-table",
    "environment": "DEV",
    "job_id": PREPARE_JOB,
}
STORES = {
    "account": ACCOUNT,
    "configuration_id": "000099-jarvis-demo-iowa-liquor-storage-to-storage",
    "configuration_type": "storage-to-storage",
    "environment": "DEV",
    "job_id": STORES_JOB,
}


# --- the token -------------------------------------------------------------------------------------------------------


def test_get_token_prints_seven_lines_and_both_extractions_give_the_bare_jwt(shell: Shell) -> None:
    printed = shell.bash("runyard auth get-token").stdout
    with_sed = shell.bash(
        "TAILER_API_JWT=`runyard auth get-token | sed '7q;d' | sed 's/User token : //g'`; echo \"$TAILER_API_JWT\""
    )
    with_awk = shell.bash("runyard auth get-token | awk '/User token :/ {print $4}'")

    lines = printed.splitlines()
    assert len(lines) == 7, printed
    token = with_awk.stdout.strip()
    assert with_sed.stdout == f"{token}\n"
    assert with_awk.stdout == f"{token}\n"
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token), token
    assert lines[6] == f"User token : {token}"
    assert lines[1:5] == [f"Server : {shell.url}", f"Account : {ACCOUNT}", lines[3], "Role : administrator"]
    assert re.fullmatch(rf"User : {LOGIN} \(user \d+\)", lines[3]), lines
    assert re.fullmatch(r"Expires : \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 \(in \d+ min \d+ s\)", lines[5]), lines
    assert all("User token :" not in line for line in lines[:6])
    with httpx.Client(base_url=shell.url, timeout=10) as http:
        who = http.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
    assert who.status_code == 200, who.text
    assert (who.json()["account"], who.json()["login"]) == (ACCOUNT, LOGIN)


def test_get_token_without_a_login_is_one_error_line(shell: Shell, tmp_path: Path) -> None:
    nobody = Runyard(tmp_path / "nobody")
    expired = Runyard(tmp_path / "expired")
    expired.home.mkdir()
    (expired.home / "cli.json").write_text(json.dumps({"url": shell.url, "token": "expired.or.forged"}))

    assert nobody.fails("auth", "get-token") == (
        "error: not logged in: run `runyard login` (or set RUNYARD_URL and RUNYARD_TOKEN)"
    )
    assert expired.fails("auth", "get-token") == "error: your login expired: run `runyard login` again"
    assert not (nobody.home / "runyard.db").exists()


# --- the document, section by section ------------------------------------------------------------------------------


def test_launching_a_jobs_execution_then_checking_its_status(shell: Shell) -> None:
    started = datetime.now(UTC)

    launched = shell.document(LAUNCH)

    assert set(launched) == {"run_id"}, launched
    run_id = launched["run_id"]
    assert RUN_ID.match(run_id), launched
    row = shell.row(run_id)
    assert (row["trigger"], row["execution_date"]) == ("api", row["created_at"].date())
    wait_success(shell, "table-to-table", "000099_iowa_liquor_prepare_pda_DEV", PREPARE_JOB, run_id)
    answer = shell.document(CHECK_RUN_STATUS, **{DOC_RUN_ID: run_id})
    assert set(answer) == {"results"}, answer
    (result,) = answer["results"]
    assert_result(shell, result, PREPARE)
    assert (result["run_id"], result["status"]) == (run_id, "SUCCESS")
    assert started - timedelta(seconds=5) <= parse_time(result["start_execution_date"]) <= datetime.now(UTC)


def test_getting_the_last_status_of_a_job(shell: Shell) -> None:
    keys = []
    for day in ("2020-12-10", "2020-12-30"):
        keys.append(shell.launch("table-to-table", "000099_iowa_liquor_prepare_pda_DEV", execution_date=day))
        wait_success(shell, "table-to-table", "000099_iowa_liquor_prepare_pda_DEV", PREPARE_JOB, keys[-1])

    answer = shell.document(LAST_STATUS_OF_A_JOB)

    assert set(answer) == {"results"}, answer
    results = answer["results"]
    assert [result["run_id"] for result in results[:2]] == keys[::-1], results
    assert [shell.row(key)["execution_date"].isoformat() for key in keys] == ["2020-12-10", "2020-12-30"]
    for result in results:
        assert_result(
            shell, result, PREPARE
        )  # configuration_type "table-to-table", as asked; gbq-to-gbq only in job_id
    ids = [shell.row(result["run_id"])["id"] for result in results]
    assert ids == sorted(ids, reverse=True)


def test_getting_the_last_status_of_a_data_operation_with_and_without_parameters(shell: Shell) -> None:
    keys = []
    for _ in range(3):
        run_id = shell.launch(
            "storage-to-storage", "000099-jarvis-demo-iowa-liquor-storage-to-storage", execution_date="2020-12-09"
        )
        wait_success(
            shell, "storage-to-storage", "000099-jarvis-demo-iowa-liquor-storage-to-storage", STORES_JOB, run_id
        )
        keys.append(run_id)
    other_day = shell.launch(
        "storage-to-storage", "000099-jarvis-demo-iowa-liquor-storage-to-storage", execution_date="2020-12-10"
    )
    wait_success(
        shell, "storage-to-storage", "000099-jarvis-demo-iowa-liquor-storage-to-storage", STORES_JOB, other_day
    )

    every = shell.document(LAST_STATUS_OF_A_DATA_OPERATION)
    filtered = shell.document(LAST_STATUS_WITH_PARAMETERS)

    assert [result["run_id"] for result in every["results"]] == [other_day, *keys[::-1]]
    assert [result["run_id"] for result in filtered["results"]] == keys[::-1][:2]
    for result in every["results"] + filtered["results"]:
        assert_result(shell, result, STORES)
        assert result["status"] == "SUCCESS"
    for run_id in keys:
        assert shell.row(run_id)["execution_date"].isoformat() == "2020-12-09"
    assert set(every) == set(filtered) == {"results"}


def test_resetting_a_workflow(shell: Shell) -> None:
    def counted() -> int:
        query = (
            sa.select(sa.func.coalesce(sa.func.sum(workflow_upstreams.c.successes), 0))
            .join(operations, operations.c.id == workflow_upstreams.c.workflow_id)
            .where(operations.c.configuration_id == "000099-iowa-liquor-load-pda")
        )
        return int(shell.read(lambda conn: conn.execute(query).scalar_one()))

    run_id = shell.launch("table-to-table", "000099_iowa_liquor_prepare_pda_DEV")
    wait_success(shell, "table-to-table", "000099_iowa_liquor_prepare_pda_DEV", PREPARE_JOB, run_id)
    wait_until(lambda: counted() > 0, timeout=RUN_SECONDS, what="the workflow to count a success", interval=0.2)

    answer = shell.document(RESET_WORKFLOW)

    assert answer == OK
    assert counted() == 0


def test_disabling_enabling_and_archiving_a_data_operation(shell: Shell) -> None:
    def state() -> tuple[bool, bool]:
        query = sa.select(operations.c.activated, operations.c.archived).where(
            operations.c.configuration_id == "000099_Load_PDA_f_traffic_ma_DEV"
        )
        row = shell.read(lambda conn: conn.execute(query).one())
        return bool(row.activated), bool(row.archived)

    assert shell.document(DISABLE) == OK
    assert state() == (False, False)
    assert shell.document(ENABLE) == OK
    assert state() == (True, False)
    assert shell.document(ARCHIVE) == OK
    assert state() == (False, True)
    assert shell.document(ENABLE) == OK
    assert state() == (True, False)


def test_http2_over_http_is_an_upgrade_that_uvicorn_answers_in_http_1_1(shell: Shell) -> None:
    script = LAST_STATUS_OF_A_JOB.replace(DOC_TOKEN_LINE, TOKEN_LINE).replace(DOC_HOST, shell.url)
    script = script.replace("curl --request POST", "curl --silent --verbose --request POST")

    result = shell.bash(script)

    assert "> Upgrade: h2c" in result.stderr, result.stderr
    assert "> Content-Length: " in result.stderr, result.stderr
    assert "< HTTP/1.1 200 OK" in result.stderr, result.stderr
    assert set(json.loads(result.stdout)) == {"results"}


def test_an_error_is_spec_003_shaped_through_curl_too(shell: Shell) -> None:
    script = DISABLE.replace(DOC_TOKEN_LINE, TOKEN_LINE).replace(DOC_HOST, shell.url)
    script = script.replace('"activated" : false', '"activated" : true').replace(
        '"archived" : false', '"archived" : true'
    )
    script = script.replace("curl --request POST", "curl --silent --write-out '\\n%{http_code}' --request POST")

    body, code = shell.bash(script).stdout.rsplit("\n", 1)

    assert code == "400"
    answer = json.loads(body)
    assert (answer["code"], answer["data"]) == (400, {})
    assert "activated" in answer["message"]
