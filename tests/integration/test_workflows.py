"""Workflows on both databases: spec 003's JA/JB/JC -> JT story, a busy target, reset, and what a workflow shows.

The upstream and target jobs are `tasks` operations run by a real in-process worker; a failing upstream is the
same operation redeployed with a failing task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus, Trigger
from runyard.errors import ConfigError, Conflict
from runyard.operations import registry
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.operations.workflow.spec import WorkflowOperation
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.tasks import Outcome, TaskLeases
from runyard.services.views import RunView
from runyard.services.wakeup import Wakeup
from runyard.services.workflows import WorkflowStatus, fire_pending, reset_workflow, workflow_status
from runyard.store.database import Store
from runyard.store.tables import operations, runs
from runyard.worker.worker import Worker
from tests.factories import make_account, sleep_task

DEADLINE_SECONDS = 20.0
UPSTREAMS = ("JA", "JB", "JC")


def tasks_spec(name: str, *, failing: bool = False) -> TaskGraphOperation:
    task = {"name": "work", "executor": "fail", "params": {}} if failing else sleep_task("work")
    return TaskGraphOperation.model_validate({"configuration_type": "tasks", "configuration_id": name, "tasks": [task]})


def workflow_spec(upstreams: tuple[str, ...] = UPSTREAMS, target: str = "JT", **extra: Any) -> WorkflowOperation:
    return WorkflowOperation.model_validate(
        {
            "configuration_type": "workflow",
            "configuration_id": "load-pda",
            # by job_id and by identity, as a configuration may mix them
            "authorized_job_ids": [
                f"tasks|default|{name}|DEV"
                if index % 2 == 0
                else {"configuration_type": "tasks", "configuration_id": name}
                for index, name in enumerate(upstreams)
            ],
            "target_dag": {"configuration_type": "tasks", "configuration_id": target},
            **extra,
        }
    )


class Story:
    """Deployed jobs, a worker, and the moves of the story."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.wakeup = Wakeup()
        self.runs = RunService(store, self.wakeup)
        make_account(store)
        deployed = deploy(store, [tasks_spec(name) for name in (*UPSTREAMS, "JT")], BUILTIN)
        self.ids = {d.configuration_id: d.operation_id for d in deployed}
        self.workflow = deploy(store, [workflow_spec()], BUILTIN)[0].operation_id

    def run(self, name: str) -> RunView:
        """Launch `name` and wait for its run to end."""
        return self.wait(self.runs.launch(LaunchRequest(operation_id=self.ids[name])).id)

    def wait(self, run_id: int) -> RunView:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            view = self.runs.get_run(run_id)
            if view.status.is_final:
                return view
            time.sleep(0.02)
        raise AssertionError(f"run {run_id} is still {self.runs.get_run(run_id).status.label}")

    def target_runs(self) -> list[tuple[int, str, str]]:
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.trigger, runs.c.status)
                .where(runs.c.operation_id == self.ids["JT"])
                .order_by(runs.c.id)
            )
            return [(row.id, row.trigger, row.status) for row in rows]

    def counts(self) -> dict[str, int]:
        return {upstream.configuration_id: upstream.successes for upstream in self.status().upstreams}

    def status(self) -> WorkflowStatus:
        with self.store.read() as conn:
            return workflow_status(conn, self.workflow)

    def redeploy(self, name: str, *, failing: bool) -> None:
        deploy(self.store, [tasks_spec(name, failing=failing)], BUILTIN)


@pytest.fixture
def story(store: Store) -> Iterator[Story]:
    told = Story(store)
    worker = Worker(
        TaskLeases(store, lease_seconds=5, wakeup=told.wakeup),
        BUILTIN,
        concurrency=2,
        heartbeat_seconds=0.5,
        poll_seconds=0.2,
        wakeup=told.wakeup,
    )
    worker.start()
    yield told
    worker.stop(grace_seconds=5)


def wait_for_target(story: Story, count: int) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        found = story.target_runs()
        if len(found) >= count and all(RunStatus(status).is_final for _, _, status in found):
            return found
        time.sleep(0.02)
    raise AssertionError(f"the target has runs {story.target_runs()}, expected {count} ended")


