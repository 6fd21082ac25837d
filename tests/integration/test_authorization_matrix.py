"""The authorization matrix, generated from the app's own /openapi.json (RELIABILITY S1, S2, S17).

Every operation (path x method) is called as each of: anonymous, a viewer, an operator, an administrator, another
account's administrator, and the administrator's API token (as a bearer). `NEEDS` says, as data, what each
operation needs: "public", or the least role. The answers expected:

- anonymous: 401 with the "not provided" detail on every operation but the public ones;
- a role below the need: 403 with the exact detail naming the role and what the operation needs;
- another account's administrator on an operation naming one of this account's objects: 404;
- everyone allowed: an answer that is neither 401, 403 nor 5xx (the request itself may still be refused, 4xx).

An operation in the OpenAPI that `NEEDS` does not list fails the test: a new route must be given its entry.
Requests that change state use objects made for them (a user, a token, a channel, a rule of their own), or leave
things as they were (activate an active operation); DELETEs go last.

The UI: every page (GET) sends an anonymous visitor to /login and shows a viewer a page; every form (POST) that
needs an operator or an administrator sends a viewer (and an operator, for the administrators' forms) back with
"Your role (...) cannot ...".
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Route

from runyard.app import create_app
from runyard.ui import routes as ui_routes
from tests.factories import sleep_task
from tests.integration.rest_harness import MISSING, PASSWORD, RestStack, database, long_task, rest_stack
from tests.integration.ui_client import UiClient, csrf_of, signed_in

pytestmark = pytest.mark.slow

PUBLIC, VIEWER, OPERATOR, ADMIN = "public", "viewer", "operator", "administrator"
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}
NEEDED_WORDS = {OPERATOR: "operator or administrator", ADMIN: "administrator"}

#: What every operation of /openapi.json needs: "public" or the least role.
NEEDS: dict[str, str] = {
    "GET /healthz": PUBLIC,
    "POST /api/v1/auth/token": PUBLIC,
    "POST /rest/v1/token-auth/issue": PUBLIC,
    "GET /api/v1/operations": VIEWER,
    "GET /api/v1/operations/{operation_id}": VIEWER,
    "POST /api/v1/operations/{operation_id}/status": ADMIN,
    "POST /api/v1/operations/{operation_id}/runs": OPERATOR,
    "GET /api/v1/operations/{operation_id}/workflow": VIEWER,
    "POST /api/v1/operations/{operation_id}/workflow/reset": OPERATOR,
    "GET /api/v1/runs": VIEWER,
    "GET /api/v1/runs/{run_id}": VIEWER,
    "GET /api/v1/runs/{run_id}/tasks": VIEWER,
    "GET /api/v1/runs/{run_id}/events": VIEWER,
    "POST /api/v1/runs/{run_id}/retry": OPERATOR,
    "POST /api/v1/runs/{run_id}/cancel": OPERATOR,
    "GET /api/v1/loads": VIEWER,
    "GET /api/v1/alerts": VIEWER,
    "GET /api/v1/alerts/{alert_id}": VIEWER,
    "POST /api/v1/alerts/{alert_id}/silence": ADMIN,
    "DELETE /api/v1/alerts/{alert_id}/silence": ADMIN,
    "GET /api/v1/users": ADMIN,
    "POST /api/v1/users": ADMIN,
    "DELETE /api/v1/users/{user_id}": ADMIN,
    "GET /api/v1/tokens": ADMIN,
    "POST /api/v1/tokens": ADMIN,
    "DELETE /api/v1/tokens/{token_id}": ADMIN,
    "POST /api/v1/sql": OPERATOR,
    "DELETE /api/v1/sql/{query_id}": OPERATOR,
    "GET /api/v1/sql/tables": OPERATOR,
    "GET /api/v1/notifications/channels": ADMIN,  # webhook URLs are secrets
    "POST /api/v1/notifications/channels": ADMIN,
    "DELETE /api/v1/notifications/channels/{channel_id}": ADMIN,
    "POST /api/v1/notifications/channels/{channel_id}/test": ADMIN,
    "GET /api/v1/notifications/rules": ADMIN,
    "POST /api/v1/notifications/rules": ADMIN,
    "DELETE /api/v1/notifications/rules/{rule_id}": ADMIN,
    "GET /api/v1/notifications/deliveries": VIEWER,
    "GET /api/v1/bulk_metadata/job/": VIEWER,
    "GET /etl/rest/v1/tasks/": ADMIN,
    "GET /etl/rest/v1/tasks/{audit_id}/": ADMIN,
    "GET /api/integrations/v2/biviews/{view}": OPERATOR,
    "GET /api/integrations/v2/biviews-status": OPERATOR,
    "GET /api/integrations/v2/biviews-status/{task_id}": OPERATOR,
    "DELETE /api/integrations/v2/biviews-status/{task_id}": OPERATOR,
    "GET /api/integration/v2/biviews/{view}": OPERATOR,
    "GET /api/integration/v2/biviews-status": OPERATOR,
    "GET /api/integration/v2/biviews-status/{task_id}": OPERATOR,
    "DELETE /api/integration/v2/biviews-status/{task_id}": OPERATOR,
    "POST /v1/dag/launch": OPERATOR,
    "POST /v1/dag/status": VIEWER,
    "POST /v1/workflow/status": OPERATOR,
    "POST /v1/configuration/status": ADMIN,
    "GET /v1/auth/whoami": VIEWER,
}

#: The UI's forms (POST) and the least role each needs; pages (GET) need a signed-in user of any role.
UI_FORMS: dict[str, str] = {
    "/login": PUBLIC,
    "/logout": VIEWER,
    "/alerts/{alert_id}/silence": ADMIN,
    "/alerts/{alert_id}/unsilence": ADMIN,
    "/attention/retry": OPERATOR,
    "/exports": OPERATOR,
    "/exports/{task_id}/cancel": OPERATOR,
    "/runs/{run_id}/retry": OPERATOR,
    "/runs/{run_id}/cancel": OPERATOR,
    "/sources/{operation_id}/launch": OPERATOR,
    "/sources/{operation_id}/activate": ADMIN,
    "/sources/{operation_id}/deactivate": ADMIN,
    "/sources/{operation_id}/archive": ADMIN,
    "/sources/{operation_id}/workflow/reset": OPERATOR,
    "/sql": OPERATOR,
    "/sql/stop": OPERATOR,
    "/sql/csv": OPERATOR,
}
UI_PUBLIC_PAGES = {"/login", "/static/sql.js", "/static/sql.css"}
#: Pages that do not show a viewer a page (200), and what they answer instead.
UI_VIEWER_ANSWERS: dict[str, int] = {
    "/": 303,  # the front door sends everyone on to /sources (which sends an anonymous visitor to /login)
    "/sql": 403,  # the SQL Explorer is an operator's: the page refuses a viewer
    "/exports/{task_id}/pages/{number}": 404,  # an export is its starter's (the administrator's here)
    "/sources/{operation_id}/workflow": 404,  # the operation named is not a workflow
}


# --- the data set ---------------------------------------------------------------------------------------------------


@dataclass
class Matrix:
    stack: RestStack
    app: FastAPI
    ids: dict[str, str]  # path parameter -> one of account "default"'s objects
    api_token: str

    def clients(self) -> dict[str, httpx.Client]:
        stack = self.stack
        return {
            "anonymous": stack.client(),
            VIEWER: stack.as_user("default", VIEWER),
            OPERATOR: stack.as_user("default", OPERATOR),
            ADMIN: stack.as_user("default", ADMIN),
            "other administrator": stack.as_user("other", ADMIN),
            "api token": stack.client(self.api_token),
        }


def _objects(stack: RestStack) -> tuple[dict[str, str], str]:
    """Account "default"'s objects the paths name (each made for this test), and its administrator's API token."""
    admin = stack.as_user("default", ADMIN)
    done = stack.deploy("matrix-done", [sleep_task("first", 0.05)])
    broken = stack.deploy("matrix-broken", [{"name": "boom", "executor": "fail", "params": {"message": "broke"}}])
    stack.deploy("matrix-slow", [long_task("wait")])
    run = stack.wait_status(admin, stack.launch(admin, done)["id"])
    stack.wait_status(admin, stack.launch(admin, broken)["id"])
    with stack.store.read() as conn:
        now = stack.store.now(conn)
    stack.runtime.alert_evaluator().evaluate(now)
    alerts = admin.get("/api/v1/alerts").json()["items"]
    assert alerts, "the failed run raised an alert"
    user = admin.post("/api/v1/users", json={"login": "matrix-doomed", "password": PASSWORD, "role": VIEWER})
    doomed_token = admin.post("/api/v1/tokens", json={"name": "matrix-doomed"})
    api_token = admin.post("/api/v1/tokens", json={"name": "matrix"})
    channel = admin.post(
        "/api/v1/notifications/channels",
        json={"name": "matrix", "kind": "webhook", "target": "https://hooks.example/matrix"},
    )
    rule = admin.post("/api/v1/notifications/rules", json={"channel_id": channel.json()["id"]})
    for created in (user, doomed_token, api_token, channel, rule):
        assert created.status_code == 201, created.text
    warehouses = stack.runtime.warehouses
    assert warehouses is not None
    warehouses.for_account("default").query("CREATE TABLE IF NOT EXISTS matrix_export AS SELECT 1 AS x")
    first = admin.get("/api/integrations/v2/biviews/matrix_export", params={"pagenum": 1})
    assert first.status_code == 200, first.text
    ids = {
        "operation_id": str(done),
        "run_id": str(run["id"]),
        "audit_id": str(run["id"]),
        "alert_id": str(alerts[0]["id"]),
        "user_id": str(user.json()["id"]),
        "token_id": str(doomed_token.json()["id"]),
        "channel_id": str(channel.json()["id"]),
        "rule_id": str(rule.json()["id"]),
        "query_id": "matrix-query",
        "view": "matrix_export",
        "task_id": first.headers["continuation-token"],
    }
    return ids, str(api_token.json()["token"])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    directory = tmp_path_factory.mktemp("matrix")
    with database("sqlite", directory, lambda: "") as url, rest_stack(directory / "home", url) as stack:
        ids, api_token = _objects(stack)
        yield Matrix(stack, create_app(stack.runtime), ids, api_token)


# --- the API --------------------------------------------------------------------------------------------------------


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation: reads first, then writes, DELETEs last."""
    found = [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    order = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}
    # Rules before channels (deleting a channel takes its rules), sessions' DELETEs after their GETs.
    return sorted(found, key=lambda op: (order[op[0]], "channels" in op[1]))


