"""The REST API over real HTTP, on one shared data set per backend: lists, filters, sorts, pages, search,
job status (spec 002), credentials (spec 001, spec 002), roles and the wall between accounts.

Nothing here changes the data set (a test that would, on a bug, fails anyway), so the `world` is built
once per backend: account "default" (A) with completed, failed, Completed with Errors, canceled, running
and rejected runs, and account "other" (B) with a completed run that made a data load, a failed run
(retryable), a running run (cancelable), its users and an API token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from runyard.app import create_app
from tests.conftest import BACKENDS
from tests.factories import sleep_task
from tests.integration.rest_harness import (
    FAILED,
    MISSING,
    RestStack,
    all_items,
    bearer,
    database,
    long_task,
    rest_stack,
)

Item = dict[str, Any]
CWE_ERROR = "Line 1. Key: schema_b. Datasource id in key does not match the id in the request"
SEARCH_TASKS = {
    "mc": {"Metadata Consolidation [employees]"},  # rule 1: acronym (initials start with)
    "MC": {"Metadata Consolidation [employees]"},
    "pto": {"Process [time_off]"},  # rule 1: an underscore is a word boundary too
    "consolidation": {"Metadata Consolidation [employees]", "employees Consolidation"},  # rule 2: name contains
    "waiting": {"Publish results"},  # rule 3: status label starts with
    "people": {"employees Consolidation"},  # rule 4: a table name contains
    "refused": {"Check quotas"},  # rule 5: a message contains
}


# --- the data set -------------------------------------------------------------------------------------------------


@dataclass
class World:
    stack: RestStack
    a_ops: dict[str, int]
    a_runs: dict[str, Item]
    b_ops: dict[str, int]
    b_runs: dict[str, Item]
    b_user_ids: list[int]
    b_token_ids: list[int]
    a_api_token: str
    b_alerting: dict[str, list[int]] = field(default_factory=dict)  # alert_id, channel_id, rule_id: B's own
    kind: str = "sqlite"

    @property
    def admin(self) -> httpx.Client:
        return self.stack.as_user("default", "administrator")

    @property
    def b_admin(self) -> httpx.Client:
        return self.stack.as_user("other", "administrator")


def _build_a(stack: RestStack) -> tuple[dict[str, int], dict[str, Item]]:
    ops = {
        "alpha": stack.deploy("alpha", [sleep_task("first", 0.05), sleep_task("second", 0.05, depends_on=["first"])]),
        "beta": stack.deploy("Beta", [{"name": "boom", "executor": "fail", "params": {"message": "beta broke"}}]),
        "cwe": stack.deploy("cwe", _cwe_tasks()),
        "gone": stack.deploy("gone", [long_task("wait")]),
        "search": stack.deploy("search", _search_tasks()),
    }
    admin = stack.as_user("default", "administrator")
    runs = {
        "completed": stack.launch(admin, ops["alpha"], "incremental"),
        "failed": stack.launch(admin, ops["beta"], "incremental"),
        "cwe": stack.launch(admin, ops["cwe"], "destructive"),
        "search": stack.launch(admin, ops["search"], "incremental"),
        "canceled": stack.launch(admin, ops["gone"], "destructive"),
    }
    stack.wait_task(admin, runs["canceled"]["id"], "wait", "running")
    assert admin.post(f"/api/v1/runs/{runs['canceled']['id']}/cancel").status_code == 202
    rejected = admin.post(f"/api/v1/operations/{ops['search']}/runs", json={"type": "destructive"})
    assert rejected.status_code == 409, rejected.text
    runs["rejected"] = rejected.json()["run"]
    runs["completed"] = stack.wait_status(admin, runs["completed"]["id"])
    runs["destructive"] = stack.wait_status(admin, stack.launch(admin, ops["alpha"], "destructive")["id"])
    for label in ("failed", "cwe", "canceled"):
        runs[label] = stack.wait_status(admin, runs[label]["id"])
    stack.wait_task(admin, runs["search"]["id"], "Check quotas", "failed")
    stack.wait_task(admin, runs["search"]["id"], "employees Consolidation", "completed")
    runs["search"] = stack.run(admin, runs["search"]["id"])
    expected = {
        "completed": "completed",
        "destructive": "completed",
        "failed": "failed",
        "cwe": "completed_with_errors",
        "canceled": "canceled",
        "rejected": "rejected",
        "search": "running",
    }
    assert {label: run["status"] for label, run in runs.items()} == expected
    return ops, runs


def _cwe_tasks() -> list[dict[str, Any]]:
    """A run that ends Completed with Errors: a `required: false` task fails, the load depends on it softly."""
    return [
        sleep_task("extract", 0.05, stage="extract", metrics_type="extract", params={"records_per_unit": 5}),
        {"name": "flaky", "executor": "fail", "required": False, "max_attempts": 1, "params": {"message": CWE_ERROR}},
        sleep_task(
            "load",
            0.05,
            stage="load",
            metrics_type="load",
            params={"records_per_unit": 3, "table": "cwe_rows"},
            depends_on=["extract", {"task": "flaky", "soft": True}],  # type: ignore[list-item]
        ),
    ]


def _search_tasks() -> list[dict[str, Any]]:
    """Tasks for each of spec 000's five search rules; `Hold` keeps the run running, `Publish results` waiting."""
    return [
        sleep_task("Metadata Consolidation [employees]", 0.05),
        sleep_task("Process [time_off]", 0.05, params={"records_per_unit": 7}),
        sleep_task("employees Consolidation", 0.05, params={"records_per_unit": 2, "table": "hr_people"}),
        {
            "name": "Check quotas",
            "executor": "fail",
            "required": False,
            "max_attempts": 1,
            "params": {"message": "the vendor refused the payload"},
        },
        long_task("Hold"),
        sleep_task("Publish results", 0.05, depends_on=["Hold"]),
    ]


