"""Environments, activation and archiving of operations: the services on both stores, the native API over real HTTP,
and the Sources page through its forms (tests/e2e drives the same page in chromium).

Rules under test (runyard.services.operations): {activated, archived} = {true, false} Active, {false, false}
Inactive, {false, true} Archived, {true, true} refused; a deactivated or archived operation is not launched (409),
an archived one leaves the default lists but its runs stay readable; a redeploy updates in place, keeps the
operation's runs and state, and lists what it changed.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus
from runyard.errors import ConfigError, Conflict, InvalidInput, NotFound
from runyard.operations import registry
from runyard.operations.loader import load_specs_with_sources
from runyard.operations.spec import OperationBase
from runyard.operations.tasks.executors import BUILTIN
from runyard.services.accounts import create_account
from runyard.services.deploy_changes import DeployAction
from runyard.services.listing import RunQuery, list_runs
from runyard.services.operations import (
    OperationFilter,
    OperationState,
    deploy,
    get_operation,
    list_operations,
    preview_deploy,
    set_status,
)
from runyard.services.runs import LaunchRequest, RunService
from runyard.store.database import Store
from runyard.store.tables import operations, runs
from tests.factories import make_account, sleep_task
from tests.integration.rest_harness import RestStack, long_task, rest_stack
from tests.integration.ui_client import UiClient, signed_in

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
QUICK = [sleep_task("Process [employees]", 0.05), sleep_task("Data Load", depends_on=["Process [employees]"])]
DEACTIVATED = "operation {} is deactivated; activate it to launch it"
ARCHIVED = "operation {} is archived; it cannot be launched"


def tasks_spec(configuration_id: str, environment: str = "DEV", **fields: Any) -> OperationBase:
    data = {
        "configuration_type": "tasks",
        "configuration_id": configuration_id,
        "environment": environment,
        "tasks": [{"name": "Process [employees]", "executor": "sleep", "params": {"seconds": 0.1}}],
        **fields,
    }
    spec: OperationBase = registry.operation_type("tasks").spec.model_validate(data)
    return spec


def api_spec(configuration_id: str, path: str = "/a", environment: str = "PROD") -> OperationBase:
    data = {
        "configuration_type": "api-to-table",
        "configuration_id": configuration_id,
        "environment": environment,
        "base_url": "https://api.example.com/v1",
        "endpoints": [{"name": "employees", "path": path, "records": "data", "pagination": {"style": "none"}}],
    }
    spec: OperationBase = registry.operation_type("api-to-table").spec.model_validate(data)
    return spec


def operation_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.read() as conn:
        return [tuple(row) for row in conn.execute(sa.select(operations).order_by(operations.c.id))]


# --- deploy: in place, with its changes -------------------------------------------------------------------------


def test_a_redeploy_updates_in_place_keeps_the_runs_and_lists_what_changed(store: Store) -> None:
    make_account(store)
    (first,) = deploy(store, [api_spec("hr")], BUILTIN)
    run = RunService(store).launch(LaunchRequest(first.operation_id))
    changed = api_spec("hr", path="/b").model_copy(update={"schedule": "0 6 * * *", "description": "HR"})

    (second,) = deploy(store, [changed], BUILTIN)

    assert (first.action, second.action) == (DeployAction.CREATED, DeployAction.UPDATED)
    assert second.operation_id == first.operation_id
    assert [str(change) for change in second.changes] == [
        "description: '' -> HR",
        "schedule: None -> '0 6 * * *'",
        "endpoints.0.path: /a -> /b",
    ]
    with store.read() as conn:
        stored = get_operation(conn, first.operation_id)
        kept = conn.execute(sa.select(runs.c.id).where(runs.c.operation_id == first.operation_id)).scalars().all()
    assert stored.spec["endpoints"][0]["path"] == "/b"
    assert (stored.schedule, stored.description) == ("0 6 * * *", "HR")
    assert kept == [run.id]
    assert len(operation_rows(store)) == 1


def test_an_unchanged_redeploy_writes_nothing_and_a_preview_never_writes(store: Store) -> None:
    make_account(store)
    deploy(store, [tasks_spec("a"), tasks_spec("b")], BUILTIN)
    before = operation_rows(store)

    again = deploy(store, [tasks_spec("a"), tasks_spec("b")], BUILTIN)
    preview = preview_deploy(store, [tasks_spec("a", description="new"), tasks_spec("b"), tasks_spec("c")], BUILTIN)

    assert [item.action for item in again] == [DeployAction.UNCHANGED, DeployAction.UNCHANGED]
    assert [(item.action, item.operation_id) for item in preview] == [
        (DeployAction.UPDATED, 1),
        (DeployAction.UNCHANGED, 2),
        (DeployAction.CREATED, None),
    ]
    assert [str(change) for change in preview[0].changes] == ["description: '' -> new"]
    assert operation_rows(store) == before  # updated_at included


def test_a_preview_refuses_what_a_deploy_refuses(store: Store) -> None:
    make_account(store)
    bad = tasks_spec("bad").model_copy(update={"account": "nobody"})

    for attempt in (deploy, preview_deploy):
        with pytest.raises(ConfigError) as raised:
            attempt(store, [tasks_spec("good"), bad], BUILTIN, ["good.yaml", "bad.yaml"])
        assert str(raised.value) == "bad.yaml: field 'account': account nobody not found"
    assert operation_rows(store) == []


def test_the_state_survives_a_redeploy_unless_the_file_sets_it(store: Store) -> None:
    make_account(store)
    (deployed,) = deploy(store, [tasks_spec("a")], BUILTIN)
    set_status(store, deployed.operation_id, activated=False, archived=False)

    (kept,) = deploy(store, [tasks_spec("a")], BUILTIN)
    (reactivated,) = deploy(store, [tasks_spec("a", activated=True)], BUILTIN)
    (archived,) = deploy(store, [tasks_spec("a", archived=True)], BUILTIN)  # archiving deactivates

    assert kept.action is DeployAction.UNCHANGED
    assert [str(change) for change in reactivated.changes] == ["activated: False -> True"]
    assert [str(change) for change in archived.changes] == ["activated: True -> False", "archived: False -> True"]
    with store.read() as conn:
        assert get_operation(conn, deployed.operation_id).state is OperationState.ARCHIVED
    with pytest.raises(ConfigError, match="an archived operation is always deactivated"):
        deploy(store, [tasks_spec("b", activated=True, archived=True)], BUILTIN, ["b.yaml"])


def test_env_gives_a_suffixed_type_its_environment_suffix(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A type with environment_suffix (table-to-table) deployed with --env: its configuration_id ends in _<ENV>.
    `tasks` stands in for it here, so that the rule is checked whatever types the registry holds today."""
    types = dict(registry.operation_types())
    types["tasks"] = replace(types["tasks"], environment_suffix=True)
    monkeypatch.setattr(registry, "operation_types", lambda: types)
    make_account(store)
    (tmp_path / "a.yaml").write_text(
        "configuration_type: tasks\nconfiguration_id: load\nenvironment: PROD\n"
        "tasks:\n  - {name: one, executor: noop}\n"
    )
    (tmp_path / "b.json").write_text(
        '{"configuration_type": "tasks", "configuration_id": "prepare_DEV",\n'
        ' "tasks": [{"name": "one", "executor": "noop"}]}'
    )

    for environment in ("DEV", "DEV", None):
        loaded = load_specs_with_sources(tmp_path, environment)
        deploy(store, [spec for _, spec in loaded], BUILTIN, [source for source, _ in loaded])

    with store.read() as conn:
        found = [(op.configuration_id, op.environment) for op in list_operations(conn)]
    assert found == [("load_DEV", "DEV"), ("prepare_DEV", "DEV"), ("load_PROD", "PROD")]


