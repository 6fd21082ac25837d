"""The alerts API over real HTTP: list (filters, paging, the runs list's envelope), one alert, silence and unsilence
(administrators only), your account only, and bad parameters answered 400 naming the field.

On SQLite: the evaluation and the reads underneath are covered on both backends by test_alerts.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.domain.alert_rules import AlertSettings
from runyard.domain.statuses import RunStatus
from runyard.services.alert_evaluation import evaluate_alerts
from runyard.store.database import Store
from runyard.store.tables import operations, runs
from tests.factories import sleep_task
from tests.integration.rest_harness import RestStack, rest_stack

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ALERTS = "/api/v1/alerts"
_keys = itertools.count()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    # The stack's own scheduler evaluates once as it starts; the test evaluates with its own clock after that.
    with rest_stack(tmp_path / "home", database_url, alert_seconds=3600) as running:
        yield running


def _failed_run(store: Store, operation_id: int, ended: datetime) -> int:
    key = f"api-{next(_keys)}"
    with store.write() as conn:
        account_id = conn.execute(
            sa.select(operations.c.account_id).where(operations.c.id == operation_id)
        ).scalar_one()
        return int(
            conn.execute(
                runs.insert()
                .values(
                    account_id=account_id,
                    operation_id=operation_id,
                    run_key=key,
                    job_name=f"job-{key}",
                    run_type="incremental",
                    trigger="manual",
                    status=RunStatus.FAILED.value,
                    message="the source answered 500",
                    created_at=ended - timedelta(minutes=1),
                    started_at=ended - timedelta(minutes=1),
                    completed_at=ended,
                    updated_at=ended,
                )
                .returning(runs.c.id)
            ).scalar_one()
        )


def _alerts(stack: RestStack, operation_id: int, count: int) -> list[int]:
    """`count` Failed runs of the operation, evaluated into `count` alerts; the alert ids, oldest first."""
    store = stack.store
    with store.read() as conn:
        now = store.now(conn)
    for index in range(count):
        _failed_run(store, operation_id, now - timedelta(minutes=count - index))
    report = evaluate_alerts(store, now, AlertSettings())
    assert len(report.opened) == count
    return [alert.id for alert in report.opened]


def test_list_filter_page_and_read_one(stack: RestStack) -> None:
    orders = stack.deploy("orders", [sleep_task("only")])
    invoices = stack.deploy("invoices", [sleep_task("only")])
    ids = _alerts(stack, orders, 3) + _alerts(stack, invoices, 1)
    viewer = stack.as_user("default", "viewer")

    body = viewer.get(ALERTS, params={"page_size": 2}).json()
    assert (body["total"], body["page"], body["page_size"]) == (4, 1, 2)
    assert [item["id"] for item in body["items"]] == [ids[3], ids[2]]  # newest first
    second = viewer.get(ALERTS, params={"page_size": 2, "page": 2}).json()
    assert [item["id"] for item in second["items"]] == [ids[1], ids[0]]

    mine = viewer.get(ALERTS, params={"operation_id": orders, "state": "open", "kind": "failed"}).json()
    assert mine["total"] == 3
    assert viewer.get(ALERTS, params={"kind": "overdue"}).json()["total"] == 0

    one = viewer.get(f"{ALERTS}/{ids[0]}")
    assert one.status_code == 200, one.text
    alert = one.json()
    assert alert["configuration_id"] == "orders"
    assert (alert["kind"], alert["kind_label"], alert["state"]) == ("failed", "Failed run", "open")
    assert alert["summary"] == f"orders: run {alert['run_id']} Failed"
    assert alert["evidence"] == "the source answered 500"


def test_an_administrator_silences_and_unsilences(stack: RestStack) -> None:
    (alert_id,) = _alerts(stack, stack.deploy("orders", [sleep_task("only")]), 1)
    admin = stack.as_user("default", "administrator")

    silenced = admin.post(f"{ALERTS}/{alert_id}/silence", json={"minutes": 60})
    assert silenced.status_code == 200, silenced.text
    assert silenced.json()["state"] == "silenced"
    assert admin.get(ALERTS, params={"state": "open"}).json()["total"] == 0
    assert admin.get(ALERTS, params={"state": "silenced"}).json()["total"] == 1

    until = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    assert admin.post(f"{ALERTS}/{alert_id}/silence", json={"until": until}).json()["state"] == "silenced"

    back = admin.delete(f"{ALERTS}/{alert_id}/silence")
    assert back.status_code == 200, back.text
    assert (back.json()["state"], back.json()["silenced_until"]) == ("open", None)


def test_only_administrators_silence_and_only_their_account(stack: RestStack) -> None:
    (alert_id,) = _alerts(stack, stack.deploy("orders", [sleep_task("only")]), 1)
    for role in ("viewer", "operator"):
        refused = stack.as_user("default", role).post(f"{ALERTS}/{alert_id}/silence", json={"minutes": 5})
        assert refused.status_code == 403, refused.text
        assert stack.as_user("default", role).delete(f"{ALERTS}/{alert_id}/silence").status_code == 403

    other = stack.as_user("other", "administrator")
    assert other.get(f"{ALERTS}/{alert_id}").status_code == 404
    assert other.post(f"{ALERTS}/{alert_id}/silence", json={"minutes": 5}).status_code == 404
    assert other.get(ALERTS).json()["total"] == 0
    assert stack.as_user("other", "viewer").get(f"{ALERTS}/{alert_id}").status_code == 404
    assert stack.as_user("default", "viewer").get(f"{ALERTS}/{alert_id + 1000}").status_code == 404


def test_bad_parameters_are_a_400_naming_the_field(stack: RestStack) -> None:
    (alert_id,) = _alerts(stack, stack.deploy("orders", [sleep_task("only")]), 1)
    viewer = stack.as_user("default", "viewer")
    admin = stack.as_user("default", "administrator")

    bad_state = viewer.get(ALERTS, params={"state": "sleeping"})
    assert bad_state.status_code == 400, bad_state.text
    assert "state" in bad_state.json()["detail"]

    for body, field in (
        ({}, "minutes"),
        ({"minutes": 5, "until": "2030-01-01T00:00:00+00:00"}, "minutes"),
        ({"until": "2020-01-01T00:00:00+00:00"}, "until"),
    ):
        refused = admin.post(f"{ALERTS}/{alert_id}/silence", json=body)
        assert refused.status_code == 400, refused.text
        assert field in refused.json()["detail"]
