"""Launch, run, cancel and retry through the services and an in-process worker, on both databases."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus, Trigger
from runyard.errors import CancelNotAllowed, NotFound, RetryNotAllowed, RunRejected
from runyard.operations.tasks.executors import BUILTIN
from runyard.services.listing import RunQuery, list_runs
from runyard.services.listing import run_tasks as list_tasks
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.tasks import TaskLeases
from runyard.services.views import RunView
from runyard.services.wakeup import Wakeup
from runyard.store.database import Store
from runyard.store.tables import run_events, runs, task_attempts, tasks
from runyard.worker.scheduler import forget_outputs
from runyard.worker.worker import Worker
from tests.factories import make_operation, sleep_task

DEADLINE_SECONDS = 20.0


@pytest.fixture
def wakeup() -> Wakeup:
    return Wakeup()


@pytest.fixture
def service(store: Store, wakeup: Wakeup) -> RunService:
    return RunService(store, wakeup)


@pytest.fixture
def start_worker(store: Store, wakeup: Wakeup) -> Iterator[Callable[[], Worker]]:
    started: list[Worker] = []

    def start() -> Worker:
        leases = TaskLeases(store, lease_seconds=3, wakeup=wakeup)
        worker = Worker(leases, BUILTIN, concurrency=2, heartbeat_seconds=0.2, poll_seconds=0.2, wakeup=wakeup)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(grace_seconds=5)


def wait_for(service: RunService, run_id: int, done: Callable[[RunView], bool]) -> RunView:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        view = service.get_run(run_id)
        if done(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is still {service.get_run(run_id).status.label}")


def final(service: RunService, run_id: int) -> RunView:
    return wait_for(service, run_id, lambda v: v.status.is_final)


def task_statuses(store: Store, run_id: int) -> dict[str, TaskStatus]:
    with store.read() as conn:
        return {t.name: t.status for t in list_tasks(conn, run_id)}


def test_a_launched_run_runs_its_tasks_in_order(store: Store, service: RunService, start_worker) -> None:  # type: ignore[no-untyped-def]
    operation = make_operation(store)
    view = service.launch(LaunchRequest(operation_id=operation))
    assert view.status is RunStatus.WAITING_TO_START
    assert view.run_key in view.job_name
    assert "#" in view.job_name
    start_worker()
    done = final(service, view.id)
    assert done.status is RunStatus.COMPLETED
    assert done.started_at is not None
    assert done.completed_at is not None
    with store.read() as conn:
        rows = conn.execute(sa.select(tasks.c.name, tasks.c.started_at, tasks.c.completed_at).order_by(tasks.c.id))
        first, second = rows.all()
        kinds = conn.execute(sa.select(run_events.c.kind).where(run_events.c.run_id == view.id)).scalars().all()
    assert first.completed_at <= second.started_at
    assert kinds[0] == "run_created"
    assert kinds[-1] == "run_finished"


def test_second_launch_is_rejected_and_records_its_blocker(store: Store, service: RunService) -> None:
    operation = make_operation(store)
    active = service.launch(LaunchRequest(operation_id=operation))
    with pytest.raises(RunRejected, match="previous load still running") as caught:
        service.launch(LaunchRequest(operation_id=operation))
    rejected = service.get_run(caught.value.rejected_run_id)
    assert rejected.status is RunStatus.REJECTED
    assert rejected.blocked_by == active.id
    assert rejected.completed_at is not None
    with store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(tasks).where(tasks.c.run_id == rejected.id))
        assert count.scalar_one() == 0


def test_a_failing_required_task_fails_the_run_and_skips_what_depends_on_it(
    store: Store, service: RunService, start_worker
) -> None:  # type: ignore[no-untyped-def]
    tasks_spec = [
        {"name": "extract", "executor": "fail", "params": {"message": "the API answered 500 three times"}},
        sleep_task("load", depends_on=["extract"]),
    ]
    operation = make_operation(store, tasks_spec)
    run = service.launch(LaunchRequest(operation_id=operation))
    start_worker()
    assert final(service, run.id).status is RunStatus.FAILED
    assert task_statuses(store, run.id) == {"extract": TaskStatus.FAILED, "load": TaskStatus.SKIPPED}
    with store.read() as conn:
        (extract, _) = list_tasks(conn, run.id)
    assert extract.messages[-1].text == "the API answered 500 three times"


def test_an_optional_task_failing_gives_completed_with_errors(store: Store, service: RunService, start_worker) -> None:  # type: ignore[no-untyped-def]
    tasks_spec = [
        {"name": "optional", "executor": "fail", "required": False},
        sleep_task("other"),
        {"name": "Data Load", "executor": "noop", "depends_on": [{"task": "optional", "soft": True}, "other"]},
    ]
    run = service.launch(LaunchRequest(operation_id=make_operation(store, tasks_spec)))
    start_worker()
    assert final(service, run.id).status is RunStatus.COMPLETED_WITH_ERRORS
    assert task_statuses(store, run.id)["Data Load"] is TaskStatus.COMPLETED


def test_cancel_a_running_run(store: Store, service: RunService, start_worker) -> None:  # type: ignore[no-untyped-def]
    operation = make_operation(store, [sleep_task("long", 30, units=300), sleep_task("after", depends_on=["long"])])
    run = service.launch(LaunchRequest(operation_id=operation))
    start_worker()
    wait_for(service, run.id, lambda v: v.status is RunStatus.RUNNING)
    canceling = service.cancel(run.id)
    assert canceling.status in (RunStatus.CANCELING, RunStatus.CANCELED)
    with pytest.raises(CancelNotAllowed):
        service.cancel(run.id)
    done = final(service, run.id)
    assert done.status is RunStatus.CANCELED
    assert task_statuses(store, run.id) == {"long": TaskStatus.CANCELED, "after": TaskStatus.CANCELED}
    # accepted again at once; the running worker may already have claimed its first task
    relaunched = service.launch(LaunchRequest(operation_id=operation))
    assert relaunched.status in (RunStatus.WAITING_TO_START, RunStatus.RUNNING)
    assert relaunched.blocked_by is None


def test_cancel_a_waiting_run_ends_it_at_once(store: Store, service: RunService) -> None:
    run = service.launch(LaunchRequest(operation_id=make_operation(store)))
    assert service.cancel(run.id).status is RunStatus.CANCELED
    with pytest.raises(CancelNotAllowed, match="already ended as Canceled"):
        service.cancel(run.id)


def test_retry_reuses_completed_reusable_tasks(store: Store, service: RunService, start_worker) -> None:  # type: ignore[no-untyped-def]
    tasks_spec = [
        sleep_task("Process [a]", reusable=True, params={"table": "a", "records_per_unit": 5}),
        {"name": "Data Load", "executor": "fail", "depends_on": ["Process [a]"]},
    ]
    operation = make_operation(store, tasks_spec)
    first = service.launch(LaunchRequest(operation_id=operation))
    start_worker()
    assert final(service, first.id).status is RunStatus.FAILED
    with store.write() as conn:  # the operator fixes the cause: the load now succeeds
        conn.execute(tasks.update().where(tasks.c.name == "Data Load").values(executor="noop"))
    retry = service.retry(first.id)
    assert retry.retry_of == first.id
    assert retry.trigger is Trigger.RETRY
    with store.read() as conn:
        process = list_tasks(conn, retry.id)[0]
    assert process.status is TaskStatus.COMPLETED
    assert process.reused_from is not None
    assert "Reused the output" in process.messages[0].text
    # the retry's own Data Load still uses the planned executor (fail): the plan comes from the operation
    assert final(service, retry.id).status is RunStatus.FAILED
    with store.read() as conn:
        attempts = conn.execute(
            sa.select(sa.func.count()).select_from(task_attempts).where(task_attempts.c.task_id == process.id)
        ).scalar_one()
    assert attempts == 0  # the reused task never ran


def test_outputs_forgotten_by_the_staging_sweep_are_not_reused_unless_a_run_going_reuses_them(  # type: ignore[no-untyped-def]
    store: Store, service: RunService, start_worker
) -> None:
    tasks_spec = [
        sleep_task("Process [a]", reusable=True, params={"table": "a", "records_per_unit": 5}),
        {"name": "Data Load", "executor": "fail", "depends_on": ["Process [a]"]},
    ]
    first = service.launch(LaunchRequest(operation_id=make_operation(store, tasks_spec)))
    worker = start_worker()
    assert final(service, first.id).status is RunStatus.FAILED
    worker.stop(grace_seconds=5)
    second = service.retry(first.id)  # reuses Process [a] of the first run, and goes on while no worker runs it
    assert not forget_outputs(store, first.run_key)  # a run going reuses them: nothing changes
    with store.read() as conn:
        assert list_tasks(conn, second.id)[0].reused_from is not None
    start_worker()
    assert final(service, second.id).status is RunStatus.FAILED

    assert forget_outputs(store, first.run_key)
    third = service.retry(second.id)
    with store.read() as conn:
        process = list_tasks(conn, third.id)[0]
    assert process.reused_from is None  # run again, not reused from the first run's removed files
    assert final(service, third.id).status is RunStatus.FAILED
    with store.read() as conn:
        attempts = conn.execute(
            sa.select(sa.func.count()).select_from(task_attempts).where(task_attempts.c.task_id == process.id)
        ).scalar_one()
    assert attempts == 1


def test_retry_only_the_latest_failed_or_canceled_run(store: Store, service: RunService) -> None:
    operation = make_operation(store)
    first = service.launch(LaunchRequest(operation_id=operation))
    with pytest.raises(RetryNotAllowed, match="Waiting to Start"):
        service.retry(first.id)
    service.cancel(first.id)
    second = service.retry(first.id)
    service.cancel(second.id)
    with pytest.raises(RetryNotAllowed, match=f"run {second.id} is more recent"):
        service.retry(first.id)
    active = service.launch(LaunchRequest(operation_id=operation))
    with pytest.raises(RunRejected):  # a rejected launch does not count as "the latest run"
        service.launch(LaunchRequest(operation_id=operation))
    service.cancel(active.id)
    assert service.retry(active.id).retry_of == active.id
    with pytest.raises(NotFound):
        service.retry(9999)


def test_runs_are_listed_with_filters(store: Store, service: RunService) -> None:
    op_a = make_operation(store, configuration_id="a")
    op_b = make_operation(store, configuration_id="b")
    run_a = service.launch(LaunchRequest(operation_id=op_a))
    service.launch(LaunchRequest(operation_id=op_b))
    service.cancel(run_a.id)
    with store.read() as conn:
        page = list_runs(conn, RunQuery(account_id=None, operation_id=op_a))
        items, total = list(page.items), page.total
        assert total == 1
        assert items[0].id == run_a.id
        canceled = list(list_runs(conn, RunQuery(account_id=None, status=RunStatus.CANCELED)).items)
        assert [r.id for r in canceled] == [run_a.id]
        ordered = list(list_runs(conn, RunQuery(account_id=None, sort="id", order="asc")).items)
        assert [r.id for r in ordered] == sorted(r.id for r in ordered)
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one() == 2