def test_spec_003_story_ja_jb_jc_then_jt(story: Story) -> None:
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 0}
    # JA and JB are OK, JC is not: JT is not triggered.
    assert story.run("JA").status is RunStatus.COMPLETED
    assert story.run("JB").status is RunStatus.COMPLETED
    story.redeploy("JC", failing=True)
    assert story.run("JC").status is RunStatus.FAILED
    assert story.target_runs() == []
    status = story.status()
    assert story.counts() == {"JA": 1, "JB": 1, "JC": 0}
    assert not status.satisfied
    assert [u.configuration_id for u in status.waiting_for] == ["JC"]
    assert status.upstreams[0].last_success_at is not None
    assert status.upstreams[2].last_success_at is None
    # JC fixed and relaunched: JT is triggered, and one success of each upstream is consumed.
    story.redeploy("JC", failing=False)
    assert story.run("JC").status is RunStatus.COMPLETED
    [(first_target, trigger, status_value)] = wait_for_target(story, 1)
    assert trigger == Trigger.WORKFLOW.value
    assert status_value == RunStatus.COMPLETED.value
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 0}
    assert story.status().last_trigger_run_id == first_target
    # The next morning JC runs again: JA(0), JB(0), JC(1), the unbalanced situation.
    assert story.run("JC").status is RunStatus.COMPLETED
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 1}
    # Without a reset, JA and JB later would trigger JT on yesterday's JC: shown by running them...
    assert story.run("JA").status is RunStatus.COMPLETED
    assert len(story.target_runs()) == 1
    assert story.run("JB").status is RunStatus.COMPLETED
    assert len(wait_for_target(story, 2)) == 2
    # ... so a reset restores a clean start: JC(1) forgotten, and JT waits for all three again.
    assert story.run("JC").status is RunStatus.COMPLETED
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 1}
    reset_workflow(story.store, story.workflow)
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 0}
    assert story.status().reset_at is not None
    story.run("JA")
    story.run("JB")
    assert len(story.target_runs()) == 2
    assert story.counts() == {"JA": 1, "JB": 1, "JC": 0}
    story.run("JC")
    assert len(wait_for_target(story, 3)) == 3
    assert story.counts() == {"JA": 0, "JB": 0, "JC": 0}


def test_a_busy_target_gives_a_rejected_run_and_keeps_the_successes(store: Store) -> None:
    told = Story(store)  # no worker: runs stay where the test puts them
    target_run = told.runs.launch(LaunchRequest(operation_id=told.ids["JT"])).id
    leases = TaskLeases(store, lease_seconds=30)
    target_claim = leases.claim("test")  # the target's run is Running
    assert target_claim is not None
    assert target_claim.run_id == target_run
    for name in UPSTREAMS:
        run_id = told.runs.launch(LaunchRequest(operation_id=told.ids[name])).id
        finish_only_task(store, leases, run_id)
    rows = told.target_runs()
    assert [(status, trigger) for _, trigger, status in rows] == [
        (RunStatus.RUNNING.value, Trigger.MANUAL.value),
        (RunStatus.REJECTED.value, Trigger.WORKFLOW.value),
    ]
    with store.read() as conn:
        blocked_by = conn.execute(sa.select(runs.c.blocked_by).where(runs.c.id == rows[1][0])).scalar()
    assert blocked_by == target_run
    assert told.counts() == {"JA": 1, "JB": 1, "JC": 1}  # not consumed
    assert told.status().last_trigger_run_id == rows[1][0]
    # Evaluated once: sweeping again does not pile up Rejected runs.
    assert fire_pending(store, told.runs) == []
    assert len(told.target_runs()) == 2
    # Once the target is free, the next upstream success launches it, consuming one of each.
    leases.finish(target_claim, Outcome(TaskStatus.COMPLETED))
    run_id = told.runs.launch(LaunchRequest(operation_id=told.ids["JA"])).id
    finish_only_task(store, leases, run_id)
    assert [trigger for _, trigger, _ in told.target_runs()] == ["manual", "workflow", "workflow"]
    assert told.counts() == {"JA": 1, "JB": 0, "JC": 0}


def finish_only_task(store: Store, leases: TaskLeases, run_id: int) -> None:
    """Claim the ready task of run `run_id` and complete it (every run here has one task)."""
    claim = leases.claim("test")
    assert claim is not None
    assert claim.run_id == run_id, claim
    leases.finish(claim, Outcome(TaskStatus.COMPLETED))


def test_a_deactivated_workflow_or_target_launches_nothing_and_keeps_counts(store: Store) -> None:
    told = Story(store)
    leases = TaskLeases(store, lease_seconds=30)
    deploy(store, [tasks_spec("JT").model_copy(update={"activated": False})], BUILTIN)
    for name in UPSTREAMS:
        finish_only_task(store, leases, told.runs.launch(LaunchRequest(operation_id=told.ids[name])).id)
    assert told.target_runs() == []
    assert told.counts() == {"JA": 1, "JB": 1, "JC": 1}


def test_a_workflow_is_not_launched_itself(store: Store) -> None:
    told = Story(store)
    with pytest.raises(Conflict, match="is a workflow, which is not launched: launches a target job once each"):
        told.runs.launch(LaunchRequest(operation_id=told.workflow))


