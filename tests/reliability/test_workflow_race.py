"""Two upstream runs succeeding at the same instant, in two processes, launch the workflow's target exactly once.

Each round, two real OS processes (spawned, with their own store connections) each claim one of the two
upstream tasks, wait at a barrier, and finish together: both count a success and both evaluate the workflow.
Whatever the interleaving, one target run is launched, and both successes are consumed.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import sqlalchemy as sa

from runyard.domain.statuses import RunStatus, TaskStatus, Trigger
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.operations.workflow.spec import WorkflowOperation
from runyard.services.operations import deploy
from runyard.services.runs import LaunchRequest, RunService
from runyard.services.tasks import Outcome, TaskLeases
from runyard.services.workflows import workflow_status
from runyard.store.database import Store
from runyard.store.tables import runs
from tests.factories import make_account, sleep_task

ROUNDS = 8
CHILD_TIMEOUT = 60.0


def finish_one_task(database_url: str, barrier: Barrier) -> None:
    """In a child process: claim one ready task, wait for the other child, then complete it."""
    store = Store(database_url)
    try:
        leases = TaskLeases(store, lease_seconds=60)
        claim = leases.claim(f"child-{multiprocessing.current_process().pid}")
        assert claim is not None, "no task to claim"
        barrier.wait(CHILD_TIMEOUT)
        leases.finish(claim, Outcome(TaskStatus.COMPLETED))
    finally:
        store.dispose()


def test_two_upstreams_succeeding_at_once_in_two_processes_trigger_once(store: Store, database_url: str) -> None:
    make_account(store)
    jobs = [
        TaskGraphOperation.model_validate(
            {"configuration_type": "tasks", "configuration_id": name, "tasks": [sleep_task("work")]}
        )
        for name in ("JA", "JB", "JT")
    ]
    ids = {d.configuration_id: d.operation_id for d in deploy(store, jobs, BUILTIN)}
    workflow = WorkflowOperation.model_validate(
        {
            "configuration_type": "workflow",
            "configuration_id": "race",
            "authorized_job_ids": ["tasks|default|JA|DEV", "tasks|default|JB|DEV"],
            "target_dag": {"configuration_type": "tasks", "configuration_id": "JT"},
        }
    )
    workflow_id = deploy(store, [workflow], BUILTIN)[0].operation_id
    service = RunService(store)
    context = multiprocessing.get_context("spawn")
    for round_number in range(ROUNDS):
        for name in ("JA", "JB"):
            service.launch(LaunchRequest(operation_id=ids[name]))
        barrier = context.Barrier(2)
        children = [context.Process(target=finish_one_task, args=(database_url, barrier)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(CHILD_TIMEOUT)
            assert child.exitcode == 0, f"round {round_number}: a child failed ({child.exitcode})"
        with store.read() as conn:
            targets = conn.execute(
                sa.select(runs.c.id, runs.c.trigger, runs.c.status).where(
                    runs.c.operation_id == ids["JT"], runs.c.status != RunStatus.CANCELED.value
                )
            ).all()
            counts = [u.successes for u in workflow_status(conn, workflow_id).upstreams]
        assert [(row.trigger, row.status) for row in targets] == [
            (Trigger.WORKFLOW.value, RunStatus.WAITING_TO_START.value)
        ], f"round {round_number}"
        assert counts == [0, 0], f"round {round_number}"
        service.cancel(targets[0].id)  # the next round's target is free again
