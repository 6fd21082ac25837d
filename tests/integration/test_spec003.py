"""Spec 003's API over real HTTP (runyard.api.compat.dag), on SQLite and PostgreSQL: every action, every field of
every answer, the filters, execution_date reaching the run and its SQL, and every error in spec 003's shape.

One stack per backend (rest_harness.rest_stack) with the account "000099" of the document, its administrator,
operator and viewer, and its configurations deployed from YAML; each test uses configurations of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.domain.statuses import SPEC003_STATUS, RunStatus
from runyard.operations.loader import load_text
from runyard.services.accounts import create_account, create_user
from runyard.services.dag_status import spec003_duration
from runyard.services.operations import OperationState, deploy, find_operation
from runyard.services.workflows import workflow_status
from runyard.store.tables import runs
from runyard.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import BACKENDS
from tests.integration.rest_harness import RestStack, database, rest_stack, wait_for

ACCOUNT = "000099"
PASSWORD = "acme-password-1"
RUN_SECONDS = 30.0
FIELDS = {
    "account",
    "configuration_id",
    "configuration_type",
    "duration",
    "environment",
    "job_id",
    "last_update_date",
    "run_id",
    "start_execution_date",
    "status",
}
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DURATION = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)\.(\d{6})$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
OK = {"code": 200, "data": {}, "message": "ok"}
FINAL = {"SUCCESS", "SUCCESS_WITH_ERRORS", "FAILED", "CANCELED", "REJECTED"}

PREPARE = f"""\
configuration_type: table-to-table
configuration_id: 000099_iowa_liquor_prepare_pda
environment: DEV
account: "{ACCOUNT}"
steps:
  - target: iowa_liquor_prepared
    sql: SELECT {{{{ execution_date }}}} AS execution_date, {{{{ FD_DATE }}}} AS fd_date, 42 AS bottles
"""
TRAFFIC = f"""\
configuration_type: table-to-table
configuration_id: 000099_Load_PDA_f_traffic_ma
environment: DEV
account: "{ACCOUNT}"
steps:
  - target: f_traffic_ma
    sql: SELECT 1 AS visits
"""
STORES = f"""\
configuration_type: storage-to-storage
configuration_id: 000099-jarvis-demo-iowa-liquor-storage-to-storage
environment: DEV
account: "{ACCOUNT}"
source: landing
destination: archive
files: ["stores-*.csv"]
destination_name: "stores-{{{{FD_DATE}}}}-{{{{FD_TIME}}}}.csv"
"""
WORKFLOW = f"""\
configuration_type: workflow
configuration_id: 000099-iowa-liquor-load-pda
environment: DEV
account: "{ACCOUNT}"
authorized_job_ids: ["tasks|{ACCOUNT}|wf-upstream-a|DEV", "tasks|{ACCOUNT}|wf-upstream-b|DEV"]
target_dag: {{configuration_type: tasks, configuration_id: wf-target}}
"""


def tasks_text(configuration_id: str, seconds: float = 0.0, units: int = 1) -> str:
    return (
        f'configuration_type: tasks\nconfiguration_id: {configuration_id}\nenvironment: DEV\naccount: "{ACCOUNT}"\n'
        f'tasks:\n  - {{name: "Process [stores]", executor: sleep, params: {{seconds: {seconds}, units: {units}}}}}\n'
    )


# --- the world --------------------------------------------------------------------------------------------------


@dataclass
class World:
    stack: RestStack
    kind: str
    tokens: dict[str, str] = field(default_factory=dict)

    def deploy(self, text: str) -> int:
        (deployed,) = deploy(self.stack.store, load_text(text), self.stack.runtime.registry)
        return deployed.operation_id

    def token(self, role: str = "operator") -> str:
        """An access JWT of account 000099's user with this role (rest_harness.USERS are in other accounts)."""
        login = f"{ACCOUNT}-{role}"
        if login not in self.tokens:
            self.tokens[login] = self.stack.login(login, PASSWORD)
        return self.tokens[login]

    def as_(self, role: str = "operator") -> httpx.Client:
        return self.stack.client(self.token(role))

    def run_row(self, run_key: str) -> dict[str, Any]:
        with self.stack.store.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_key == run_key)).mappings().one()
        return dict(row)

    def operation(self, configuration_id: str) -> Any:
        with self.stack.store.read() as conn:
            return find_operation(conn, configuration_id, environment="DEV")

    def warehouse(self) -> DuckDBWarehouse:
        resources = self.stack.runtime.resources
        assert resources is not None
        found = resources.warehouses.for_account(ACCOUNT)
        assert isinstance(found, DuckDBWarehouse)
        return found


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"spec003-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as stack,
    ):
        create_account(stack.store, ACCOUNT)
        for role in ("administrator", "operator", "viewer"):
            create_user(stack.store, account=ACCOUNT, login=f"{ACCOUNT}-{role}", password=PASSWORD, role=role)
        landing = directory / "home" / "files" / "landing"
        landing.mkdir(parents=True)
        (landing / "stores-1.csv").write_text("store,bottles\n1,12\n")
        built = World(stack, kind)
        for text in (PREPARE, TRAFFIC, STORES):
            built.deploy(text)
        yield built