def _build_b(stack: RestStack) -> tuple[dict[str, int], dict[str, Item], list[int], list[int]]:
    ops = {
        "bravo": stack.deploy(
            "bravo",
            [sleep_task("load", 0.05, stage="load", params={"records_per_unit": 4, "table": "bravo_rows"})],
            account="other",
        ),
        "bravo-fail": stack.deploy("bravo-fail", [{"name": "boom", "executor": "fail"}], account="other"),
        "bravo-slow": stack.deploy("bravo-slow", [long_task("wait")], account="other"),
    }
    b_admin = stack.as_user("other", "administrator")
    runs = {label: stack.launch(b_admin, op_id) for label, op_id in ops.items()}
    runs["bravo"] = stack.wait_status(b_admin, runs["bravo"]["id"])
    runs["bravo-fail"] = stack.wait_status(b_admin, runs["bravo-fail"]["id"])
    stack.wait_task(b_admin, runs["bravo-slow"]["id"], "wait", "running")
    runs["bravo-slow"] = stack.run(b_admin, runs["bravo-slow"]["id"])
    assert [runs[label]["status"] for label in ops] == ["completed", "failed", "running"]
    created = b_admin.post("/api/v1/tokens", json={"name": "b-scripts"})
    assert created.status_code == 201, created.text
    users = b_admin.get("/api/v1/users")
    assert users.status_code == 200, users.text
    return ops, runs, [user["id"] for user in users.json()], [created.json()["id"]]


def _build_b_alerting(stack: RestStack) -> dict[str, list[int]]:
    """B's alert (its failed run's), a notification channel and a rule sending to it."""
    with stack.store.read() as conn:
        now = stack.store.now(conn)
    stack.runtime.alert_evaluator().evaluate(now)
    b_admin = stack.as_user("other", "administrator")
    alerts = b_admin.get("/api/v1/alerts")
    assert alerts.status_code == 200, alerts.text
    alert_ids = [alert["id"] for alert in alerts.json()["items"]]
    assert alert_ids, "B's failed run raised an alert: the 404 checks below mean something"
    channel = b_admin.post(
        "/api/v1/notifications/channels", json={"name": "b-chat", "kind": "webhook", "target": "https://b.example/hook"}
    )
    assert channel.status_code == 201, channel.text
    rule = b_admin.post("/api/v1/notifications/rules", json={"channel_id": channel.json()["id"]})
    assert rule.status_code == 201, rule.text
    return {"alert_id": alert_ids, "channel_id": [channel.json()["id"]], "rule_id": [rule.json()["id"]]}


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kind = str(request.param)
    directory = tmp_path_factory.mktemp(f"rest-read-{kind}")
    with (
        database(kind, directory, lambda: str(request.getfixturevalue("pg_template"))) as url,
        rest_stack(directory / "home", url) as stack,
    ):
        a_ops, a_runs = _build_a(stack)
        b_ops, b_runs, b_users, b_tokens = _build_b(stack)
        b_alerting = _build_b_alerting(stack)
        created = stack.as_user("default", "administrator").post("/api/v1/tokens", json={"name": "a-scripts"})
        assert created.status_code == 201, created.text
        yield World(stack, a_ops, a_runs, b_ops, b_runs, b_users, b_tokens, created.json()["token"], b_alerting, kind)


# --- helpers ------------------------------------------------------------------------------------------------------


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _ids(items: list[Item]) -> list[int]:
    return [int(item["id"]) for item in items]


def expected_order(items: list[Item], key: Callable[[Item], Any], order: str) -> list[int]:
    """The API's documented order: by key, ties by id in the same direction, nulls last either way."""
    present = [item for item in items if key(item) is not None]
    missing = [item for item in items if key(item) is None]
    reverse = order == "desc"
    present.sort(key=lambda item: (key(item), item["id"]), reverse=reverse)
    missing.sort(key=lambda item: item["id"], reverse=reverse)
    return _ids(present + missing)