def _body(method: str, path: str, who: str) -> dict[str, Any] | None:
    """A body the operation accepts, so that an allowed caller's answer is about the request, not its shape."""
    slug = re.sub(r"[^a-z]+", "-", who)
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/auth/token": {"login": "vic", "password": PASSWORD},
        "/rest/v1/token-auth/issue": {"login": "vic", "password": PASSWORD},
        "/api/v1/operations/{operation_id}/status": {"activated": True, "archived": False},
        "/api/v1/operations/{operation_id}/runs": {"type": "incremental"},
        "/api/v1/alerts/{alert_id}/silence": {"minutes": 60},
        "/api/v1/users": {"login": f"matrix-{slug}", "password": PASSWORD, "role": VIEWER},
        "/api/v1/tokens": {"name": f"matrix-{slug}"},
        "/api/v1/sql": {"sql": "SELECT 1 AS one"},
        "/api/v1/notifications/channels": {
            "name": f"matrix-{slug}",
            "kind": "webhook",
            "target": "https://hooks.example/x",
        },
        "/v1/dag/launch": {"action": "launch_job", "account": "default", "environment": "DEV"},
        "/v1/dag/status": {"action": "get_last_status", "account": "default", "environment": "DEV"},
        "/v1/workflow/status": {"action": "reset_workflow_status", "account": "default", "environment": "DEV"},
        "/v1/configuration/status": {"action": "set_configuration_status", "account": "default"},
    }
    if method == "POST" and path == "/api/v1/notifications/rules":
        return {"channel_id": 1}  # the channel is checked after the role
    return bodies.get(path) if method in {"POST", "PUT", "PATCH"} else None