# --- set_status ---------------------------------------------------------------------------------------------------


@contextmanager
def logged(name: str) -> Iterator[list[str]]:
    """The messages logger `name` emits at INFO or above while the block runs, whatever handlers the process has."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_set_status_deactivates_archives_and_unarchives_and_launch_follows(store: Store) -> None:
    make_account(store)
    (deployed,) = deploy(store, [tasks_spec("a")], BUILTIN)
    op_id = deployed.operation_id
    service = RunService(store)
    first = service.cancel(service.launch(LaunchRequest(op_id)).id)
    with store.read() as conn:
        created = get_operation(conn, op_id)

    with logged("runyard.operations") as lines:  # the serve process logs `runyard.*` at INFO: who and when
        inactive = set_status(store, op_id, activated=False, archived=False, changed_by="ada (user 1)")
    with pytest.raises(Conflict) as refused:
        service.launch(LaunchRequest(op_id))
    with pytest.raises(Conflict) as refused_retry:
        service.retry(first.id)  # Canceled and the latest: only the state stops it
    archived = set_status(store, op_id, activated=False, archived=True)
    with pytest.raises(Conflict) as refused_archived:
        service.launch(LaunchRequest(op_id))

    assert inactive.state is OperationState.INACTIVE
    assert inactive.updated_at > created.updated_at
    assert lines == [f"operation {op_id} (a, DEV) changed by ada (user 1): Active -> Inactive"]
    assert str(refused.value) == str(refused_retry.value) == DEACTIVATED.format("a")
    assert (archived.state, archived.activated) == (OperationState.ARCHIVED, False)
    assert str(refused_archived.value) == ARCHIVED.format("a")
    with store.read() as conn:  # its runs stay readable
        page = list_runs(conn, RunQuery(account_id=None, operation_id=op_id))
        assert [run.id for run in page.items] == [first.id]
    assert service.get_run(first.id).status is RunStatus.CANCELED

    with pytest.raises(InvalidInput, match="an archived operation is always deactivated"):
        set_status(store, op_id, activated=True, archived=True)
    same = set_status(store, op_id, activated=False, archived=True)
    active = set_status(store, op_id, activated=True, archived=False)

    assert same == archived  # nothing written, updated_at included
    assert active.state is OperationState.ACTIVE
    assert service.retry(first.id).retry_of == first.id


def test_set_status_of_another_accounts_operation_is_not_found(store: Store) -> None:
    make_account(store)
    create_account(store, "other")
    (theirs,) = deploy(store, [tasks_spec("theirs").model_copy(update={"account": "other"})], BUILTIN)

    with pytest.raises(NotFound):
        set_status(store, theirs.operation_id, activated=False, archived=False, account=1)
    with store.read() as conn:
        assert get_operation(conn, theirs.operation_id).state is OperationState.ACTIVE


def test_list_filters_by_type_environment_and_state(store: Store) -> None:
    make_account(store)
    deployed = deploy(store, [api_spec("hr"), tasks_spec("a"), tasks_spec("b", "PROD"), tasks_spec("c")], BUILTIN)
    hr, a, b, c = (item.operation_id for item in deployed)
    set_status(store, a, activated=False, archived=False)
    set_status(store, b, activated=False, archived=True)

    def ids(**where: Any) -> list[int]:
        with store.read() as conn:
            return [op.id for op in list_operations(conn, where=OperationFilter(**where))]

    assert ids() == [hr, a, c]
    assert ids(include_archived=True) == [hr, a, b, c]
    assert ids(state=OperationState.ACTIVE) == [hr, c]
    assert ids(state=OperationState.INACTIVE) == [a]
    assert ids(state=OperationState.ARCHIVED) == [b]
    assert ids(configuration_type="api-to-table") == [hr]
    assert ids(environment="PROD") == [hr]
    assert ids(environment="PROD", include_archived=True) == [hr, b]
    assert ids(configuration_type="tasks", state=OperationState.ACTIVE, environment="DEV") == [c]
    with store.read() as conn:
        assert [op.id for op in list_operations(conn)] == [hr, a, b, c]  # no filter: the runs' source lists


# --- the native API -----------------------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


def set_state(client: httpx.Client, op_id: int, activated: bool, archived: bool) -> httpx.Response:
    return client.post(f"/api/v1/operations/{op_id}/status", json={"activated": activated, "archived": archived})


def listed(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/api/v1/operations", params=params)
    assert response.status_code == 200, response.text
    return [op["configuration_id"] for op in response.json()]


def test_api_deactivated_operations_answer_409_with_why_until_activated(stack: RestStack) -> None:
    op_id = stack.deploy("slow", [long_task("wait")])
    admin, operator = stack.as_user("default", "administrator"), stack.as_user("default", "operator")
    created = admin.get(f"/api/v1/operations/{op_id}").json()

    deactivated = set_state(admin, op_id, False, False)
    refused = operator.post(f"/api/v1/operations/{op_id}/runs", json={"type": "incremental"})

    assert deactivated.status_code == 200, deactivated.text
    body = deactivated.json()
    assert (body["id"], body["activated"], body["archived"], body["state"]) == (op_id, False, False, "inactive")
    assert body["updated_at"] > created["updated_at"]
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {"detail": DEACTIVATED.format("slow")}
    assert admin.get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 0  # nothing recorded
    assert admin.get("/api/v1/operations").json()[0]["state"] == "inactive"  # still listed

    activated = set_state(admin, op_id, True, False)
    run = stack.launch(operator, op_id)

    assert activated.json()["state"] == "active"
    assert run["operation_id"] == op_id
    operator.post(f"/api/v1/runs/{run['id']}/cancel")


def test_api_archived_operations_leave_the_list_but_their_runs_stay_readable(stack: RestStack) -> None:
    op_id = stack.deploy("quick", QUICK)
    kept = stack.deploy("kept", QUICK)
    admin = stack.as_user("default", "administrator")
    run = stack.launch(admin, op_id)
    assert stack.wait_status(admin, run["id"])["status"] == "completed"

    archived = set_state(admin, op_id, False, True)

    assert archived.status_code == 200, archived.text
    assert (archived.json()["state"], archived.json()["activated"]) == ("archived", False)
    assert listed(admin) == ["kept"]
    assert listed(admin, archived="true") == ["quick", "kept"]
    assert listed(admin, state="archived") == ["quick"]
    assert listed(admin, state="active") == ["kept"]
    assert admin.get(f"/api/v1/operations/{op_id}").json()["state"] == "archived"
    assert [item["id"] for item in admin.get("/api/v1/runs").json()["items"]] == [run["id"]]
    assert admin.get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 1
    assert admin.get(f"/api/v1/runs/{run['id']}").json()["status"] == "completed"
    assert admin.get(f"/api/v1/runs/{run['id']}/tasks").json()["total"] == 2
    relaunch = admin.post(f"/api/v1/operations/{op_id}/runs", json={})
    assert (relaunch.status_code, relaunch.json()) == (409, {"detail": ARCHIVED.format("quick")})

    both = set_state(admin, op_id, True, True)
    assert both.status_code == 400
    assert "an archived operation is always deactivated" in both.json()["detail"]
    assert admin.get(f"/api/v1/operations/{op_id}").json()["state"] == "archived"
    unarchived = set_state(admin, op_id, False, False)
    assert unarchived.json()["state"] == "inactive"
    assert listed(admin) == ["quick", "kept"]
    assert admin.get(f"/api/v1/operations/{kept}").json()["state"] == "active"  # untouched all along


@SQLITE_ONLY
def test_api_only_administrators_change_a_state_and_only_in_their_account(stack: RestStack) -> None:
    op_id = stack.deploy("quick", QUICK)
    theirs = stack.deploy("theirs", QUICK, account="other")

    for role in ("operator", "viewer"):
        refused = set_state(stack.as_user("default", role), op_id, False, False)
        assert refused.status_code == 403, (role, refused.text)
        assert isinstance(refused.json()["detail"], str)
    foreign = set_state(stack.as_user("default", "administrator"), theirs, False, True)
    no_body = stack.as_user("default", "administrator").post(f"/api/v1/operations/{theirs}/status")

    assert foreign.status_code == 404
    assert foreign.json() == {"detail": f"operation {theirs} not found"}
    assert no_body.status_code == 404
    assert stack.as_user("default", "viewer").get(f"/api/v1/operations/{op_id}").json()["state"] == "active"
    assert stack.as_user("other", "viewer").get(f"/api/v1/operations/{theirs}").json()["state"] == "active"


@SQLITE_ONLY
def test_api_filters_and_bad_input_get_a_clear_4xx(stack: RestStack) -> None:
    stack.deploy("quick", QUICK)
    deploy(stack.store, [api_spec("hr"), tasks_spec("nightly", "PROD")], stack.runtime.registry)
    admin = stack.as_user("default", "administrator")

    assert listed(admin, type="api-to-table") == ["hr"]
    assert listed(admin, type="tasks", environment="PROD") == ["nightly"]
    assert listed(admin, environment="QA") == []
    cases: list[tuple[str, str, dict[str, Any], Any, int, str]] = [
        ("GET", "/api/v1/operations", {"type": "nope"}, None, 400, "'nope' is not a configuration type"),
        ("GET", "/api/v1/operations", {"environment": "dev"}, None, 400, "'dev' is not an environment name"),
        ("GET", "/api/v1/operations", {"state": "sleeping"}, None, 400, "query.state"),
        ("GET", "/api/v1/operations", {"archived": "perhaps"}, None, 400, "query.archived"),
        ("POST", "/api/v1/operations/1/status", {}, None, 400, '{"activated": true or false'),
        ("POST", "/api/v1/operations/1/status", {}, {"activated": "maybe", "archived": False}, 400, "activated"),
        ("POST", "/api/v1/operations/1/status", {}, {"activated": True}, 400, "archived"),
        ("POST", "/api/v1/operations/1/status", {}, {"activated": True, "archived": False, "x": 1}, 400, "x"),
        ("POST", "/api/v1/operations/0/status", {}, {"activated": True, "archived": False}, 400, "path.operation_id"),
        ("POST", "/api/v1/operations/99999/status", {}, {"activated": True, "archived": False}, 404, "not found"),
    ]
    for method, path, params, body, status, words in cases:
        response = admin.request(method, path, params=params, json=body)
        assert response.status_code == status, (path, params, body, response.text)
        assert words in response.json()["detail"], (path, params, body, response.text)


@SQLITE_ONLY
def test_the_openapi_document_describes_the_status_endpoint_and_the_filters(stack: RestStack) -> None:
    schema = httpx.get(f"{stack.base_url}/openapi.json").json()

    status = schema["paths"]["/api/v1/operations/{operation_id}/status"]["post"]
    listing = schema["paths"]["/api/v1/operations"]["get"]
    launch = schema["paths"]["/api/v1/operations/{operation_id}/runs"]["post"]

    assert {"200", "400", "401", "403", "404", "409"} <= set(status["responses"])
    assert "422" not in status["responses"]  # bad input is 400 under /api/v1/
    # Required, the two flags as JSON booleans, {true, true} documented as refused (test_openapi_contract.py).
    assert status["requestBody"]["required"] is True
    body = status["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["activated", "archived"]
    assert body["additionalProperties"] is False
    assert body["not"] == {"properties": {"activated": {"const": True}, "archived": {"const": True}}}
    assert [param["name"] for param in listing["parameters"]] == ["type", "environment", "state", "archived"]
    assert schema["components"]["schemas"]["OperationState"]["enum"] == ["active", "inactive", "archived"]
    assert "state" in schema["components"]["schemas"]["OperationPublic"]["required"]
    conflict = launch["responses"]["409"]["content"]["application/json"]["schema"]["anyOf"]
    assert {item["$ref"].rsplit("/", 1)[1] for item in conflict} == {"RejectedRun", "ConflictDetail"}


# --- the Sources page ---------------------------------------------------------------------------------------------


@pytest.fixture
def clients() -> Iterator[list[UiClient]]:
    opened: list[UiClient] = []
    yield opened
    for client in opened:
        client.close()


def as_ui(stack: RestStack, clients: list[UiClient], role: str) -> UiClient:
    client = signed_in(stack, "default", role)
    clients.append(client)
    return client


def flash(page: str) -> str:
    found = re.search(r'<p class="flash flash-(?:notice|error)"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, "the page shows no message"
    return html.unescape(found.group(1))


def row(page: str, op_id: int) -> str:
    found = re.search(rf'<tr data-operation-id="{op_id}".*?</tr>', page, re.S)
    assert found is not None, f"operation {op_id} is not on the page"
    return found.group(0)


def shown_ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-operation-id="(\d+)"', page)]


@SQLITE_ONLY
def test_sources_an_administrator_deactivates_and_the_launch_button_goes(
    stack: RestStack, clients: list[UiClient]
) -> None:
    op_id = stack.deploy("slow", [long_task("wait")])
    other = stack.deploy("other", QUICK)
    admin = as_ui(stack, clients, "administrator")
    here = "/sources?environment=DEV"
    before = admin.get(here).text
    assert f'action="/sources/{op_id}/deactivate"' in row(before, op_id)
    assert f'action="/sources/{op_id}/archive"' in row(before, op_id)
    assert ">Active<" in row(before, op_id)

    response = admin.post_form(here, f"/sources/{op_id}/deactivate", {"next": here})

    assert response.headers["location"] == here  # back to the filtered view
    page = admin.follow(response).text
    assert flash(page) == "Source slow (DEV) is now Inactive."
    assert ">Inactive<" in row(page, op_id)
    assert f'action="/sources/{op_id}/launch"' not in page
    assert f'action="/sources/{other}/launch"' in page
    assert f'action="/sources/{op_id}/activate"' in row(page, op_id)
    refused = admin.post_form("/sources", f"/sources/{op_id}/launch", {"type": "incremental"})
    assert flash(admin.follow(refused).text) == f"Not launched: {DEACTIVATED.format('slow')}"
    assert stack.as_user("default", "viewer").get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 0

    activated = admin.follow(admin.post_form("/sources", f"/sources/{op_id}/activate"))
    assert flash(activated.text) == "Source slow (DEV) is now Active."
    assert f'action="/sources/{op_id}/launch"' in activated.text


@SQLITE_ONLY
def test_sources_operators_and_viewers_see_no_state_buttons_and_are_refused(
    stack: RestStack, clients: list[UiClient]
) -> None:
    op_id = stack.deploy("quick", QUICK)

    for role in ("operator", "viewer"):
        client = as_ui(stack, clients, role)
        page = client.get("/sources").text
        for action in ("activate", "deactivate", "archive"):
            assert f"/sources/{op_id}/{action}" not in page, (role, action)
        for action in ("deactivate", "archive"):
            refused = client.post_form("/sources", f"/sources/{op_id}/{action}")
            message = flash(client.follow(refused).text)
            assert message == f"Your role ({role}) cannot activate, deactivate or archive sources.", message
    assert stack.as_user("default", "viewer").get(f"/api/v1/operations/{op_id}").json()["state"] == "active"


@SQLITE_ONLY
def test_sources_filters_live_in_the_address_and_archived_sources_are_shown_on_request(
    stack: RestStack, clients: list[UiClient]
) -> None:
    quick = stack.deploy("quick", QUICK)
    (hr,) = deploy(stack.store, [api_spec("hr")], stack.runtime.registry)
    admin_api = stack.as_user("default", "administrator")
    run = stack.launch(admin_api, quick)
    stack.wait_status(admin_api, run["id"])
    client = as_ui(stack, clients, "administrator")

    archived = client.follow(client.post_form("/sources", f"/sources/{quick}/archive"))

    assert "Source quick (DEV) is now Archived." in flash(archived.text)
    assert shown_ids(archived.text) == [hr.operation_id]
    only_archived = client.get("/sources?state=archived").text
    assert shown_ids(only_archived) == [quick]
    assert ">Archived<" in row(only_archived, quick)
    assert f'action="/sources/{quick}/activate"' in row(only_archived, quick)
    assert ">Unarchive<" in row(only_archived, quick)
    assert 'hx-get="/sources?state=archived"' in only_archived  # the live refresh keeps the filters
    assert '<option value="archived" selected>' in only_archived
    assert shown_ids(client.get("/sources?state=all").text) == [quick, hr.operation_id]
    assert shown_ids(client.get("/sources?type=api-to-table&environment=PROD").text) == [hr.operation_id]
    assert "No source matches these filters." in client.get("/sources?environment=QA").text
    assert f'data-run-id="{run["id"]}"' in client.get("/runs").text  # its runs stay on API Runs
    assert client.get(f"/runs/{run['id']}").status_code == 200
    assert f'<option value="{quick}"' in client.get("/runs").text  # and it can still be picked there


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=sleeping", "state 'sleeping' is not one of: active, inactive, archived, all"),
        ("type=nope", "'nope' is not a configuration type"),
        ("environment=dev", "'dev' is not an environment name"),
    ],
)
def test_sources_bad_filters_are_a_400_page_that_says_what_is_wrong(
    stack: RestStack, clients: list[UiClient], query: str, words: str
) -> None:
    response = as_ui(stack, clients, "viewer").get(f"/sources?{query}")

    assert response.status_code == 400
    assert words in html.unescape(response.text)
    assert "Traceback" not in response.text
