"""bi-views deployed through the real deploy service, on SQLite and PostgreSQL, and found the way spec 004's export
finds them: by account name and view name, case-insensitively, active and not archived only, one per account and
environment (deploy and activation refuse a second one)."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard.demo import demo_specs
from runyard.errors import ConfigError, Conflict
from runyard.operations.loader import load_text
from runyard.operations.spec import OperationBase
from runyard.services.accounts import create_account
from runyard.services.bi_views import DeclaredView, find_view, list_views
from runyard.services.deploy_changes import DeployAction
from runyard.services.operations import deploy, list_operations, preview_deploy, set_status
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.wakeup import Wakeup
from runyard.store.database import Store
from tests.factories import make_account
from tests.integration.rest_harness import RestStack, rest_stack
from tests.integration.ui_client import signed_in

ACCOUNT = "000099"
OTHER_ACCOUNT = "000100"


def view_yaml(
    configuration_id: str,
    view_name: str,
    *,
    account: str = ACCOUNT,
    environment: str = "DEV",
    sql: str = "SELECT id, first_name, hire_date FROM employees",
    time_column: str | None = "hire_date",
    extra: str = "",
) -> str:
    text = (
        "configuration_type: bi-view\n"
        f"configuration_id: {configuration_id}\n"
        f'account: "{account}"\n'
        f"environment: {environment}\n"
        f"view_name: {view_name}\n"
        "sql: |\n"
        f"  {sql}\n"
    )
    if time_column is not None:
        text += f"time_column: {time_column}\n"
    return text + extra


def load(*texts: str) -> tuple[list[OperationBase], list[str]]:
    sources = [f"views-{index}.yaml" for index, _ in enumerate(texts)]
    return [spec for text, source in zip(texts, sources, strict=True) for spec in load_text(text, source)], sources


def deploy_text(store: Store, *texts: str) -> list[int]:
    """Deploy YAML documents as `runyard deploy` does (the loader, then the deploy service); the operation ids."""
    specs, sources = load(*texts)
    return [item.operation_id for item in deploy(store, specs, sources=sources)]


def preview_text(store: Store, *texts: str) -> list[int | None]:
    """`runyard deploy --dry-run`: the ids the documents would update (None: would create)."""
    specs, sources = load(*texts)
    return [preview.operation_id for preview in preview_deploy(store, specs, sources=sources)]


@pytest.fixture
def accounts(store: Store) -> Store:
    make_account(store)  # "default", with its admin
    create_account(store, ACCOUNT)
    create_account(store, OTHER_ACCOUNT)
    return store


def operation_count(store: Store) -> int:
    with store.read() as conn:
        return len(list_operations(conn))


# --- finding views --------------------------------------------------------------------------------------------------


def test_deployed_views_are_found_by_name_whatever_its_case(accounts: Store) -> None:
    employees, departments = deploy_text(
        accounts,
        view_yaml("employees-by-hire-date", "EMPLOYEES_V", sql="SELECT id, first_name, hire_date FROM employees;"),
        view_yaml("departments", "Departments_V", sql="SELECT * FROM departments", time_column=None),
    )

    expected = DeclaredView("EMPLOYEES_V", "SELECT id, first_name, hire_date FROM employees", "hire_date", employees)
    for asked in ("EMPLOYEES_V", "employees_v", "Employees_V"):
        assert find_view(accounts, ACCOUNT, asked) == expected
    assert find_view(accounts, ACCOUNT, "EMPLOYEES_V", environment="DEV") == expected
    assert find_view(accounts, ACCOUNT, "departments_v") == DeclaredView(
        "Departments_V", "SELECT * FROM departments", None, departments
    )
    assert find_view(accounts, ACCOUNT, "EMPLOYEES_V", environment="PROD") is None
    for unknown in ("EMPLOYEES", "EMPLOYEES_V2", "", "employees-by-hire-date", "EMPLOYEES_V; DROP", "employee\u017f_v"):
        assert find_view(accounts, ACCOUNT, unknown) is None
    assert list_views(accounts, ACCOUNT) == [find_view(accounts, ACCOUNT, "departments_v"), expected]


def test_another_accounts_view_is_not_found(accounts: Store) -> None:
    (ours,) = deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V"))
    (theirs,) = deploy_text(
        accounts, view_yaml("employees", "EMPLOYEES_V", account=OTHER_ACCOUNT, sql="SELECT 'theirs' AS whose")
    )

    assert ours != theirs
    found = find_view(accounts, ACCOUNT, "employees_v")
    assert found is not None
    assert found.operation_id == ours
    other = find_view(accounts, OTHER_ACCOUNT, "employees_v")
    assert other == DeclaredView("EMPLOYEES_V", "SELECT 'theirs' AS whose", "hire_date", theirs)
    assert find_view(accounts, "default", "EMPLOYEES_V") is None
    assert find_view(accounts, "no-such-account", "EMPLOYEES_V") is None
    assert list_views(accounts, "default") == []
    assert [view.operation_id for view in list_views(accounts, OTHER_ACCOUNT)] == [theirs]


def test_deactivated_and_archived_views_are_not_found(accounts: Store) -> None:
    employees, departments, _hidden = deploy_text(
        accounts,
        view_yaml("employees", "EMPLOYEES_V"),
        view_yaml("departments", "DEPARTMENTS_V"),
        view_yaml("hidden", "HIDDEN_V", extra="activated: false\n"),
    )
    assert find_view(accounts, ACCOUNT, "HIDDEN_V") is None  # deployed inactive

    set_status(accounts, employees, activated=False, archived=False)
    set_status(accounts, departments, activated=False, archived=True)
    assert find_view(accounts, ACCOUNT, "EMPLOYEES_V") is None
    assert find_view(accounts, ACCOUNT, "DEPARTMENTS_V") is None
    assert list_views(accounts, ACCOUNT) == []

    set_status(accounts, employees, activated=True, archived=False)
    assert [view.name for view in list_views(accounts, ACCOUNT)] == ["EMPLOYEES_V"]


def test_with_several_environments_prod_is_preferred_then_the_most_recently_updated(accounts: Store) -> None:
    dev, qa = deploy_text(
        accounts,
        view_yaml("employees", "EMPLOYEES_V", sql="SELECT 'dev' AS env"),
        view_yaml("employees", "employees_v", environment="QA", sql="SELECT 'qa' AS env"),
    )
    assert _found(accounts) == qa  # both updated by one deploy, at one instant: the newest id
    time.sleep(0.01)
    deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V", sql="SELECT 'dev, updated' AS env"))
    assert _found(accounts) == dev
    assert _found(accounts, "QA") == qa

    (prod,) = deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V", environment="PROD", sql="SELECT 'prod'"))
    time.sleep(0.01)
    deploy_text(accounts, view_yaml("employees", "employees_v", environment="QA", sql="SELECT 'qa, updated'"))
    assert _found(accounts) == prod
    assert _found(accounts, "QA") == qa
    assert _found(accounts, "DEV") == dev
    views = list_views(accounts, ACCOUNT)
    assert [(view.name, view.sql, view.operation_id) for view in views] == [("EMPLOYEES_V", "SELECT 'prod'", prod)]

    set_status(accounts, prod, activated=False, archived=True)  # PROD archived: the most recent of the others
    assert _found(accounts) == qa


def _found(store: Store, environment: str | None = None) -> int | None:
    view = find_view(store, ACCOUNT, "EMPLOYEES_V", environment)
    return None if view is None else view.operation_id


def test_the_demo_declares_employees_v_over_the_loaded_employees(store: Store) -> None:
    make_account(store)
    deploy(store, demo_specs("http://127.0.0.1:9"))

    view = find_view(store, "default", "employees_v")

    assert view is not None
    assert view.name == "EMPLOYEES_V"
    assert view.time_column == "_runyard_loaded_at"
    assert "FROM employees AS e" in view.sql
    assert "e._runyard_loaded_at" in view.sql


def test_a_bi_view_is_never_launched(accounts: Store) -> None:
    (view,) = deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V"))
    with pytest.raises(Conflict, match="employees is a bi-view, which is not launched: a view declared"):
        RunService(accounts, Wakeup()).launch(LaunchRequest(operation_id=view))


# --- one active view per name, account and environment --------------------------------------------------------------


def test_a_second_active_view_of_the_same_name_is_refused_at_deploy_and_nothing_is_deployed(accounts: Store) -> None:
    (first,) = deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V"))
    before = operation_count(accounts)

    for deploy_or_preview in (preview_text, deploy_text):
        with pytest.raises(ConfigError) as refused:
            deploy_or_preview(
                accounts,
                view_yaml("departments", "DEPARTMENTS_V"),  # valid, but the deploy is all or nothing
                view_yaml("employees-again", "employees_v"),
            )
        assert refused.value.field == "view_name"
        assert refused.value.source == "views-1.yaml"
        assert f"view employees_v is also declared by bi-view employees (operation {first})" in str(refused.value)
        assert "one active bi-view per account and environment" in str(refused.value)
    assert operation_count(accounts) == before
    assert find_view(accounts, ACCOUNT, "DEPARTMENTS_V") is None


def test_two_views_of_one_deploy_with_the_same_name_are_refused(accounts: Store) -> None:
    with pytest.raises(ConfigError) as refused:
        deploy_text(accounts, view_yaml("a", "SAME_V"), view_yaml("b", "same_v"))
    assert refused.value.field == "view_name"
    assert "also declared by bi-view a in views-0.yaml" in str(refused.value)
    assert operation_count(accounts) == 0


def test_the_same_name_is_free_in_another_environment_account_or_when_the_other_is_not_active(accounts: Store) -> None:
    deploy_text(
        accounts,
        view_yaml("employees", "EMPLOYEES_V"),
        view_yaml("employees", "EMPLOYEES_V", environment="PROD"),
        view_yaml("employees", "EMPLOYEES_V", account=OTHER_ACCOUNT),
        view_yaml("inactive", "EMPLOYEES_V", extra="activated: false\n"),
        view_yaml("archived", "EMPLOYEES_V", extra="archived: true\n"),
    )
    # A redeploy of the same operation is not a second view, nor is an unchanged one.
    assert preview_text(accounts, view_yaml("employees", "EMPLOYEES_V", sql="SELECT 2"))[0] is not None
    deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V", sql="SELECT 2"))
    deploy_text(accounts, view_yaml("employees", "EMPLOYEES_V", sql="SELECT 2"))
    assert operation_count(accounts) == 5


def test_names_may_move_between_views_in_one_deploy(accounts: Store) -> None:
    a, b = deploy_text(accounts, view_yaml("a", "FIRST_V"), view_yaml("b", "SECOND_V"))

    swapped = [view_yaml("a", "SECOND_V"), view_yaml("b", "FIRST_V")]
    assert preview_text(accounts, *swapped) == [a, b]
    deploy_text(accounts, *swapped)

    assert (_id(accounts, "FIRST_V"), _id(accounts, "SECOND_V")) == (b, a)
    # The other way to free a name: deactivate its view in the same deploy.
    deploy_text(accounts, view_yaml("a", "SECOND_V", extra="activated: false\n"), view_yaml("c", "SECOND_V"))
    assert _id(accounts, "SECOND_V") not in (a, b, None)


def _id(store: Store, name: str) -> int | None:
    view = find_view(store, ACCOUNT, name)
    return None if view is None else view.operation_id


def test_activating_a_view_whose_name_is_taken_is_a_conflict(accounts: Store) -> None:
    active, inactive, archived = deploy_text(
        accounts,
        view_yaml("active", "EMPLOYEES_V"),
        view_yaml("inactive", "employees_v", extra="activated: false\n"),
        view_yaml("archived", "EMPLOYEES_V", extra="archived: true\n"),
    )

    for waiting in (inactive, archived):
        with pytest.raises(Conflict, match=f"also declared by bi-view active \\(operation {active}\\)"):
            set_status(accounts, waiting, activated=True, archived=False)
    set_status(accounts, archived, activated=False, archived=False)  # unarchived, inactive: allowed
    assert _id(accounts, "EMPLOYEES_V") == active

    set_status(accounts, active, activated=False, archived=False)
    set_status(accounts, inactive, activated=True, archived=False)  # the name is free now
    assert _id(accounts, "EMPLOYEES_V") == inactive
    with pytest.raises(ConfigError, match="also declared by bi-view inactive"):  # a redeploy reactivating it
        deploy_text(accounts, view_yaml("active", "EMPLOYEES_V", extra="activated: true\n"))
    deploy_text(accounts, view_yaml("active", "EMPLOYEES_V"))  # keeps its stored state: inactive, no clash
    assert _id(accounts, "EMPLOYEES_V") == inactive


def test_the_deploy_result_of_a_bi_view_is_reported_like_any_other(accounts: Store) -> None:
    specs = load_text(view_yaml("employees", "EMPLOYEES_V"), "v.yaml")
    (created,) = deploy(accounts, specs, sources=["v.yaml"])
    (unchanged,) = deploy(accounts, specs, sources=["v.yaml"])
    changed = load_text(view_yaml("employees", "EMPLOYEES_V", time_column="updated_at"), "v.yaml")
    (updated,) = deploy(accounts, changed, sources=["v.yaml"])
    assert (created.action, unchanged.action, updated.action) == (
        DeployAction.CREATED,
        DeployAction.UNCHANGED,
        DeployAction.UPDATED,
    )
    assert [str(change) for change in updated.changes] == ["time_column: hire_date -> updated_at"]


def test_two_deploys_at_once_of_the_same_name_deploy_one(accounts: Store) -> None:
    """Each deploy checks after writing, holding its account's row: the second sees the first's view."""
    for attempt in range(3):
        barrier = threading.Barrier(2)
        outcomes: list[str | None] = []

        def deploy_one(
            configuration_id: str, name: str, barrier: threading.Barrier, outcomes: list[str | None]
        ) -> None:
            barrier.wait()
            try:
                deploy_text(accounts, view_yaml(configuration_id, name))
            except ConfigError as error:
                outcomes.append(error.field)
            else:
                outcomes.append("deployed")

        threads = [
            threading.Thread(target=deploy_one, args=(f"first-{attempt}", f"RACE_{attempt}", barrier, outcomes)),
            threading.Thread(target=deploy_one, args=(f"second-{attempt}", f"race_{attempt}", barrier, outcomes)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(map(str, outcomes)) == ["deployed", "view_name"]
        assert find_view(accounts, ACCOUNT, f"RACE_{attempt}") is not None


# --- the Sources page -----------------------------------------------------------------------------------------------


@pytest.fixture
def ui_stack(tmp_path: Path) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", f"sqlite:///{tmp_path / 'runyard.db'}") as running:
        yield running


def test_sources_shows_a_bi_view_without_launch_and_refuses_to_launch_it(ui_stack: RestStack) -> None:
    (view,) = deploy_text(ui_stack.store, view_yaml("employees", "EMPLOYEES_V", account="default"))
    ui_stack.deploy("nightly", [{"name": "one", "executor": "noop"}])
    client = signed_in(ui_stack, "default", "operator")
    try:
        page = client.get("/sources")
        assert page.status_code == 200, page.text
        row = re.search(rf'<tr data-operation-id="{view}".*?</tr>', page.text, re.S)
        assert row is not None, page.text
        assert "<td>bi-view</td>" in row.group()
        assert "Launch" not in row.group()
        assert 'aria-label="Launch nightly"' in page.text  # the operator does see Launch on a task graph
        assert client.get("/sources", params={"type": "bi-view"}).status_code == 200

        refused = client.follow(client.post_form("/sources", f"/sources/{view}/launch", {"type": "incremental"}))
        assert "employees is a bi-view, which is not launched: a view declared" in html.unescape(refused.text)
    finally:
        client.close()