def _params(path: str) -> dict[str, str] | None:
    return {"id": "1"} if path == "/api/v1/bulk_metadata/job/" else None


def _call(client: httpx.Client, method: str, path: str, url: str, who: str) -> httpx.Response:
    # Streamed and closed at the headers: the events stream of a run stays open while the run is active.
    with client.stream(method, url, json=_body(method, path, who), params=_params(path)) as response:
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
    return response


def _message(response: httpx.Response) -> Any:
    body = response.json()
    return body.get("detail", body.get("message"))


def _wrong(who: str, need: str, names_object: bool, response: httpx.Response) -> str | None:
    """Why `response` is not the matrix's answer for `who` on an operation needing `need`; None when it is."""
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:200]}"
    if need == PUBLIC:
        return None if status not in (401, 403) else f"{status} on a public operation"
    if who == "anonymous":
        ok = status == 401 and _message(response) == MISSING["detail"]
        return None if ok else f"{status} {response.text[:200]} (wanted 401 {MISSING['detail']})"
    if who == "other administrator" and names_object:
        return None if status == 404 else f"{status} {response.text[:200]} (wanted 404: another account's object)"
    role = who if who in RANK else ADMIN  # the API token is the administrator's
    if RANK[role] < RANK[need]:
        detail = f"Your role ({role}) cannot do this: it needs {NEEDED_WORDS[need]}"
        ok = status == 403 and _message(response) == detail
        return None if ok else f"{status} {response.text[:200]} (wanted 403 {detail})"
    return None if status not in (401, 403) else f"{status} {response.text[:200]} (allowed)"