RUN_SORT_KEYS: dict[str, Callable[[Item], Any]] = {
    "id": lambda run: run["id"],
    "operation": lambda run: run["configuration_id"].lower(),
    "type": lambda run: run["type"],
    "status": lambda run: run["status"],
    "started_at": lambda run: _time(run["started_at"]),
    "completed_at": lambda run: _time(run["completed_at"]),
    "duration": lambda run: run["duration_seconds"],
    "messages": lambda run: run["message_count"],
    "created_at": lambda run: _time(run["created_at"]),
}


def assert_sorted(items: list[Item], key: Callable[[Item], Any], order: str, what: str = "") -> None:
    """Exactly the order of the values shown (durations included: the database sorts the microseconds shown)."""
    assert _ids(items) == expected_order(items, key, order), (what, order, [(item["id"], key(item)) for item in items])


TASK_SORT_KEYS: dict[str, Callable[[Item], Any]] = {
    "position": lambda task: task["position"],
    "name": lambda task: task["name"].lower(),
    "status": lambda task: task["status"],
    "started_at": lambda task: _time(task["started_at"]),
    "duration": lambda task: task["duration_seconds"],
    "records": lambda task: task["records_processed"],
    "messages": lambda task: task["message_count"],
    "attempt": lambda task: task["attempt"],
}


