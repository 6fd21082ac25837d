"""A workflow through real HTTP: its API (what it waits for, reset), its page and its Sources panel, on both stores."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.operations.workflow.spec import WorkflowOperation
from runyard.services.operations import deploy
from tests.factories import sleep_task
from tests.integration.rest_harness import RUN_TIMEOUT, RestStack, rest_stack, wait_for
from tests.integration.ui_client import UiClient, signed_in


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


@pytest.fixture
def ui(stack: RestStack) -> Iterator[UiClient]:
    client = signed_in(stack, "default", "operator")
    yield client
    client.close()


def deploy_workflow(stack: RestStack, account: str = "default") -> tuple[dict[str, int], int]:
    ids = {name: stack.deploy(name, [sleep_task("work")], account=account) for name in ("JA", "JB", "JT")}
    spec = WorkflowOperation.model_validate(
        {
            "configuration_type": "workflow",
            "configuration_id": "nightly",
            "account": account,
            "authorized_job_ids": [f"tasks|{account}|JA|DEV", f"tasks|{account}|JB|DEV"],
            "target_dag": {"configuration_type": "tasks", "configuration_id": "JT"},
        }
    )
    (deployed,) = deploy(stack.store, [spec], stack.runtime.registry)
    return ids, deployed.operation_id


def test_the_api_shows_what_a_workflow_waits_for_and_resets_it(stack: RestStack) -> None:
    ids, workflow = deploy_workflow(stack)
    operator = stack.as_user("default", "operator")
    viewer = stack.as_user("default", "viewer")
    first = viewer.get(f"/api/v1/operations/{workflow}/workflow")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["satisfied"] is False
    assert body["waiting_for"] == ["tasks|default|JA|DEV", "tasks|default|JB|DEV"]
    assert body["target_job_id"] == "tasks|default|JT|DEV"
    assert body["target_operation_id"] == ids["JT"]
    assert [(u["configuration_id"], u["operation_id"], u["successes"]) for u in body["upstreams"]] == [
        ("JA", ids["JA"], 0),
        ("JB", ids["JB"], 0),
    ]
    run = stack.launch(operator, ids["JA"])
    stack.wait_status(operator, run["id"], "completed")
    after = viewer.get(f"/api/v1/operations/{workflow}/workflow").json()
    assert after["waiting_for"] == ["tasks|default|JB|DEV"]
    ja = after["upstreams"][0]
    assert (ja["successes"], ja["satisfied"], ja["last_success_run_id"]) == (1, True, run["id"])
    assert ja["last_success_at"] is not None
    # a viewer may not reset; an operator may
    assert viewer.post(f"/api/v1/operations/{workflow}/workflow/reset").status_code == 403
    reset = operator.post(f"/api/v1/operations/{workflow}/workflow/reset")
    assert reset.status_code == 200, reset.text
    assert [u["successes"] for u in reset.json()["upstreams"]] == [0, 0]
    assert reset.json()["reset_at"] is not None
    # the second upstream alone does not launch the target after the reset; both do
    for name in ("JB", "JA"):
        stack.wait_status(operator, stack.launch(operator, ids[name])["id"], "completed")
    fired = wait_for(
        lambda: viewer.get(f"/api/v1/operations/{workflow}/workflow").json()["last_trigger_run_id"],
        timeout=RUN_TIMEOUT,
        what="the workflow to launch its target",
    )
    target_run = stack.run(viewer, fired)
    assert (target_run["operation_id"], target_run["trigger"]) == (ids["JT"], "workflow")
    # not a workflow, another account's workflow: 404
    assert viewer.get(f"/api/v1/operations/{ids['JA']}/workflow").status_code == 404
    other = stack.as_user("other", "administrator")
    assert other.get(f"/api/v1/operations/{workflow}/workflow").status_code == 404
    assert other.post(f"/api/v1/operations/{workflow}/workflow/reset").status_code == 404
    # a workflow is not launched itself
    refused = operator.post(f"/api/v1/operations/{workflow}/runs", json={})
    assert refused.status_code == 409
    assert "is a workflow" in refused.json()["detail"]


def test_the_sources_page_and_the_workflow_page_show_the_panel(stack: RestStack, ui: UiClient) -> None:
    ids, workflow = deploy_workflow(stack)
    operator = stack.as_user("default", "operator")
    stack.wait_status(operator, stack.launch(operator, ids["JA"])["id"], "completed")
    sources = ui.get("/sources").text
    panel = re.search(rf'<section class="workflow-panel" data-workflow-id="{workflow}".*?</section>', sources, re.S)
    assert panel is not None, "no panel for the workflow on Sources"
    assert re.search(r'data-upstream="JA" data-successes="1"', panel.group(0))
    assert re.search(r'data-upstream="JB" data-successes="0"', panel.group(0))
    assert "1 more of 2 upstream jobs succeeds" in re.sub(r"\s+", " ", panel.group(0))
    # the workflow's row has no Launch button, but a link to its page
    row = re.search(rf'<tr data-operation-id="{workflow}".*?</tr>', sources, re.S)
    assert row is not None
    assert "Launch" not in row.group(0)
    assert f"/sources/{workflow}/workflow" in row.group(0)
    page = ui.get(f"/sources/{workflow}/workflow")
    assert page.status_code == 200
    assert 'data-upstream="JA" data-successes="1"' in page.text
    assert "Reset counts" in page.text
    done = ui.follow(ui.post_form(f"/sources/{workflow}/workflow", f"/sources/{workflow}/workflow/reset"))
    assert "Workflow reset" in done.text
    assert 'data-upstream="JA" data-successes="0"' in done.text
    assert ui.get(f"/sources/{ids['JA']}/workflow").status_code == 404