# --- helpers ----------------------------------------------------------------------------------------------------


def identity(configuration_id: str, configuration_type: str = "tasks", **more: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "environment": "DEV",
        "configuration_type": configuration_type,
        "configuration_id": configuration_id,
        **more,
    }


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    if body is None:  # httpx sends no body at all for json=None
        return client.post(path, content=b"null", headers={"content-type": "application/json"})
    return client.post(path, json=body)


def launched(client: httpx.Client, body: dict[str, Any]) -> str:
    response = post(client, "/v1/dag/launch", {"action": "launch_job", **body})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"run_id"}, answer
    assert RUN_ID.match(answer["run_id"]), answer
    return str(answer["run_id"])


def statuses(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = post(client, "/v1/dag/status", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"results"}, answer
    results: list[dict[str, Any]] = answer["results"]
    for result in results:
        assert set(result) == FIELDS, result
        assert all(isinstance(value, str) for value in result.values()), result
    return results


def check_run(client: httpx.Client, who: dict[str, Any], job_id: str, run_id: str) -> dict[str, Any]:
    (result,) = statuses(client, {"action": "check_run_status", **who, "job_id": job_id, "run_id": run_id})
    return result


def wait_final(client: httpx.Client, who: dict[str, Any], job_id: str, run_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        result = check_run(client, who, job_id, run_id)
        return result if result["status"] in FINAL else None

    return wait_for(final, timeout=RUN_SECONDS, what=f"run {run_id} to end")


def assert_error(response: httpx.Response, code: int, *words: str) -> str:
    assert response.status_code == code, response.text
    body = response.json()
    assert set(body) == {"code", "data", "message"}, body
    assert (body["code"], body["data"]) == (code, {}), body
    assert isinstance(body["message"], str), body
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


def parse_duration(text: str) -> timedelta:
    found = DURATION.match(text)
    assert found, text
    hours, minutes, seconds, micros = (int(part) for part in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)


def parse_time(text: str) -> datetime:
    assert TIMESTAMP.match(text), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


def assert_matches_run(world: World, result: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The result's run_id, status, dates and duration agree with the run's row in the store."""
    row = world.run_row(result["run_id"])
    assert result["status"] == SPEC003_STATUS[RunStatus(row["status"])], (result, row["status"])
    assert parse_time(result["start_execution_date"]) == (row["started_at"] or row["created_at"])
    assert parse_time(result["last_update_date"]) == row["updated_at"]
    duration = parse_duration(result["duration"])
    if row["started_at"] is None:
        assert result["duration"] == "0:00:00.000000", result
    elif row["completed_at"] is not None:
        assert duration == row["completed_at"] - row["started_at"], (result, row)
    else:
        assert now is not None
        assert timedelta(0) <= duration <= now - row["started_at"] + timedelta(seconds=1), (result, row)
    return row


# --- launch_job and check_run_status -----------------------------------------------------------------------------


def test_launch_with_an_execution_date_then_check_run_status_answers_every_field(world: World) -> None:
    client = world.as_("operator")
    who = identity("000099_iowa_liquor_prepare_pda_DEV", "table-to-table")
    job_id = "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV"

    run_id = launched(client, {**who, "execution_date": "2020-12-09"})

    row = world.run_row(run_id)
    assert (row["trigger"], row["run_type"], row["execution_date"]) == ("api", "incremental", date(2020, 12, 9))
    assert row["status"] in {"waiting_to_start", "running", "completed"}
    assert row["created_by"] == world.stack.client(world.token("operator")).get("/v1/auth/whoami").json()["user_id"]
    operation = world.operation("000099_iowa_liquor_prepare_pda_DEV")
    assert row["operation_id"] == operation.id
    result = wait_final(client, who, job_id, run_id)
    assert result == {
        "account": ACCOUNT,
        "configuration_id": "000099_iowa_liquor_prepare_pda_DEV",
        "configuration_type": "table-to-table",
        "duration": result["duration"],
        "environment": "DEV",
        "job_id": job_id,
        "last_update_date": result["last_update_date"],
        "run_id": run_id,
        "start_execution_date": result["start_execution_date"],
        "status": "SUCCESS",
    }
    row = assert_matches_run(world, result)
    assert row["started_at"] is not None
    assert row["completed_at"] is not None
    assert parse_duration(result["duration"]) > timedelta(0)
    # The execution_date reached the SQL: {{ execution_date }} is a DATE, {{ FD_DATE }} its YYYYMMDD.
    prepared = world.warehouse().query("SELECT * EXCLUDE (_runyard_loaded_at) FROM main.iowa_liquor_prepared")
    assert prepared == [(date(2020, 12, 9), "20201209", 42)]
    # The job_id may also be written in runyard's long form.
    long_form = check_run(client, who, f"table-to-table|{ACCOUNT}|000099_iowa_liquor_prepare_pda_DEV|DEV", run_id)
    assert long_form == result


def test_a_launch_without_execution_date_runs_for_today_and_a_viewer_may_read_it(world: World) -> None:
    who = identity("000099-jarvis-demo-iowa-liquor-storage-to-storage", "storage-to-storage")
    job_id = (
        f"storage-to-storage|{ACCOUNT}|000099-jarvis-demo-iowa-liquor-storage-to-storage|DEV|"
        "stores-{{FD_DATE}}-{{FD_TIME}}.csv"
    )

    run_id = launched(world.as_("administrator"), {**who, "job_id": job_id})

    row = world.run_row(run_id)
    assert row["execution_date"] == row["created_at"].astimezone(UTC).date()
    result = wait_final(world.as_("viewer"), who, job_id, run_id)
    assert (result["status"], result["job_id"], result["configuration_type"]) == (
        "SUCCESS",
        job_id,
        "storage-to-storage",
    )
    assert_matches_run(world, result)
    copied = list((world.stack.settings.home / "files" / "archive").glob("stores-*.csv"))
    assert len(copied) == 1, copied
    assert re.fullmatch(r"stores-\d{8}-\d{6}\.csv", copied[0].name), copied


# --- get_last_status ---------------------------------------------------------------------------------------------


def test_get_last_status_is_newest_first_with_limit_status_and_execution_date(world: World) -> None:
    client = world.as_("operator")
    who = identity("dag-history")
    job_id = f"tasks|{ACCOUNT}|dag-history|DEV"
    world.deploy(tasks_text("dag-history", 0.05))
    first = launched(client, {**who, "execution_date": "2020-12-09"})
    assert wait_final(client, who, job_id, first)["status"] == "SUCCESS"
    world.deploy(tasks_text("dag-history", 120, units=1200))  # the same operation, now slow
    second = launched(client, {**who, "execution_date": "2020-12-09"})
    wait_for(
        lambda: check_run(client, who, job_id, second)["status"] == "RUNNING",
        timeout=RUN_SECONDS,
        what="the second run to start",
    )

    rejected = post(client, "/v1/dag/launch", {"action": "launch_job", **who, "execution_date": "2020-12-10"})

    message = assert_error(rejected, 409, "Rejected - previous load still running", f"run_id {second} is still active")
    third = re.search(r"rejected run_id (\S+)$", message)
    assert third, message
    third_id = third.group(1)
    assert RUN_ID.match(third_id), message
    assert world.run_row(third_id)["status"] == "rejected"
    running = check_run(client, who, job_id, second)
    assert running["status"] == "RUNNING"
    assert_matches_run(world, running, now=datetime.now(UTC))
    assert parse_duration(running["duration"]) > timedelta(0)
    stranger = world.stack.as_user("default", "administrator")  # another account: the run is not its own
    assert stranger.post(f"/api/v1/runs/{world.run_row(second)['id']}/cancel").status_code == 404
    admin = world.stack.client(world.token("administrator"))
    assert admin.post(f"/api/v1/runs/{world.run_row(second)['id']}/cancel").status_code == 202
    assert wait_final(client, who, job_id, second)["status"] == "CANCELED"

    every = statuses(client, {"action": "get_last_status", **who})
    assert [r["run_id"] for r in every] == [third_id, second, first]
    assert [r["status"] for r in every] == ["REJECTED", "CANCELED", "SUCCESS"]
    for result in every:
        assert_matches_run(world, result)
        assert (result["job_id"], result["configuration_id"], result["account"]) == (job_id, "dag-history", ACCOUNT)
    assert every[0]["duration"] == "0:00:00.000000"  # a rejected run never started
    assert parse_time(every[0]["start_execution_date"]) == world.run_row(third_id)["created_at"]

    def last(**filters: Any) -> list[str]:
        return [r["run_id"] for r in statuses(client, {"action": "get_last_status", **who, **filters})]

    assert last(limit=2) == [third_id, second]
    assert last(limit=1, job_id=job_id) == [third_id]
    assert last(status="SUCCESS") == [first]
    assert last(status="REJECTED") == [third_id]
    assert last(status="RUNNING") == []
    assert last(execution_date="2020-12-09") == [second, first]
    assert last(execution_date="2020-12-09", status="CANCELED") == [second]
    assert last(execution_date="2020-12-09", status="SUCCESS", limit=2) == [first]
    assert last(execution_date="2020-12-10") == [third_id]
    assert last(execution_date="2020-12-11") == []
    assert last(limit=100) == [third_id, second, first]


def test_get_last_status_of_a_configuration_without_runs_is_empty(world: World) -> None:
    world.deploy(tasks_text("never-run"))

    assert statuses(world.as_("viewer"), {"action": "get_last_status", **identity("never-run")}) == []


def test_get_last_status_keeps_the_default_limit_of_ten(world: World) -> None:
    client = world.as_("operator")
    who = identity("many-runs")
    job_id = f"tasks|{ACCOUNT}|many-runs|DEV"
    world.deploy(tasks_text("many-runs"))
    keys = []
    for _ in range(11):
        keys.append(launched(client, who))
        wait_final(client, who, job_id, keys[-1])

    assert [r["run_id"] for r in statuses(client, {"action": "get_last_status", **who})] == keys[::-1][:10]


# --- reset_workflow_status -------------------------------------------------------------------------------------------


def test_reset_workflow_status_forgets_the_counted_successes(world: World) -> None:
    client = world.as_("operator")
    for name in ("wf-upstream-a", "wf-upstream-b", "wf-target"):
        world.deploy(tasks_text(name))
    workflow_id = world.deploy(WORKFLOW)
    upstream_a = identity("wf-upstream-a")
    run_a = launched(client, upstream_a)
    assert wait_final(client, upstream_a, f"tasks|{ACCOUNT}|wf-upstream-a|DEV", run_a)["status"] == "SUCCESS"

    def counts() -> list[int]:
        with world.stack.store.read() as conn:
            return [upstream.successes for upstream in workflow_status(conn, workflow_id).upstreams]

    wait_for(lambda: counts() == [1, 0], timeout=RUN_SECONDS, what="the workflow to count upstream a")
    body = {"action": "reset_workflow_status", **identity("000099-iowa-liquor-load-pda", "workflow")}

    assert_error(post(world.as_("viewer"), "/v1/workflow/status", body), 403, "viewer")
    response = post(client, "/v1/workflow/status", body)

    assert (response.status_code, response.json()) == (200, OK)
    assert counts() == [0, 0]
    with world.stack.store.read() as conn:
        assert workflow_status(conn, workflow_id).reset_at is not None
    # Only upstream b succeeds now: after the reset, the target is not launched.
    upstream_b = identity("wf-upstream-b")
    run_b = launched(client, upstream_b)
    assert wait_final(client, upstream_b, f"tasks|{ACCOUNT}|wf-upstream-b|DEV", run_b)["status"] == "SUCCESS"
    wait_for(lambda: counts() == [0, 1], timeout=RUN_SECONDS, what="the workflow to count upstream b")
    assert statuses(client, {"action": "get_last_status", **identity("wf-target")}) == []
    launch = post(
        client, "/v1/dag/launch", {"action": "launch_job", **identity("000099-iowa-liquor-load-pda", "workflow")}
    )
    assert_error(launch, 409, "000099-iowa-liquor-load-pda", "not launched")


# --- set_configuration_status ----------------------------------------------------------------------------------------


def test_set_configuration_status_deactivates_activates_and_archives(world: World) -> None:
    admin = world.as_("administrator")
    operator = world.as_("operator")
    who = identity("000099_Load_PDA_f_traffic_ma_DEV", "table-to-table")

    def set_state(activated: Any, archived: Any, client: httpx.Client = admin) -> httpx.Response:
        body = {"action": "set_configuration_status", "activated": activated, "archived": archived, **who}
        return post(client, "/v1/configuration/status", body)

    def state() -> OperationState:
        return world.operation("000099_Load_PDA_f_traffic_ma_DEV").state

    assert_error(set_state(False, False, operator), 403, "operator", "administrator")
    assert state() is OperationState.ACTIVE

    off = set_state(False, False)
    assert (off.status_code, off.json(), state()) == (200, OK, OperationState.INACTIVE)
    refused = post(operator, "/v1/dag/launch", {"action": "launch_job", **who})
    assert_error(refused, 409, "000099_Load_PDA_f_traffic_ma_DEV is deactivated")

    on = set_state(True, False)
    assert (on.status_code, on.json(), state()) == (200, OK, OperationState.ACTIVE)
    run_id = launched(operator, who)
    assert wait_final(operator, who, "gbq-to-gbq|000099_Load_PDA_f_traffic_ma_DEV", run_id)["status"] == "SUCCESS"

    archived = set_state(False, True)
    assert (archived.status_code, archived.json(), state()) == (200, OK, OperationState.ARCHIVED)
    assert_error(post(operator, "/v1/dag/launch", {"action": "launch_job", **who}), 409, "is archived")
    readable = statuses(operator, {"action": "get_last_status", **who})
    assert [r["run_id"] for r in readable] == [run_id]

    assert_error(set_state(True, True), 400, "activated", "archived")
    assert_error(set_state("false", True), 400, "activated")
    assert state() is OperationState.ARCHIVED
    back = set_state(True, False)
    assert (back.status_code, back.json(), state()) == (200, OK, OperationState.ACTIVE)


# --- errors --------------------------------------------------------------------------------------------------------

PREPARE_ID = identity("000099_iowa_liquor_prepare_pda_DEV", "table-to-table")
LAUNCH = {"action": "launch_job", **PREPARE_ID}
CHECK = {"action": "check_run_status", **PREPARE_ID, "job_id": "gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV"}
LAST = {"action": "get_last_status", **PREPARE_ID}
STATUS_ACTIONS = "check_run_status, get_last_status"


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        # unknown or missing actions, on each path, with the path's own actions listed
        ("/v1/dag/launch", {**LAUNCH, "action": "launch"}, 400, ["'launch' is not an action", "allowed: launch_job"]),
        ("/v1/dag/status", {**LAST, "action": "get_status"}, 400, ["'get_status'", f"allowed: {STATUS_ACTIONS}"]),
        (
            "/v1/dag/status",
            {**LAST, "action": "launch_job"},
            400,
            ["'launch_job' is not an action of POST /v1/dag/status"],
        ),
        ("/v1/workflow/status", {**LAST, "action": "reset"}, 400, ["allowed: reset_workflow_status"]),
        ("/v1/configuration/status", {**LAST, "action": 7}, 400, ["'7'", "allowed: set_configuration_status"]),
        ("/v1/dag/status", PREPARE_ID, 400, [f"action: required, one of: {STATUS_ACTIONS}"]),
        ("/v1/dag/launch", PREPARE_ID, 400, ["action: required, one of: launch_job"]),
        # missing, mistyped, unknown and oversized fields, named
        (
            "/v1/dag/launch",
            {"action": "launch_job", "account": ACCOUNT},
            400,
            ["environment: required", "configuration_id: required"],
        ),
        ("/v1/dag/status", {**CHECK}, 400, ["run_id: required"]),
        ("/v1/dag/status", {**CHECK, "run_id": 20201230}, 400, ["run_id: Input should be a valid string"]),
        ("/v1/dag/status", {**LAST, "limit": "10"}, 400, ["limit: Input should be a valid integer"]),
        ("/v1/dag/status", {**LAST, "limit": 0}, 400, ["limit:", "greater than or equal to 1"]),
        ("/v1/dag/status", {**LAST, "limit": 101}, 400, ["limit:", "less than or equal to 100"]),
        ("/v1/dag/status", {**LAST, "limit": True}, 400, ["limit: Input should be a valid integer"]),
        (
            "/v1/dag/status",
            {**LAST, "status": "DONE"},
            400,
            ["status: 'DONE' is not a status", "SUCCESS, SUCCESS_WITH_ERRORS"],
        ),
        (
            "/v1/dag/status",
            {**LAST, "execution_date": "2020-13-01"},
            400,
            ["execution_date: '2020-13-01' is not a date"],
        ),
        ("/v1/dag/launch", {**LAUNCH, "execution_date": "09/12/2020"}, 400, ["execution_date:", "YYYY-MM-DD"]),
        (
            "/v1/dag/launch",
            {**LAUNCH, "execution_date": 20201209},
            400,
            ["execution_date: Input should be a valid string"],
        ),
        ("/v1/dag/launch", {**LAUNCH, "run_type": "destructive"}, 400, ["run_type: not a field of this action"]),
        ("/v1/dag/launch", {**LAUNCH, "account": 99}, 400, ["account: Input should be a valid string"]),
        (
            "/v1/dag/launch",
            {**LAUNCH, "configuration_id": "x" * 301},
            400,
            ["configuration_id:", "at most 300 characters"],
        ),
        ("/v1/dag/status", {**CHECK, "job_id": "j" * 1001, "run_id": "r"}, 400, ["job_id:", "at most 1000 characters"]),
        (
            "/v1/configuration/status",
            {"action": "set_configuration_status", **PREPARE_ID, "activated": 1, "archived": False},
            400,
            ["activated: Input should be a valid boolean"],
        ),
        (
            "/v1/configuration/status",
            {"action": "set_configuration_status", **PREPARE_ID, "archived": False},
            400,
            ["activated: required"],
        ),
        # bodies that are not objects
        ("/v1/dag/status", [LAST], 400, ["the body must be a JSON object, not an array"]),
        ("/v1/dag/launch", "launch_job", 400, ["the body must be a JSON object, not a string"]),
        ("/v1/dag/launch", 5, 400, ["the body must be a JSON object, not a number"]),
        ("/v1/workflow/status", None, 400, ["the body must be a JSON object, not null"]),
        # configurations that are not there, or not the caller's
        (
            "/v1/dag/launch",
            {**LAUNCH, "configuration_id": "nope_DEV"},
            404,
            ["configuration table-to-table 'nope_DEV' (DEV) of account '000099' not found"],
        ),
        (
            "/v1/dag/status",
            {**LAST, "configuration_id": "000099_iowa_liquor_prepare_pda"},
            404,
            ["send '000099_iowa_liquor_prepare_pda_DEV'"],
        ),
        ("/v1/dag/status", {**LAST, "environment": "PROD"}, 404, ["(PROD)", "not found"]),
        (
            "/v1/dag/status",
            {**LAST, "configuration_type": "gbq-to-gbq"},
            404,
            ["not found", "send configuration_type 'table-to-table'"],
        ),
        ("/v1/dag/status", {**LAST, "configuration_type": "tables"}, 404, ["'tables' is not a configuration type"]),
        (
            "/v1/dag/status",
            {**LAST, "account": "other"},
            404,
            ["account 'other' does not match the account of your token ('000099')"],
        ),
        (
            "/v1/configuration/status",
            {
                "action": "set_configuration_status",
                **PREPARE_ID,
                "account": "000098",
                "activated": False,
                "archived": False,
            },
            404,
            ["does not match"],
        ),
        # job_ids and run_ids that are not the configuration's
        (
            "/v1/dag/status",
            {**CHECK, "job_id": "gbq-to-gbq|000099_Load_PDA_f_traffic_ma_DEV", "run_id": "x"},
            404,
            ["job_id", "its job_id is 'gbq-to-gbq|000099_iowa_liquor_prepare_pda_DEV'"],
        ),
        (
            "/v1/dag/status",
            {**LAST, "job_id": "nope"},
            400,
            ["job_id: job_id 'nope' starts with 'nope', which is not a job type"],
        ),
        (
            "/v1/dag/status",
            {**CHECK, "run_id": "20201230-112837-0a795c70-2557-4a60-ba16-788aa2bea179"},
            404,
            [
                "run_id '20201230-112837-0a795c70-2557-4a60-ba16-788aa2bea179' of "
                "000099_iowa_liquor_prepare_pda_DEV not found"
            ],
        ),
        (
            "/v1/dag/launch",
            {**LAUNCH, "job_id": f"tasks|{ACCOUNT}|000099_iowa_liquor_prepare_pda_DEV|DEV"},
            404,
            ["job_id"],
        ),
        # a workflow route for something else than a workflow
        (
            "/v1/workflow/status",
            {"action": "reset_workflow_status", **PREPARE_ID},
            400,
            ["configuration_type: reset_workflow_status resets a workflow"],
        ),
        (
            "/v1/workflow/status",
            {"action": "reset_workflow_status", **identity("no-such-workflow", "workflow")},
            404,
            ["not found"],
        ),
    ],
)
def test_every_invalid_request_is_a_4xx_in_spec_003_shape(
    world: World, path: str, body: Any, code: int, words: list[str]
) -> None:
    assert_error(post(world.as_("administrator"), path, body), code, *words)


@pytest.mark.parametrize(
    "path", ["/v1/dag/launch", "/v1/dag/status", "/v1/workflow/status", "/v1/configuration/status"]
)
def test_bodies_that_are_not_json_objects_are_400s(world: World, path: str) -> None:
    client = world.as_("administrator")
    json_headers = {"content-type": "application/json"}

    assert_error(client.post(path, content=b'{"action": "launch_job",', headers=json_headers), 400, "not valid JSON")
    assert_error(client.post(path, content=b"{'action': 1}", headers=json_headers), 400, "not valid JSON")
    assert_error(client.post(path, content=b"", headers=json_headers), 400, "the body is empty")
    # Refused before any parser recurses into it (runyard.limits), still in spec 003's shape.
    assert_error(client.post(path, content=b"[" * 50_000, headers=json_headers), 400, "nested deeper than 32 levels")
    assert_error(client.post(path, content=b'{"action": "x"}'), 400, "content-type: application/json")
    assert_error(client.post(path, data={"action": "launch_job"}), 400, "content-type: application/json")
    big = {**LAUNCH, "configuration_id": "x" * 70_000}
    assert_error(client.post(path, json=big), 413, "larger than 65536 bytes")

    def chunks() -> Iterator[bytes]:
        yield b'{"action": "launch_job", "configuration_id": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    assert_error(client.post(path, content=chunks(), headers=json_headers), 413, "larger than")


@pytest.mark.parametrize(
    "path", ["/v1/dag/launch", "/v1/dag/status", "/v1/workflow/status", "/v1/configuration/status"]
)
def test_a_missing_or_invalid_token_is_a_401_in_spec_003_shape(world: World, path: str) -> None:
    anonymous = world.stack.client()
    forged = world.stack.client("not.a.jwt")

    missing = anonymous.post(path, json=LAST)
    invalid = forged.post(path, json=LAST)
    garbled = anonymous.post(path, content=b"{garbled")  # authentication comes first

    assert_error(missing, 401, "Authentication credentials were not provided.")
    assert_error(invalid, 401, "Authentication failed")
    assert_error(garbled, 401, "Authentication credentials were not provided.")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(anonymous.get("/v1/auth/whoami"), 401, "not provided")


def test_roles(world: World) -> None:
    viewer, operator = world.as_("viewer"), world.as_("operator")

    assert_error(post(viewer, "/v1/dag/launch", LAUNCH), 403, "Your role (viewer) cannot do this")
    assert_error(
        post(
            operator,
            "/v1/configuration/status",
            {"action": "set_configuration_status", **PREPARE_ID, "activated": True, "archived": False},
        ),
        403,
        "administrator",
    )
    assert statuses(viewer, LAST) == statuses(operator, LAST)
    who = world.as_("viewer").get("/v1/auth/whoami")
    assert (who.status_code, who.json()) == (
        200,
        {"account": ACCOUNT, "login": f"{ACCOUNT}-viewer", "role": "viewer", "user_id": who.json()["user_id"]},
    )


def test_another_accounts_administrator_finds_nothing_whether_it_exists_or_not(world: World) -> None:
    other = world.stack.as_user("other", "administrator")
    launches_before = statuses(world.as_("operator"), LAST)
    answers = {}
    for configuration_id in ("000099_iowa_liquor_prepare_pda_DEV", "000099_no_such_thing_DEV"):
        for account in (ACCOUNT, "other"):
            who = {**PREPARE_ID, "configuration_id": configuration_id, "account": account}
            for path, body in (
                ("/v1/dag/launch", {"action": "launch_job", **who}),
                ("/v1/dag/status", {"action": "get_last_status", **who}),
                (
                    "/v1/configuration/status",
                    {"action": "set_configuration_status", **who, "activated": False, "archived": True},
                ),
            ):
                response = post(other, path, body)
                answers[(configuration_id, account, path)] = assert_error(response, 404)
    for (configuration_id, account, path), message in answers.items():
        twin = answers[("000099_no_such_thing_DEV", account, path)]
        assert message == twin.replace("000099_no_such_thing_DEV", configuration_id), (message, twin)
    assert answers[("000099_iowa_liquor_prepare_pda_DEV", ACCOUNT, "/v1/dag/launch")] == (
        "account '000099' does not match the account of your token ('other'): no configuration found"
    )
    assert statuses(world.as_("operator"), LAST) == launches_before
    assert world.operation("000099_iowa_liquor_prepare_pda_DEV").state is OperationState.ACTIVE


def test_spec003_formats() -> None:
    assert spec003_duration(timedelta(minutes=1, seconds=24, microseconds=2519)) == "0:01:24.002519"
    assert spec003_duration(timedelta(seconds=3)) == "0:00:03.000000"
    assert spec003_duration(timedelta(days=1, hours=1)) == "25:00:00.000000"
    assert spec003_duration(timedelta(seconds=-1)) == "0:00:00.000000"
    assert set(SPEC003_STATUS) == set(RunStatus)


def test_the_openapi_schema_documents_the_spec_003_shapes(world: World) -> None:
    schema = world.stack.client().get("/openapi.json").json()
    for path in ("/v1/dag/launch", "/v1/dag/status", "/v1/workflow/status", "/v1/configuration/status"):
        responses = schema["paths"][path]["post"]["responses"]
        assert "422" not in responses, responses
        for code in ("400", "401", "403", "404"):
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Spec003Reply"
            }