def allowed_sorts(client: httpx.Client, path: str) -> list[str]:
    """The sort keys the 400 for an unknown one names."""
    response = client.get(path, params={"sort": "no_such_column"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    match = re.search(r"allowed: (.+)$", detail)
    assert match, detail
    return [name.strip() for name in match.group(1).split(",")]


def walk_pages(client: httpx.Client, path: str, page_size: int, **params: Any) -> tuple[list[int], int]:
    """The ids of every page at `page_size`, in order, and the total each page reported (all equal)."""
    ids: list[int] = []
    totals: set[int] = set()
    page = 1
    while True:
        response = client.get(path, params={**params, "page": page, "page_size": page_size})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["page"], body["page_size"]) == (page, page_size)
        assert len(body["items"]) <= page_size
        totals.add(body["total"])
        ids.extend(_ids(body["items"]))
        if not body["items"]:
            break
        page += 1
    assert len(totals) == 1, totals
    return ids, totals.pop()


def _initials(name: str) -> str:
    letters = []
    for word in re.split(r"[\s_]+", name.lower()):
        letters.append(next((char for char in word if char.isalnum()), ""))
    return "".join(letters)


def search_matches(task: Item, query: str) -> bool:
    """Spec 000's five rules, as a person reads them, on what the API shows of a task."""
    text = query.strip().lower()
    return (
        _initials(task["name"]).startswith(text)
        or text in task["name"].lower()
        or task["status_label"].lower().startswith(text)
        or any(text in table["name"].lower() for table in task["tables"])
        or any(text in message["text"].lower() for message in task["messages"])
    )


def assert_not_found(response: httpx.Response, *secrets: str) -> None:
    assert response.status_code == 404, f"{response.request.method} {response.request.url}: {response.text}"
    body = response.json()
    assert set(body) == {"detail"}, body
    for secret in secrets:
        assert secret not in response.text


def assert_unauthorized(response: httpx.Response, body: dict[str, str] = FAILED) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == body


# --- runs: filters, sorts, pages ------------------------------------------------------------------------------------


def test_every_runs_filter(world: World) -> None:
    admin = world.admin
    runs = all_items(admin, "/api/v1/runs")
    assert {run["status"] for run in runs} >= {"completed", "failed", "completed_with_errors", "running", "rejected"}

    def check(params: dict[str, Any], keep: Callable[[Item], bool]) -> None:
        found = all_items(admin, "/api/v1/runs", params)
        expected = sorted((run["id"] for run in runs if keep(run)), reverse=True)
        assert _ids(found) == expected, params
        assert expected, f"the data set has no run for {params}: the filter is not exercised"

    for op_id in world.a_ops.values():
        check({"operation": op_id}, field_is("operation_id", op_id))
    for status in {run["status"] for run in runs}:
        check({"status": status}, field_is("status", status))
    for run_type in ("incremental", "destructive"):
        check({"type": run_type}, field_is("type", run_type))
    check({"status": "completed", "type": "destructive"}, field_is("status", "completed", type="destructive"))
    for column in ("started", "completed"):
        values = sorted({run[f"{column}_at"] for run in runs if run[f"{column}_at"]}, key=datetime.fromisoformat)
        middle = values[len(values) // 2]  # a bound equal to a run's own time: bounds are inclusive
        bound = datetime.fromisoformat(middle)
        check({f"{column}_from": middle}, time_within(f"{column}_at", low=bound))
        check({f"{column}_to": middle}, time_within(f"{column}_at", high=bound))
        check({f"{column}_from": middle, f"{column}_to": middle}, time_within(f"{column}_at", low=bound, high=bound))


def field_is(field: str, value: object, **more: object) -> Callable[[Item], bool]:
    wanted = {field: value, **more}
    return lambda run: all(run[name] == expected for name, expected in wanted.items())


def time_within(field: str, low: datetime | None = None, high: datetime | None = None) -> Callable[[Item], bool]:
    """Inclusive bounds; a run without that time never matches a bound on it."""

    def keep(run: Item) -> bool:
        moment = _time(run[field])
        if moment is None:
            return False
        return (low is None or moment >= low) and (high is None or moment <= high)

    return keep


def test_runs_sort_by_every_column_both_ways(world: World) -> None:
    admin = world.admin
    allowed = allowed_sorts(admin, "/api/v1/runs")
    assert sorted(allowed) == sorted(RUN_SORT_KEYS), "a sort key was added or removed: teach this test its column"
    runs = all_items(admin, "/api/v1/runs")
    for sort in allowed:
        for order in ("asc", "desc"):
            response = admin.get("/api/v1/runs", params={"sort": sort, "order": order, "page_size": 200})
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert sorted(_ids(items)) == sorted(_ids(runs)), (sort, order)
            assert_sorted(items, RUN_SORT_KEYS[sort], order, sort)


def test_runs_pages_cover_everything_exactly_once(world: World) -> None:
    admin = world.admin
    every = _ids(all_items(admin, "/api/v1/runs"))
    for params in ({}, {"sort": "status", "order": "asc"}, {"sort": "completed_at", "order": "desc"}):
        full = admin.get("/api/v1/runs", params={**params, "page_size": 200}).json()["items"]
        paged, total = walk_pages(admin, "/api/v1/runs", 3, **params)
        assert paged == _ids(full), params
        assert total == len(every) == len(set(paged))
        assert sorted(paged) == sorted(every)


def test_unknown_sort_is_a_400_naming_the_allowed(world: World) -> None:
    admin = world.admin
    runs = admin.get("/api/v1/runs", params={"sort": "password"})
    tasks = admin.get(f"/api/v1/runs/{world.a_runs['search']['id']}/tasks", params={"sort": "password"})

    assert runs.status_code == tasks.status_code == 400
    for response, names in ((runs, RUN_SORT_KEYS), (tasks, TASK_SORT_KEYS)):
        detail = response.json()["detail"]
        assert "password" in detail
        assert all(name in detail for name in names), detail


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/runs?page=0",
        "/api/v1/runs?page=-1",
        "/api/v1/runs?page_size=10000",
        "/api/v1/runs?page_size=0",
        "/api/v1/runs?status=bogus",
        "/api/v1/runs?type=bogus",
        "/api/v1/runs?order=sideways",
        "/api/v1/runs?operation=abc",
        "/api/v1/runs?started_from=2026-01-01T00:00:00",
        "/api/v1/runs?completed_to=2026-01-01T00:00:00",
        "/api/v1/runs?started_to=yesterday",
        f"/api/v1/runs?sort={'x' * 300}",
        "/api/v1/runs/abc",
        "/api/v1/runs/1.5",
        "/api/v1/runs/abc/tasks",
        "/api/v1/runs/{search}/tasks?page_size=10000",
        "/api/v1/runs/{search}/tasks?page=0",
        "/api/v1/runs/{search}/tasks?order=up",
        f"/api/v1/runs/{{search}}/tasks?search={'x' * 1000}",
        "/api/v1/operations/abc",
        "/api/v1/loads?page=0",
        "/api/v1/loads?page_size=10000",
        "/api/v1/bulk_metadata/job/?id=abc",
        "/api/v1/bulk_metadata/job/",
        "/api/v1/bulk_metadata/job/?id=1&name=x",
        "/api/v1/runs/99999999999999999999",
        "/api/v1/runs/9223372036854775808/tasks",
        "/api/v1/operations/99999999999999999999",
        "/api/v1/bulk_metadata/job/?id=99999999999999999999",
    ],
)
def test_bad_inputs_are_4xx_with_a_detail(world: World, target: str) -> None:
    response = world.admin.get(target.replace("{search}", str(world.a_runs["search"]["id"])))

    assert 400 <= response.status_code < 500, f"{target}: {response.status_code} {response.text}"
    assert response.json()["detail"], response.text


def test_bad_bodies_are_4xx_with_a_detail(world: World) -> None:
    admin = world.admin
    op_id = world.a_ops["search"]  # running: a launch that got through would be Rejected, not Accepted
    for body in ({"type": "sideways"}, {"type": "incremental", "extra": 1}, [1, 2]):
        response = admin.post(f"/api/v1/operations/{op_id}/runs", json=body)
        assert 400 <= response.status_code < 500, f"{body}: {response.text}"
        assert response.json()["detail"]
    response = admin.post(f"/api/v1/operations/{op_id}/runs", content=b"{not json", headers={"content-type": "x"})
    assert 400 <= response.status_code < 500, response.text


# --- tasks: search, sort, pages -------------------------------------------------------------------------------------


def test_each_task_search_rule(world: World) -> None:
    admin = world.admin
    path = f"/api/v1/runs/{world.a_runs['search']['id']}/tasks"
    for query, names in SEARCH_TASKS.items():
        response = admin.get(path, params={"search": query})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {task["name"] for task in body["items"]} == names, query
        assert body["total"] == len(names)