def test_redeploying_keeps_the_counts_of_upstreams_still_named(store: Store) -> None:
    told = Story(store)
    leases = TaskLeases(store, lease_seconds=30)
    finish_only_task(store, leases, told.runs.launch(LaunchRequest(operation_id=told.ids["JA"])).id)
    finish_only_task(store, leases, told.runs.launch(LaunchRequest(operation_id=told.ids["JC"])).id)
    deploy(store, [workflow_spec(("JC", "JA"))], BUILTIN)
    assert [(u.configuration_id, u.successes) for u in told.status().upstreams] == [("JC", 1), ("JA", 1)]
    # the two remaining upstreams are satisfied, but nothing succeeded since: the target waits for a success
    assert told.target_runs() == []
    deploy(store, [workflow_spec(("JB", "JA", "JC"))], BUILTIN)
    assert [(u.configuration_id, u.successes) for u in told.status().upstreams] == [("JB", 0), ("JA", 1), ("JC", 1)]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"schedule": "0 6 * * *"}, "schedule", "launched by its upstream jobs"),
        ({"authorized_job_ids": ["nope|x"]}, "authorized_job_ids.0.job_id", "not a job type"),
        ({"authorized_job_ids": ["tasks|x|y"]}, "authorized_job_ids.0.job_id", "not in a known form"),
        ({"authorized_job_ids": ["JA", "tasks|default|JA|DEV"]}, "authorized_job_ids.0.job_id", "not a job type"),
        (
            {"authorized_job_ids": ["tasks|default|JA|DEV", {"configuration_type": "tasks", "configuration_id": "JA"}]},
            "authorized_job_ids.1",
            "named twice",
        ),
        ({"authorized_job_ids": ["tasks|other|JA|DEV"]}, "authorized_job_ids.0", "its own account"),
        ({"target_dag": {"configuration_type": "workflow", "configuration_id": "w"}}, "target_dag", "not a workflow"),
        ({"target_dag": {"configuration_type": "bi-view", "configuration_id": "v"}}, "target_dag", "not a bi-view"),
        ({"authorized_job_ids": ["bi-view|default|v|DEV"]}, "authorized_job_ids.0", "never runs"),
        ({"target_dag": {"job_id": "tasks|default|JA|DEV"}}, "target_dag", "also an upstream"),
        (
            {"target_dag": {"configuration_type": "nope", "configuration_id": "w"}},
            "target_dag.configuration_type",
            "not a configuration type",
        ),
    ],
)
def test_deploy_refuses_a_workflow_that_cannot_work(change: dict[str, Any], field: str, message: str) -> None:
    spec = workflow_spec(**{key: value for key, value in change.items() if key == "schedule"})
    data = {**spec.model_dump(mode="json"), **change}
    with pytest.raises(ConfigError, match=message) as raised:
        registry.operation_type("workflow").check(WorkflowOperation.model_validate(data), _any_check())
    assert raised.value.field == field


def _any_check() -> Any:
    from runyard.operations.definition import DeployCheck

    return DeployCheck(executors=BUILTIN)


def test_a_job_entry_needs_a_job_id_or_an_identity() -> None:
    with pytest.raises(ValueError, match="by job_id, or by both configuration_type and configuration_id"):
        WorkflowOperation.model_validate(
            {**workflow_spec().model_dump(mode="json"), "target_dag": {"configuration_type": "tasks"}}
        )


def test_table_to_table_targets_are_named_as_spec_003_names_them(store: Store) -> None:
    """`gbq-to-gbq|<id>_DEV` and an identity without the _DEV suffix both name the deployed table-to-table."""
    make_account(store)
    data = {
        "configuration_type": "workflow",
        "configuration_id": "load-pda",
        "authorized_job_ids": ["gbq-to-gbq|prepare_DEV"],
        "target_dag": {"configuration_type": "table-to-table", "configuration_id": "load"},
    }
    deployed = deploy(store, [WorkflowOperation.model_validate(data)], BUILTIN)[0].operation_id
    with store.read() as conn:
        status = workflow_status(conn, deployed)
        kind = conn.execute(sa.select(operations.c.configuration_type).where(operations.c.id == deployed)).scalar()
    assert kind == "workflow"
    assert [(u.configuration_type, u.configuration_id, u.job_id) for u in status.upstreams] == [
        ("table-to-table", "prepare_DEV", "gbq-to-gbq|prepare_DEV")
    ]
    assert status.target_job_id == "gbq-to-gbq|load_DEV"
    assert status.target_operation_id is None  # not deployed yet


def test_the_leading_scheduler_launches_what_a_dead_process_left_pending(store: Store) -> None:
    """A success counted by a process that died before it evaluated the workflow: the scheduler's sweep does it."""
    from runyard.services.workflow_counts import count_success
    from runyard.worker.scheduler import Scheduler

    told = Story(store)
    leases = TaskLeases(store, lease_seconds=30)
    for name in ("JA", "JB"):
        finish_only_task(store, leases, told.runs.launch(LaunchRequest(operation_id=told.ids[name])).id)
    # JC's run ends and is counted, then its process dies before launching the target: only the count is written
    jc_run = told.runs.launch(LaunchRequest(operation_id=told.ids["JC"])).id
    with store.write() as conn:
        assert count_success(conn, jc_run, store.now(conn)) == [told.workflow]
    assert told.target_runs() == []
    scheduler = Scheduler(store, sweep_seconds=0.05, cancel_timeout_seconds=60, runs=told.runs)
    scheduler.start()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not told.target_runs():
            assert time.monotonic() < deadline, "the scheduler did not launch the pending workflow's target"
            time.sleep(0.02)
    finally:
        scheduler.stop()
    assert [trigger for _, trigger, _ in told.target_runs()] == ["workflow"]
    assert told.counts() == {"JA": 0, "JB": 0, "JC": 0}
