"""Alerts driven from a history each test makes in the store, with the clock in the test's hands (SQLite and
PostgreSQL): every kind opens once, resolves by itself, never twice, and an administrator can silence one."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.domain.alert_rules import AlertSettings
from runyard.domain.alerts import Alert, AlertKind, AlertState
from runyard.domain.statuses import RunStatus, RunType, TaskStatus
from runyard.errors import Conflict, NotFound
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services import alerts as service
from runyard.services.alert_evaluation import AlertEvaluator, EvaluationReport, evaluate_alerts
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.tasks import Outcome, TaskLeases
from runyard.store.database import Store
from runyard.store.tables import (
    accounts,
    alerts,
    data_loads,
    notification_channels,
    notification_deliveries,
    notification_rules,
    operations,
    runs,
)
from runyard.worker.scheduler import Scheduler
from tests.factories import make_account, sleep_task

RULES = AlertSettings(min_runs=5, history_runs=20, spread=3.0, overdue_grace=timedelta(minutes=10))
_keys = itertools.count()


def _operation(store: Store, name: str = "orders", *, schedule: str | None = None, account: str = "default") -> int:
    make_account(store)
    spec = TaskGraphOperation.model_validate(
        {
            "configuration_type": "tasks",
            "configuration_id": name,
            "account": account,
            "schedule": schedule,
            "tasks": [sleep_task("only")],
        }
    )
    operation_id = deploy(store, [spec], BUILTIN)[0].operation_id
    with store.write() as conn:  # deployed long ago: its history counts, not its deploy
        conn.execute(
            operations.update()
            .where(operations.c.id == operation_id)
            .values(updated_at=_now(store) - timedelta(days=60))
        )
    return operation_id


def _now(store: Store) -> datetime:
    with store.read() as conn:
        return store.now(conn)


def _run(
    store: Store,
    operation_id: int,
    status: RunStatus,
    *,
    ended: datetime,
    seconds: float = 60.0,
    rows: int | None = None,
    run_type: RunType = RunType.INCREMENTAL,
    message: str = "",
) -> int:
    """A run of the history: it started `seconds` before `ended`; `rows`: its Data Load record."""
    key = f"hist-{next(_keys)}-{operation_id}"
    with store.write() as conn:
        account_id = conn.execute(
            sa.select(operations.c.account_id).where(operations.c.id == operation_id)
        ).scalar_one()
        started = ended - timedelta(seconds=seconds)
        run_id = conn.execute(
            runs.insert()
            .values(
                account_id=account_id,
                operation_id=operation_id,
                run_key=key,
                job_name=f"job-{key}",
                run_type=run_type.value,
                trigger="manual",
                status=status.value,
                message=message,
                created_at=started,
                started_at=started,
                completed_at=ended,
                updated_at=ended,
            )
            .returning(runs.c.id)
        ).scalar_one()
        if rows is not None:
            conn.execute(
                data_loads.insert().values(
                    account_id=account_id,
                    operation_id=operation_id,
                    run_id=run_id,
                    tables=[{"name": "orders", "rows": rows}],
                    rows=rows,
                    created_at=ended,
                )
            )
    return int(run_id)


def _history(store: Store, operation_id: int, *, before: datetime, count: int = 10, rows: bool = False) -> None:
    """`count` Completed runs an hour apart, the last 10 min before `before`, of 60-70 s and 9,800-10,400 rows."""
    for index in range(count):
        _run(
            store,
            operation_id,
            RunStatus.COMPLETED,
            ended=before - timedelta(minutes=10, hours=count - 1 - index),
            seconds=60 + index % 3 * 5,
            rows=(9_800, 10_000, 10_400, 10_100, 9_900)[index % 5] if rows else None,
        )


def _all(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(row) for row in conn.execute(sa.select(alerts).order_by(alerts.c.id)).mappings()]


def _kinds(report: EvaluationReport) -> list[AlertKind]:
    return [alert.kind for alert in report.opened]


def _account_id(store: Store, name: str = "default") -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(accounts.c.id).where(accounts.c.name == name)).scalar_one())


# --- failed and completed with errors --------------------------------------------------------------------------------


def test_a_failed_run_alerts_once_and_resolves_on_the_next_success(store: Store) -> None:
    operation_id = _operation(store)
    now = _now(store)
    failed = _run(store, operation_id, RunStatus.FAILED, ended=now - timedelta(minutes=5), message="Extract failed")
    evaluator = AlertEvaluator(store, RULES)

    first = evaluator.evaluate(now)
    assert _kinds(first) == [AlertKind.FAILED]
    alert = first.opened[0]
    assert (alert.run_id, alert.state, alert.evidence) == (failed, AlertState.OPEN, "Extract failed")
    assert alert.summary == f"orders: run {failed} Failed"
    assert evaluator.evaluate(now + timedelta(seconds=5)).opened == ()  # seen again within the overlap: nothing

    later = _run(store, operation_id, RunStatus.COMPLETED, ended=now + timedelta(seconds=30))
    resolved = evaluator.evaluate(now + timedelta(minutes=1)).resolved
    assert [a.id for a in resolved] == [alert.id]
    assert resolved[0].resolution is not None
    assert f"run {later} Completed" in resolved[0].resolution

    # A new leader (no memory) looking back over the same runs raises nothing again: the key is per run.
    again = evaluate_alerts(store, now + timedelta(minutes=2), RULES)
    assert (again.opened, again.resolved) == ((), ())
    assert len(_all(store)) == 1


def test_completed_with_errors_alerts_and_a_failure_then_success_in_one_pass(store: Store) -> None:
    operation_id = _operation(store)
    now = _now(store)
    _run(store, operation_id, RunStatus.COMPLETED_WITH_ERRORS, ended=now - timedelta(minutes=9))
    failed = _run(store, operation_id, RunStatus.FAILED, ended=now - timedelta(minutes=8))
    _run(store, operation_id, RunStatus.COMPLETED, ended=now - timedelta(minutes=7))

    report = evaluate_alerts(store, now, RULES)
    assert sorted(_kinds(report)) == sorted([AlertKind.COMPLETED_WITH_ERRORS, AlertKind.FAILED])
    # Both settled by the later success within the same pass: stored (and notified) opened, then resolved.
    assert {a.run_id for a in report.resolved} == {failed, failed - 1}
    assert all(row["resolved_at"] is not None for row in _all(store))


def test_canceled_runs_and_workflows_raise_nothing(store: Store) -> None:
    operation_id = _operation(store)
    now = _now(store)
    _run(store, operation_id, RunStatus.CANCELED, ended=now - timedelta(minutes=1))
    with store.write() as conn:
        workflow = conn.execute(
            operations.insert()
            .values(
                account_id=_account_id(store),
                environment="",
                configuration_type="workflow",
                configuration_id="nightly",
                spec={},
                created_at=now,
                updated_at=now,
            )
            .returning(operations.c.id)
        ).scalar_one()
    _run(store, workflow, RunStatus.FAILED, ended=now - timedelta(minutes=1))
    assert evaluate_alerts(store, now, RULES).opened == ()


# --- running long ----------------------------------------------------------------------------------------------------


def test_a_slow_run_alerts_while_it_runs_and_resolves_when_it_ends(store: Store) -> None:
    operation_id = _operation(store)
    _history(store, operation_id, before=_now(store))  # runs of 60-70 s
    run = RunService(store).launch(LaunchRequest(operation_id))
    leases = TaskLeases(store, lease_seconds=30)
    claim = leases.claim("test")
    assert claim is not None
    with store.read() as conn:
        started = conn.execute(sa.select(runs.c.started_at).where(runs.c.id == run.id)).scalar_one()
    clock = [started + timedelta(seconds=50)]
    scheduler = Scheduler(
        store,
        sweep_seconds=60,
        cancel_timeout_seconds=60,
        clock=lambda: clock[0],
        evaluate_alerts=AlertEvaluator(store, RULES),
    )

    quiet = scheduler.alerts_once()
    assert isinstance(quiet, EvaluationReport)
    assert quiet.opened == ()  # 50 s: within its normal 60-70 s
    assert quiet.running_runs == 1

    clock[0] = started + timedelta(minutes=42)
    report = scheduler.alerts_once()
    assert isinstance(report, EvaluationReport)
    assert _kinds(report) == [AlertKind.RUNNING_LONG]
    alert = report.opened[0]
    assert alert.evidence == "ran 42 min so far; its last 10 incremental runs took 60\u201370 s"
    with store.read() as conn:  # raised before the run ended
        assert conn.execute(sa.select(runs.c.status).where(runs.c.id == run.id)).scalar_one() == "running"
        assert service.alerts_by_run(conn, [run.id], clock[0])[run.id][0].id == alert.id

    clock[0] += timedelta(seconds=5)
    assert scheduler.alerts_once() == EvaluationReport((), (), 0, 0, 1, 1)  # still running: nothing new

    leases.finish(claim, Outcome(TaskStatus.COMPLETED))
    clock[0] += timedelta(minutes=1)
    ended = scheduler.alerts_once()
    assert isinstance(ended, EvaluationReport)
    assert [a.id for a in ended.resolved] == [alert.id]
    assert ended.resolved[0].resolution is not None
    assert ended.resolved[0].resolution.startswith("the run ended Completed after")


def test_no_running_alert_without_enough_history(store: Store) -> None:
    operation_id = _operation(store)
    _history(store, operation_id, before=_now(store), count=4)
    RunService(store).launch(LaunchRequest(operation_id))
    assert TaskLeases(store, lease_seconds=30).claim("test") is not None
    assert evaluate_alerts(store, _now(store) + timedelta(days=3), RULES).opened == ()


# --- rows ------------------------------------------------------------------------------------------------------------


def test_rows_far_outside_the_usual_range_alert_and_a_usual_run_resolves(store: Store) -> None:
    operation_id = _operation(store)
    now = _now(store)
    _history(store, operation_id, before=now, rows=True)
    few = _run(store, operation_id, RunStatus.COMPLETED, ended=now - timedelta(minutes=3), rows=12)
    evaluator = AlertEvaluator(store, RULES)

    report = evaluator.evaluate(now)
    assert _kinds(report) == [AlertKind.ROWS_LOW]
    assert report.opened[0].run_id == few
    assert report.opened[0].evidence == "loaded 12 rows; its last 10 incremental runs loaded 9,800\u201310,400"

    # Destructive runs have a history of their own: none yet, so no verdict on them.
    _run(store, operation_id, RunStatus.COMPLETED, ended=now, rows=5, run_type=RunType.DESTRUCTIVE)
    assert evaluator.evaluate(now + timedelta(seconds=5)).opened == ()

    usual = _run(store, operation_id, RunStatus.COMPLETED, ended=now + timedelta(minutes=1), rows=10_050)
    resolved = evaluator.evaluate(now + timedelta(minutes=2)).resolved
    assert [a.run_id for a in resolved] == [few]
    assert resolved[0].resolution == f"run {usual} loaded 10,050 rows, within the usual range"

    _run(store, operation_id, RunStatus.COMPLETED, ended=now + timedelta(minutes=3), rows=90_000)
    high = evaluator.evaluate(now + timedelta(minutes=4))
    assert _kinds(high) == [AlertKind.ROWS_HIGH]
    assert evaluate_alerts(store, now + timedelta(minutes=5), RULES).opened == ()  # a restart: nothing twice


# --- overdue ---------------------------------------------------------------------------------------------------------


def test_a_scheduled_source_without_a_success_in_its_interval_is_overdue(store: Store) -> None:
    operation_id = _operation(store, schedule="0 * * * *")  # hourly
    now = _now(store)
    _run(store, operation_id, RunStatus.COMPLETED, ended=now - timedelta(minutes=30))
    evaluator = AlertEvaluator(store, RULES)
    assert evaluator.evaluate(now).opened == ()
    assert evaluator.evaluate(now + timedelta(minutes=35)).opened == ()  # 65 min: within 1 h + 10 min grace

    late = evaluator.evaluate(now + timedelta(minutes=45))
    assert _kinds(late) == [AlertKind.OVERDUE]
    assert late.opened[0].evidence == "last successful run 75 min ago; its schedule '0 * * * *' fired 60 min apart"
    assert evaluator.evaluate(now + timedelta(minutes=50)).opened == ()

    back = _run(store, operation_id, RunStatus.COMPLETED, ended=now + timedelta(minutes=51))
    resolved = evaluator.evaluate(now + timedelta(minutes=52)).resolved
    assert [a.kind for a in resolved] == [AlertKind.OVERDUE]
    assert resolved[0].resolution is not None
    assert resolved[0].resolution.startswith(f"run {back} succeeded at")


def test_a_source_is_overdue_from_its_history_and_not_once_deactivated(store: Store) -> None:
    operation_id = _operation(store)
    now = _now(store)
    for hours in range(8, 0, -1):  # hourly successes, the last an hour ago
        _run(store, operation_id, RunStatus.COMPLETED, ended=now - timedelta(hours=hours))
    evaluator = AlertEvaluator(store, RULES)
    assert evaluator.evaluate(now).opened == ()

    late = evaluator.evaluate(now + timedelta(hours=2))
    assert _kinds(late) == [AlertKind.OVERDUE]
    assert "its last 8 successful runs started 60 min apart" in late.opened[0].evidence

    with store.write() as conn:
        conn.execute(operations.update().where(operations.c.id == operation_id).values(activated=False))
    resolved = evaluator.evaluate(now + timedelta(hours=2, seconds=5)).resolved
    assert [a.kind for a in resolved] == [AlertKind.OVERDUE]
    assert resolved[0].resolution is not None
    assert "no longer active" in resolved[0].resolution


# --- notifications, silence, reads -----------------------------------------------------------------------------------


def test_each_opening_and_resolution_is_notified_in_its_transaction(store: Store) -> None:
    operation_id = _operation(store)
    account_id = _account_id(store)
    now = _now(store)
    with store.write() as conn:
        channel = conn.execute(
            notification_channels.insert()
            .values(account_id=account_id, name="ops", kind="webhook", target="https://hooks.example/x", created_at=now)
            .returning(notification_channels.c.id)
        ).scalar_one()
        conn.execute(
            notification_rules.insert().values(
                account_id=account_id, channel_id=channel, kinds=None, notify_resolved=True, created_at=now
            )
        )
    _run(store, operation_id, RunStatus.FAILED, ended=now - timedelta(minutes=1))
    assert evaluate_alerts(store, now, RULES).notifications == 1
    _run(store, operation_id, RunStatus.COMPLETED, ended=now + timedelta(seconds=1))
    assert evaluate_alerts(store, now + timedelta(seconds=2), RULES).notifications == 1
    with store.read() as conn:
        events = conn.execute(sa.select(notification_deliveries.c.event).order_by(notification_deliveries.c.id))
        assert list(events.scalars()) == ["opened", "resolved"]


def _failed_alert(store: Store, account: str = "default", name: str = "orders") -> tuple[Alert, datetime]:
    operation_id = _operation(store, name, account=account)
    now = _now(store)
    _run(store, operation_id, RunStatus.FAILED, ended=now - timedelta(minutes=1))
    opened = evaluate_alerts(store, now, RULES).opened
    assert len(opened) == 1
    return opened[0], now


def test_silence_for_a_time_then_open_again(store: Store) -> None:
    alert, now = _failed_alert(store)
    account_id = alert.account_id
    silenced = service.silence(store, account_id, alert.id, until=now + timedelta(hours=1), user_id=None, now=now)
    assert silenced.state is AlertState.SILENCED
    with store.read() as conn:
        assert service.open_alert_counts(conn, account_id, now) == {}
        assert service.list_alerts(conn, account_id, now=now, state=AlertState.OPEN) == ([], 0)
        assert service.list_alerts(conn, account_id, now=now, state=AlertState.SILENCED)[1] == 1
        later = now + timedelta(hours=2)  # the silence ended by itself
        assert service.get_alert(conn, account_id, alert.id, later).state is AlertState.OPEN
        assert service.open_alert_counts(conn, account_id, later) == {alert.operation_id: 1}
    back = service.unsilence(store, account_id, alert.id, user_id=None, now=now + timedelta(minutes=1))
    assert (back.state, back.silenced_until) == (AlertState.OPEN, None)


def test_reads_stay_within_the_account(store: Store) -> None:
    alert, now = _failed_alert(store)
    with store.write() as conn:
        other = conn.execute(accounts.insert().values(name="globex", created_at=now).returning(accounts.c.id))
        other_id = other.scalar_one()
    with store.read() as conn:
        with pytest.raises(NotFound):
            service.get_alert(conn, other_id, alert.id, now)
        assert service.list_alerts(conn, other_id, now=now) == ([], 0)
        found, total = service.list_alerts(conn, alert.account_id, now=now, kind=AlertKind.FAILED, page_size=1)
        assert (total, [a.id for a in found]) == (1, [alert.id])
        assert service.list_alerts(conn, alert.account_id, now=now, kind=AlertKind.OVERDUE)[1] == 0
    with pytest.raises(NotFound):
        service.silence(store, other_id, alert.id, until=now + timedelta(hours=1), user_id=None, now=now)


def test_a_resolved_alert_cannot_be_silenced(store: Store) -> None:
    alert, now = _failed_alert(store)
    _run(store, alert.operation_id, RunStatus.COMPLETED, ended=now + timedelta(seconds=1))
    evaluate_alerts(store, now + timedelta(seconds=2), RULES)
    with pytest.raises(Conflict):
        service.silence(store, alert.account_id, alert.id, until=now + timedelta(hours=1), user_id=None, now=now)