def test_task_search_is_the_union_of_the_rules(world: World) -> None:
    admin = world.admin
    path = f"/api/v1/runs/{world.a_runs['search']['id']}/tasks"
    tasks = all_items(admin, path)
    assert len(tasks) == 6
    for query in ("c", "e", "p", "re", "comp", "fail", "run", "_", "%", "[", "  Hold  ", "zzz", "hr_", "vendor"):
        found = all_items(admin, path, {"search": query})
        expected = {task["name"] for task in tasks if search_matches(task, query)}
        assert {task["name"] for task in found} == expected, query


def test_tasks_sort_by_every_column_both_ways(world: World) -> None:
    admin = world.admin
    for label in ("search", "cwe"):
        path = f"/api/v1/runs/{world.a_runs[label]['id']}/tasks"
        allowed = allowed_sorts(admin, path)
        assert sorted(allowed) == sorted(TASK_SORT_KEYS), "a sort key was added or removed: teach this test"
        tasks = all_items(admin, path)
        for sort in allowed:
            for order in ("asc", "desc"):
                response = admin.get(path, params={"sort": sort, "order": order, "page_size": 500})
                assert response.status_code == 200, response.text
                items = response.json()["items"]
                assert sorted(_ids(items)) == sorted(_ids(tasks)), (label, sort, order)
                assert_sorted(items, TASK_SORT_KEYS[sort], order)


def test_task_pages_cover_everything_exactly_once(world: World) -> None:
    admin = world.admin
    path = f"/api/v1/runs/{world.a_runs['search']['id']}/tasks"
    for params in ({}, {"sort": "name", "order": "desc"}, {"search": "c", "sort": "status"}):
        full = _ids(all_items(admin, path, params))
        paged, total = walk_pages(admin, path, 2, **params)
        assert paged == full, params
        assert total == len(full) == len(set(paged))


def test_tasks_show_tables_messages_and_statuses(world: World) -> None:
    tasks = {task["name"]: task for task in all_items(world.admin, f"/api/v1/runs/{world.a_runs['cwe']['id']}/tasks")}

    assert {name: task["status"] for name, task in tasks.items()} == {
        "extract": "completed",
        "flaky": "failed",
        "load": "completed",
    }
    assert tasks["load"]["tables"] == [{"name": "cwe_rows", "record_count": 6}]
    assert [m["text"] for m in tasks["flaky"]["messages"]] == [CWE_ERROR]
    assert tasks["flaky"]["status_label"] == "Failed"


# --- loads and operations -------------------------------------------------------------------------------------------


def test_loads_list_the_runs_that_loaded(world: World) -> None:
    loads = all_items(world.admin, "/api/v1/loads")

    assert [(load["run_id"], load["rows"]) for load in loads] == [(world.a_runs["cwe"]["id"], 6)]
    assert loads[0]["tables"] == [{"name": "cwe_rows", "rows": 6}]
    assert loads[0]["run_status"] == "completed_with_errors"
    paged, total = walk_pages(world.admin, "/api/v1/loads", 1)
    assert paged == _ids(loads)
    assert total == 1