def test_every_operation_answers_each_caller_as_the_matrix_says(matrix: Matrix) -> None:
    operations = _operations(matrix.app)
    unlisted = [f"{method} {path}" for method, path in operations if f"{method} {path}" not in NEEDS]
    assert not unlisted, f"new route without an authorization entry: {', '.join(unlisted)}"
    stale = set(NEEDS) - {f"{method} {path}" for method, path in operations}
    assert not stale, f"entries for routes that are gone: {sorted(stale)}"
    clients = matrix.clients()
    wrong: dict[str, str] = {}
    for method, path in operations:
        names = re.findall(r"\{([^}]+)\}", path)
        url = path
        for name in names:
            url = url.replace(f"{{{name}}}", matrix.ids[name])
        for who, client in clients.items():
            why = _wrong(who, NEEDS[f"{method} {path}"], bool(names), _call(client, method, path, url, who))
            if why is not None:
                wrong[f"{method} {path} as {who}"] = why
    assert len(operations) * len(clients) >= 300
    assert not wrong, "\n".join(f"{key}: {why}" for key, why in wrong.items())


# --- the UI ---------------------------------------------------------------------------------------------------------


def _ui_routes(method: str) -> list[str]:
    """The paths of the UI's routes (every module of runyard.ui.routes) that answer `method`."""
    paths = set()
    for module_info in pkgutil.iter_modules(ui_routes.__path__):
        router = getattr(importlib.import_module(f"{ui_routes.__name__}.{module_info.name}"), "router", None)
        if isinstance(router, APIRouter):
            paths |= {route.path for route in router.routes if isinstance(route, Route) and method in route.methods}
    return sorted(paths)


def _ui_url(matrix: Matrix, path: str, client: UiClient | None = None) -> str:
    values = dict(matrix.ids, number="1")
    if "{task_id}" in path and path.startswith("/runs/"):
        tasks = matrix.stack.as_user("default", ADMIN).get(f"/api/v1/runs/{matrix.ids['run_id']}/tasks")
        values["task_id"] = str(tasks.json()["items"][0]["id"])
    return re.sub(r"\{([^}]+)\}", lambda found: values[found.group(1)], path)


def test_every_page_sends_anonymous_visitors_to_login_and_shows_a_viewer_a_page(matrix: Matrix) -> None:
    pages = _ui_routes("GET")
    assert {"/runs", "/sources", "/alerts", "/sql"} <= set(pages), pages
    anonymous = UiClient(matrix.stack.base_url)
    viewer = signed_in(matrix.stack, "default", VIEWER)
    wrong: dict[str, str] = {}
    try:
        for path in pages:
            url = _ui_url(matrix, path)
            refused = anonymous.get(url)
            shown = viewer.get(url)
            if path in UI_PUBLIC_PAGES:
                if refused.status_code != 200:
                    wrong[f"GET {path} anonymous"] = f"{refused.status_code} (a public page)"
                continue
            to_login = refused.headers.get("location", "").startswith("/login") or path == "/"
            if refused.status_code != 303 or not to_login:
                wrong[f"GET {path} anonymous"] = f"{refused.status_code} {refused.headers.get('location')}"
            if shown.status_code != UI_VIEWER_ANSWERS.get(path, 200):
                wrong[f"GET {path} viewer"] = f"{shown.status_code} {shown.headers.get('location')}"
    finally:
        anonymous.close()
        viewer.close()
    assert not wrong, wrong


def test_every_form_refuses_a_role_below_its_need(matrix: Matrix) -> None:
    forms = _ui_routes("POST")
    assert len(forms) >= 15, forms
    unlisted = [path for path in forms if path not in UI_FORMS]
    assert not unlisted, f"new form without an authorization entry: {', '.join(unlisted)}"
    wrong: dict[str, str] = {}
    for role in (VIEWER, OPERATOR):
        client = signed_in(matrix.stack, "default", role)
        try:
            csrf = csrf_of(client.get("/runs").text)
            for path in forms:
                need = UI_FORMS[path]
                if need == PUBLIC or RANK[role] >= RANK[need]:
                    continue
                response = client.http.post(_ui_url(matrix, path), data={"csrf_token": csrf})
                if response.status_code == 403:  # a script's endpoint (no page to go back to): refused outright
                    continue
                if response.status_code != 303:
                    wrong[f"POST {path} as {role}"] = f"{response.status_code} {response.text[:200]}"
                    continue
                shown = client.follow(response)
                if f"Your role ({role}) cannot" not in shown.text:
                    wrong[f"POST {path} as {role}"] = f"no refusal at {response.headers['location']}"
        finally:
            client.close()
    assert not wrong, wrong