def test_operations_list_and_detail(world: World) -> None:
    admin = world.admin
    listed = admin.get("/api/v1/operations")
    assert listed.status_code == 200, listed.text
    assert {op["id"]: op["configuration_id"] for op in listed.json()} == {
        op_id: name if name != "beta" else "Beta" for name, op_id in world.a_ops.items()
    }
    detail = admin.get(f"/api/v1/operations/{world.a_ops['cwe']}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["configuration_type"] == "tasks"
    assert [task["name"] for task in detail.json()["spec"]["tasks"]] == ["extract", "flaky", "load"]


# --- job status (spec 002) ------------------------------------------------------------------------------------------

FINISHED = re.compile(r"^Job finished in \d+(\.\d+)? seconds at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def _job(client: httpx.Client, run: Item, by: str) -> Item:
    target = f"?id={run['id']}" if by == "id" else f"?name={quote(run['job_name'], safe='')}"
    response = client.get(f"/api/v1/bulk_metadata/job/{target}")
    assert response.status_code == 200, response.text
    body: Item = response.json()
    assert set(body) == {"status", "msg", "result"}
    assert isinstance(body["result"], str)
    body["result"] = json.loads(body["result"])
    assert set(body["result"]) == {"updated_objects", "number_received", "error_objects", "error"}
    return body


@pytest.mark.parametrize("by", ["id", "name"])
def test_job_status_of_each_kind_of_run(world: World, by: str) -> None:
    client = world.stack.client(world.a_api_token, header="TOKEN")
    runs = world.a_runs
    assert "#" in runs["cwe"]["job_name"]

    running = _job(client, runs["search"], by)
    successful = _job(client, runs["completed"], by)
    failed = _job(client, runs["failed"], by)
    with_errors = _job(client, runs["cwe"], by)

    assert running["status"] == "running"
    assert running["msg"].startswith("Job is running since ")
    assert successful["status"] == "successful"
    assert FINISHED.match(successful["msg"]), successful["msg"]
    assert successful["result"] == {"updated_objects": 0, "number_received": 0, "error_objects": [], "error": ""}
    assert failed["status"] == "failed"
    assert failed["msg"].startswith("Job failed in ")
    assert failed["result"]["error_objects"] == ["beta broke"]
    assert "beta broke" in failed["result"]["error"]
    assert with_errors["status"] == "successful"
    assert FINISHED.match(with_errors["msg"]), with_errors["msg"]
    assert with_errors["result"] == {
        "updated_objects": 6,
        "number_received": 10,
        "error_objects": [CWE_ERROR],
        "error": "1 errors were ignored",
    }


def test_job_status_with_a_jwt_in_the_token_header(world: World) -> None:
    client = world.stack.client(world.stack.token_of("default", "viewer"), header="TOKEN")

    assert _job(client, world.a_runs["completed"], "name")["status"] == "successful"


SPEC_002_SAMPLE = """
import httpx
import json

# This is an example token. Please replace this with your token.
headers = {'Token': '2abcd-4c04-4c21-8692-eda27a877f90'}
BASE_URL = 'https://alation.yourcompany.com/api/v1/bulk_metadata/job'

# Add a url encoded job name
# Alernatively you can use urllib.parse.quote(<job_name>) to urlencode the job name
job_name = "MetadataExtraction%231_Virtual_2017-01-12-23-52-34-272077-00-00-f11a1877-2ce7-4f6c-98e7-9bf5f8c0abf2"

# Get the details of a job with name
response = httpx.get(BASE_URL + '/?name=' + job_name, headers=headers)
job_details = json.loads(response.text)
result = json.loads(job_details['result'])
print("Status: %s, Message: %s, Updated Objects: %s" % (job_details['status'], job_details['msg'], result['updated_objects']))

# Get the details of a job with integer identifier
response = httpx.get(BASE_URL + '/?id=1', headers=headers)
job_details = json.loads(response.text)
print("Status: %s, Message: %s, Result: %s" % (job_details['status'], job_details['msg'], job_details['result']))
"""  # noqa: E501 - the sample's own long line


def test_the_spec_002_python_sample_works_unchanged_but_for_host_and_token(world: World) -> None:
    run = world.a_runs["cwe"]
    script = (
        SPEC_002_SAMPLE.replace("2abcd-4c04-4c21-8692-eda27a877f90", world.a_api_token)
        .replace("https://alation.yourcompany.com", world.stack.base_url)
        .replace(
            "MetadataExtraction%231_Virtual_2017-01-12-23-52-34-272077-00-00-f11a1877-2ce7-4f6c-98e7-9bf5f8c0abf2",
            quote(run["job_name"], safe=""),
        )
        .replace("/?id=1'", f"/?id={run['id']}'")
    )

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    by_name, by_id = done.stdout.splitlines()
    assert re.match(r"^Status: successful, Message: Job finished in [\d.]+ seconds at .+, Updated Objects: 6$", by_name)
    assert by_id.startswith("Status: successful, Message: Job finished in ")
    assert '"error": "1 errors were ignored"' in by_id or '"error":"1 errors were ignored"' in by_id


# --- credentials ----------------------------------------------------------------------------------------------------


def _claims(world: World) -> Item:
    token = world.stack.token_of("default", "administrator")
    claims: Item = jwt.decode(token, options={"verify_signature": False})
    return claims


def _signed(world: World, **changes: Any) -> str:
    return jwt.encode({**_claims(world), **changes}, world.stack.settings.signing_key(), algorithm="HS256")


def _tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = str(int(claims["sub"]) + 1)
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{head}.{forged}.{signature}"


def test_a_crafted_token_with_the_apps_key_works(world: World) -> None:
    """The control for the refusals below: the key and the claims are right."""
    response = world.stack.client(_signed(world, jti="crafted")).get("/api/v1/runs")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", ["expired", "tampered", "alg_none", "wrong_audience", "wrong_key", "garbage"])
def test_bad_jwts_get_authentication_failed(world: World, kind: str) -> None:
    now = int(time.time())
    tokens: dict[str, Callable[[], str]] = {
        "expired": lambda: _signed(world, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "tampered": lambda: _tampered(world.stack.token_of("default", "viewer")),
        "alg_none": lambda: jwt.encode(_claims(world), None, algorithm="none"),
        "wrong_audience": lambda: _signed(world, aud="someone-else"),
        "wrong_key": lambda: jwt.encode(_claims(world), b"k" * 48, algorithm="HS256"),
        "garbage": lambda: "not.a.jwt",
    }
    token = tokens[kind]()

    for headers in (bearer(token), {"TOKEN": token}):
        response = world.stack.client().get("/api/v1/runs", headers=headers)
        assert_unauthorized(response)
        assert response.headers["www-authenticate"] == "Bearer"
    assert_unauthorized(world.stack.client().get(f"/api/v1/runs?Authorization=Bearer%20{token}"))


def test_every_route_without_credentials_gets_not_provided(world: World) -> None:
    client = world.stack.client()
    open_paths = {"/api/v1/auth/token", "/rest/v1/token-auth/issue", "/healthz", "/openapi.json", "/docs", "/redoc"}
    checked = 0
    for path, methods in create_app(world.stack.runtime).openapi()["paths"].items():
        if path in open_paths:
            continue
        for method in methods:
            response = client.request(method.upper(), re.sub(r"\{[^}]+\}", "1", path))
            assert response.status_code == 401, f"{method} {path}: {response.text}"
            if path.startswith("/v1/"):  # spec 003's routes answer in that document's shape
                expected = b'{"code":401,"data":{},"message":"Authentication credentials were not provided."}'
            else:
                expected = b'{"detail":"Authentication credentials were not provided."}'
            assert response.content == expected
            checked += 1
    assert checked >= 15


def test_the_query_parameter_form_works(world: World) -> None:
    token = world.stack.token_of("default", "viewer")
    by_header = world.stack.client(token).get("/api/v1/runs").json()

    response = world.stack.client().get(f"/api/v1/runs?Authorization=Bearer%20{token}")

    assert response.status_code == 200, response.text
    assert response.json() == by_header
    job = world.stack.client().get(
        f"/api/v1/bulk_metadata/job/?id={world.a_runs['cwe']['id']}&Authorization=Bearer%20{token}"
    )
    assert job.status_code == 200, job.text


def test_an_api_token_works_in_the_token_header_and_as_bearer_but_never_in_the_url(world: World) -> None:
    secret = world.a_api_token
    assert secret.startswith("ry_")

    for client in (world.stack.client(secret, header="TOKEN"), world.stack.client(secret)):
        response = client.get("/api/v1/runs")
        assert response.status_code == 200, response.text
        assert response.json()["total"] == len(all_items(world.admin, "/api/v1/runs"))
    assert_unauthorized(world.stack.client().get(f"/api/v1/runs?Authorization=Bearer%20{secret}"))
    assert_unauthorized(world.stack.client().get("/api/v1/runs", params={"TOKEN": secret}), MISSING)


def test_spec_001_login_issues_a_working_token(world: World) -> None:
    client = world.stack.client()
    response = client.post("/rest/v1/token-auth/issue", json={"login": "vic", "password": "user-password-1"})
    refused = client.post("/rest/v1/token-auth/issue", json={"login": "vic", "password": "wrong-password"})

    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token"}
    assert world.stack.client(response.json()["token"]).get("/api/v1/runs").status_code == 200
    assert_unauthorized(refused)


# --- roles ----------------------------------------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_launch_retry_or_cancel(world: World) -> None:
    viewer = world.stack.as_user("default", "viewer")
    runs = world.a_runs
    for path in (
        "/api/v1/operations",
        f"/api/v1/operations/{world.a_ops['alpha']}",
        "/api/v1/runs",
        f"/api/v1/runs/{runs['failed']['id']}",
        f"/api/v1/runs/{runs['search']['id']}/tasks",
        "/api/v1/loads",
        f"/api/v1/bulk_metadata/job/?id={runs['cwe']['id']}",
    ):
        assert viewer.get(path).status_code == 200, path

    refused = [
        viewer.post(f"/api/v1/operations/{world.a_ops['alpha']}/runs", json={"type": "incremental"}),
        viewer.post(f"/api/v1/runs/{runs['failed']['id']}/retry"),  # retryable: the latest Failed run
        viewer.post(f"/api/v1/runs/{runs['search']['id']}/cancel"),  # cancelable: running
    ]

    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": "Your role (viewer) cannot do this: it needs operator or administrator"}
    assert world.stack.run(viewer, runs["search"]["id"])["status"] == "running"
    assert all_items(viewer, "/api/v1/runs", {"operation": world.a_ops["alpha"]}) == all_items(
        world.admin, "/api/v1/runs", {"operation": world.a_ops["alpha"]}
    )


def test_an_operator_cannot_manage_users_or_tokens(world: World) -> None:
    operator = world.stack.as_user("default", "operator")
    attempts = [
        operator.get("/api/v1/users"),
        operator.post("/api/v1/users", json={"login": "mallory", "password": "password-123", "role": "administrator"}),
        operator.delete("/api/v1/users/1"),
        operator.get("/api/v1/tokens"),
        operator.post("/api/v1/tokens", json={"name": "mine"}),
        operator.delete(f"/api/v1/tokens/{world.b_token_ids[0]}"),
    ]

    for response in attempts:
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": "Your role (operator) cannot do this: it needs administrator"}
    logins = [user["login"] for user in world.admin.get("/api/v1/users").json()]
    assert "mallory" not in logins


# --- the wall between accounts --------------------------------------------------------------------------------------


def _b_exports(world: World) -> tuple[str, str]:
    """A table of B's warehouse and the continuation token of an export of it by B."""
    warehouses = world.stack.runtime.warehouses
    assert warehouses is not None
    warehouses.for_account("other").query("CREATE TABLE IF NOT EXISTS bravo_export AS SELECT 1 AS x")
    first = world.b_admin.get("/api/integrations/v2/biviews/bravo_export", params={"pagenum": 1})
    assert first.status_code == 200, first.text
    return "bravo_export", first.headers["continuation-token"]


def _b_ids(world: World, parameter: str) -> list[int] | list[str]:
    if parameter in ("view", "task_id"):
        table, token = _b_exports(world)
        return [table] if parameter == "view" else [token]
    ids: dict[str, list[int]] = {
        "operation_id": list(world.b_ops.values()),
        "run_id": [run["id"] for run in world.b_runs.values()],
        "audit_id": [run["id"] for run in world.b_runs.values()],
        "user_id": world.b_user_ids,
        "token_id": world.b_token_ids,
        # SQL Explorer query ids are chosen by their owner: ids B could have picked (test_sql_explorer.py stops
        # B's running query as A, and gets 404, while it runs)
        "query_id": [run["id"] for run in world.b_runs.values()],
        **world.b_alerting,
    }
    assert parameter in ids, f"new path parameter {parameter!r}: tell this test which of B's objects it names"
    return ids[parameter]


def _valid_body(method: str, url: str) -> dict[str, Any] | None:
    """A body the route would accept for A's own object: B's must then answer 404, not a complaint about the body."""
    if method == "post" and url.endswith("/runs"):
        return {"type": "incremental"}
    if method == "post" and url.endswith("/silence"):
        return {"minutes": 60}
    return None


def test_another_accounts_objects_answer_404_on_every_route(world: World) -> None:
    """Every route with a path parameter, from the app's own OpenAPI, with each of B's ids, as A's administrator."""
    admin = world.admin
    secrets = [op for op in ("bravo", "bravo_rows")] + [run["run_key"] for run in world.b_runs.values()]
    checked = 0
    for path, methods in create_app(world.stack.runtime).openapi()["paths"].items():
        parameters = re.findall(r"\{([^}]+)\}", path)
        if not parameters:
            continue
        for method in methods:
            for object_id in _b_ids(world, parameters[0]):
                url = path.replace(f"{{{parameters[0]}}}", str(object_id))
                body = _valid_body(method, url)
                with admin.stream(method.upper(), url, json=body) as response:
                    response.read()
                assert_not_found(response, *secrets)
                checked += 1
    assert checked >= 12, checked
    for run in world.b_runs.values():
        assert_not_found(admin.get(f"/api/v1/bulk_metadata/job/?id={run['id']}"), *secrets)
        assert_not_found(admin.get(f"/api/v1/bulk_metadata/job/?name={quote(run['job_name'], safe='')}"))
    b_admin = world.b_admin
    assert [world.stack.run(b_admin, run["id"])["status"] for run in world.b_runs.values()] == [
        "completed",
        "failed",
        "running",
    ]
    assert all_items(b_admin, "/api/v1/runs", {"status": "rejected"}) == []
    assert len(b_admin.get("/api/v1/tokens").json()) == 1
    assert all(user["active"] for user in b_admin.get("/api/v1/users").json())


def test_lists_hold_none_of_another_accounts_rows(world: World) -> None:
    admin, b_admin = world.admin, world.b_admin
    b_ops, b_runs = set(world.b_ops.values()), {run["id"] for run in world.b_runs.values()}
    assert len(all_items(b_admin, "/api/v1/loads")) == 1, "B has a load: the check below means something"

    operations = admin.get("/api/v1/operations").json()
    runs = all_items(admin, "/api/v1/runs")
    loads = all_items(admin, "/api/v1/loads")
    users = admin.get("/api/v1/users").json()
    tokens = admin.get("/api/v1/tokens").json()
    metrics = admin.get("/etl/rest/v1/tasks/")

    assert not {op["id"] for op in operations} & b_ops
    assert not {run["id"] for run in runs} & b_runs
    assert not {load["run_id"] for load in loads} & b_runs
    assert not {user["id"] for user in users} & set(world.b_user_ids)
    assert not {token["id"] for token in tokens} & set(world.b_token_ids)
    assert not {alert["id"] for alert in all_items(admin, "/api/v1/alerts")} & set(world.b_alerting["alert_id"])
    channels = admin.get("/api/v1/notifications/channels").json()
    assert not {channel["id"] for channel in channels} & set(world.b_alerting["channel_id"])
    assert metrics.status_code == 200, metrics.text
    assert [task["name"] for task in metrics.json()] == ["Hold"]
    for op_id in b_ops:
        assert admin.get("/api/v1/runs", params={"operation": op_id}).json()["total"] == 0
    for run in world.a_runs.values():
        assert_not_found(b_admin.get(f"/api/v1/runs/{run['id']}"))
