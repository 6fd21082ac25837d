"""Operation schedules on both stores, driven by a clock the test moves (no sleeps): which ticks fire, once each,
what they launch, and what the API and the Sources page show.

The rules under test are runyard.services.schedules's docstring. Each scenario pins the operation's `updated_at`
(when its schedule started to count) to a fixed moment, so that every time in it is written out.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from runyard.domain.schedules import next_tick, previous_tick
from runyard.domain.statuses import RunStatus, RunType, Trigger
from runyard.errors import ConfigError
from runyard.operations.loader import load_text
from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services.operations import deploy, preview_deploy, set_status
from runyard.services.runs import RunService
from runyard.services.schedules import TickOutcome
from runyard.store.database import Store
from runyard.store.tables import operation_schedules, operations, runs
from runyard.worker.leader import leadership_for
from runyard.worker.scheduler import Scheduler
from tests.factories import make_account
from tests.integration.rest_harness import RestStack, rest_stack, wait_for
from tests.integration.ui_client import signed_in

PARIS = "Europe/Paris"
DEPLOYED = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)  # every scenario's schedule starts to count here


class Clock:
    """A clock the test sets: what Scheduler(clock=...) reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(
        self, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
    ) -> datetime:
        self.now = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        return self.now


def spec(configuration_id: str, cron: str | None, timezone: str = "UTC") -> TaskGraphOperation:
    data: dict[str, Any] = {
        "configuration_type": "tasks",
        "configuration_id": configuration_id,
        "schedule": cron,
        "tasks": [{"name": "Process [employees]", "executor": "noop"}],
    }
    if timezone != "UTC":
        data["schedule_timezone"] = timezone
    return TaskGraphOperation.model_validate(data)


def scheduled(store: Store, cron: str, timezone: str = "UTC", configuration_id: str = "nightly") -> int:
    """Deploy a scheduled `tasks` operation, as if at DEPLOYED; its id."""
    make_account(store)
    (deployed,) = deploy(store, [spec(configuration_id, cron, timezone)], BUILTIN)
    changed_at(store, deployed.operation_id, DEPLOYED)
    return deployed.operation_id


def changed_at(store: Store, operation_id: int, moment: datetime) -> None:
    """Pretend the operation's last change (deploy, state) happened at `moment`."""
    with store.write() as conn:
        conn.execute(operations.update().where(operations.c.id == operation_id).values(updated_at=moment))


def updated_at(store: Store, operation_id: int) -> datetime:
    with store.read() as conn:
        value = conn.execute(sa.select(operations.c.updated_at).where(operations.c.id == operation_id)).scalar_one()
    assert isinstance(value, datetime)
    return value


def schedule_runs(store: Store, operation_id: int) -> list[sa.RowMapping]:
    with store.read() as conn:
        return list(
            conn.execute(
                sa.select(runs)
                .where(runs.c.operation_id == operation_id, runs.c.trigger == "schedule")
                .order_by(runs.c.id)
            ).mappings()
        )


def handled(store: Store, operation_id: int) -> sa.RowMapping | None:
    with store.read() as conn:
        return (
            conn.execute(sa.select(operation_schedules).where(operation_schedules.c.operation_id == operation_id))
            .mappings()
            .first()
        )


def end_run(store: Store, run_id: int) -> None:
    """Cancel a run nobody works on: with no task running it ends at once (Canceled)."""
    assert RunService(store).cancel(run_id).status is RunStatus.CANCELED


@pytest.fixture
def clock() -> Clock:
    return Clock(DEPLOYED)


@pytest.fixture
def scheduler(store: Store, clock: Clock) -> Iterator[Scheduler]:
    scheduler = Scheduler(store, sweep_seconds=1, cancel_timeout_seconds=60, clock=clock)
    yield scheduler
    scheduler.stop()


# --- firing -------------------------------------------------------------------------------------------------------


def test_a_due_tick_launches_one_incremental_run_dated_on_the_schedules_clock(
    store: Store, scheduler: Scheduler, clock: Clock
) -> None:
    op = scheduled(store, "30 0 * * *", PARIS)  # 00:30 in Paris is 23:30 UTC the day before (CET, UTC+1)

    assert scheduler.tick_once(clock.set(2026, 12, 6, 23, 29, 59)) == []
    (fired,) = scheduler.tick_once(clock.set(2026, 12, 6, 23, 30, 0, 200_000))

    tick = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    assert (fired.operation_id, fired.tick, fired.accepted, fired.execution_date) == (op, tick, True, date(2026, 12, 7))
    (run,) = schedule_runs(store, op)
    assert run["id"] == fired.run_id
    assert (run["trigger"], run["run_type"], run["status"]) == (
        Trigger.SCHEDULE,
        RunType.INCREMENTAL,
        "waiting_to_start",
    )
    assert run["execution_date"] == date(2026, 12, 7)
    record = handled(store, op)
    assert record is not None
    assert (record["last_tick_at"], record["last_run_id"]) == (tick, run["id"])


def test_a_handled_tick_fires_nothing_more_until_the_next_one(store: Store, scheduler: Scheduler, clock: Clock) -> None:
    op = scheduled(store, "0 6 * * *")
    assert len(scheduler.tick_once(clock.set(2026, 12, 7, 6, 0, 1))) == 1

    assert scheduler.tick_once() == []  # the same moment
    assert scheduler.tick_once(clock.set(2026, 12, 7, 18)) == []
    assert scheduler.tick_once(clock.set(2026, 12, 8, 5, 59, 59)) == []
    assert len(schedule_runs(store, op)) == 1


def test_a_new_schedule_owes_nothing_from_before_its_deploy(store: Store, scheduler: Scheduler, clock: Clock) -> None:
    op = scheduled(store, "0 6 * * *")  # deployed at 10:30: this morning's 06:00 is not caught up

    assert scheduler.tick_once(clock.set(2026, 12, 6, 10, 31)) == []
    assert scheduler.tick_once(clock.set(2026, 12, 6, 23, 59)) == []
    assert schedule_runs(store, op) == []
    assert handled(store, op) is None


def test_ticks_missed_over_three_days_give_one_catch_up_run_for_the_latest(
    store: Store, scheduler: Scheduler, clock: Clock
) -> None:
    op = scheduled(store, "0 6 * * *")
    (first,) = scheduler.tick_once(clock.set(2026, 12, 7, 6, 0, 1))
    assert first.run_id is not None
    end_run(store, first.run_id)

    # Nothing ran on 8, 9 and 10 December; at 11:00 on the 10th the scheduler is back.
    (catch_up,) = scheduler.tick_once(clock.set(2026, 12, 10, 11))

    assert (catch_up.tick, catch_up.accepted) == (datetime(2026, 12, 10, 6, tzinfo=UTC), True)
    assert scheduler.tick_once() == []
    assert [run["execution_date"] for run in schedule_runs(store, op)] == [date(2026, 12, 7), date(2026, 12, 10)]


def test_a_tick_that_meets_an_active_run_is_recorded_rejected_and_not_tried_again(
    store: Store, scheduler: Scheduler, clock: Clock
) -> None:
    op = scheduled(store, "*/10 * * * *")
    (first,) = scheduler.tick_once(clock.set(2026, 12, 6, 10, 40))  # its run waits: no worker here

    (second,) = scheduler.tick_once(clock.set(2026, 12, 6, 10, 50, 0, 500_000))

    assert (second.accepted, second.blocked_by) == (False, first.run_id)
    rejected = schedule_runs(store, op)[-1]
    assert (rejected["id"], rejected["status"], rejected["blocked_by"]) == (second.run_id, "rejected", first.run_id)
    record = handled(store, op)
    assert record is not None
    assert (record["last_tick_at"], record["last_run_id"]) == (
        datetime(2026, 12, 6, 10, 50, tzinfo=UTC),
        rejected["id"],
    )
    assert scheduler.tick_once(clock.set(2026, 12, 6, 10, 55)) == []  # the loop does not retry it
    assert len(schedule_runs(store, op)) == 2


@pytest.mark.parametrize(("activated", "archived"), [(False, False), (False, True)], ids=["deactivated", "archived"])
def test_a_deactivated_or_archived_operation_does_not_fire(
    store: Store, scheduler: Scheduler, clock: Clock, activated: bool, archived: bool
) -> None:
    op = scheduled(store, "0 6 * * *")
    set_status(store, op, activated=activated, archived=archived)
    changed_at(store, op, DEPLOYED)

    assert scheduler.tick_once(clock.set(2026, 12, 7, 6)) == []
    assert scheduler.tick_once(clock.set(2026, 12, 9, 12)) == []
    assert schedule_runs(store, op) == []


def test_activated_again_it_resumes_at_its_next_tick_without_catching_up(
    store: Store, scheduler: Scheduler, clock: Clock
) -> None:
    op = scheduled(store, "0 6 * * *")
    (first,) = scheduler.tick_once(clock.set(2026, 12, 7, 6))
    assert first.run_id is not None
    end_run(store, first.run_id)
    set_status(store, op, activated=False, archived=False)
    changed_at(store, op, datetime(2026, 12, 7, 8, tzinfo=UTC))
    with store.read() as conn:
        activating = store.now(conn)

    set_status(store, op, activated=True, archived=False)
    assert updated_at(store, op) >= activating  # activating is a change: the schedule counts from it
    changed_at(store, op, datetime(2026, 12, 9, 10, tzinfo=UTC))

    # 8 and 9 December 06:00 passed while it was deactivated: neither is fired, not even as one catch-up.
    assert scheduler.tick_once(clock.set(2026, 12, 9, 10, 1)) == []
    (resumed,) = scheduler.tick_once(clock.set(2026, 12, 10, 6))
    assert resumed.tick == datetime(2026, 12, 10, 6, tzinfo=UTC)
    assert [run["execution_date"] for run in schedule_runs(store, op)] == [date(2026, 12, 7), date(2026, 12, 10)]


def test_a_changed_schedule_counts_from_its_deploy(store: Store, scheduler: Scheduler, clock: Clock) -> None:
    op = scheduled(store, "0 8 * * *")
    (first,) = scheduler.tick_once(clock.set(2026, 12, 7, 8))
    assert first.run_id is not None
    end_run(store, first.run_id)
    deploy(store, [spec("nightly", "0 6 * * *")], BUILTIN)  # at 10:30 on the 8th: 06:00 that day is not owed
    changed_at(store, op, datetime(2026, 12, 8, 10, 30, tzinfo=UTC))

    assert scheduler.tick_once(clock.set(2026, 12, 8, 10, 31)) == []
    (fired,) = scheduler.tick_once(clock.set(2026, 12, 9, 6))
    assert fired.tick == datetime(2026, 12, 9, 6, tzinfo=UTC)


def test_two_schedulers_sharing_the_store_fire_each_tick_once(database_url: str, clock: Clock) -> None:
    """Two "processes" (their own Store, so their own connections) that both believe they lead, at every tick."""
    stores = [Store(database_url), Store(database_url)]
    schedulers = [Scheduler(one, sweep_seconds=1, cancel_timeout_seconds=60, clock=clock) for one in stores]
    try:
        ops = [scheduled(stores[0], "* * * * *", configuration_id=f"every-minute-{n}") for n in range(4)]
        fired: list[list[TickOutcome]] = [[], []]
        minutes = 5
        start = threading.Barrier(2)

        def run(index: int) -> None:
            for minute in range(minutes):
                now = DEPLOYED + timedelta(minutes=minute + 1, seconds=0.5)
                start.wait(timeout=30)
                fired[index].extend(schedulers[index].tick_once(now))

        threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)

        outcomes = fired[0] + fired[1]
        ticks = [(outcome.operation_id, outcome.tick) for outcome in outcomes]
        assert len(ticks) == len(set(ticks)) == len(ops) * minutes  # every tick once, by one or the other
        for op in ops:
            assert len(schedule_runs(stores[0], op)) == minutes
            assert sum(1 for run in schedule_runs(stores[0], op) if run["status"] != "rejected") == 1
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        for one in stores:
            one.dispose()


# --- leadership ---------------------------------------------------------------------------------------------------


def test_one_of_two_processes_leads_until_it_lets_go(database_url: str) -> None:
    stores = [Store(database_url), Store(database_url)]
    first, second = leadership_for(stores[0]), leadership_for(stores[1])
    try:
        assert first.try_lead()
        assert not second.try_lead()
        assert first.try_lead()  # still leading, checked again
        first.release()
        assert wait_for(second.try_lead, timeout=10, what="the second to lead once the first let go")
        assert not first.try_lead()
    finally:
        first.release()
        second.release()
        for one in stores:
            one.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_leader_whose_connection_breaks_is_no_longer_leading(database_url: str) -> None:
    stores = [Store(database_url), Store(database_url)]
    first, second = leadership_for(stores[0]), leadership_for(stores[1])
    try:
        assert first.try_lead()
        with stores[0].read() as conn:
            ended = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
        assert ended == [(True,)]
        assert wait_for(lambda: not first.try_lead(), timeout=10, what="the first to notice its session ended")
        assert wait_for(second.try_lead, timeout=10, what="the second to take over")
    finally:
        first.release()
        second.release()
        for one in stores:
            one.dispose()


# --- the time zone setting ----------------------------------------------------------------------------------------


def test_an_unknown_time_zone_is_refused_with_its_name() -> None:
    text = "configuration_type: tasks\nconfiguration_id: x\nschedule: '0 6 * * *'\nschedule_timezone: Mars/Olympus\n"
    with pytest.raises(ConfigError, match="'Mars/Olympus' is not a time zone"):
        load_text(text + "tasks: [{name: a, executor: noop}]\n")


def test_a_cron_that_never_matches_is_refused() -> None:
    text = "configuration_type: tasks\nconfiguration_id: x\nschedule: '0 0 31 2 *'\n"
    with pytest.raises(ConfigError, match="would never run"):
        load_text(text + "tasks: [{name: a, executor: noop}]\n")


def test_the_time_zone_is_kept_in_the_spec(store: Store) -> None:
    op = scheduled(store, "0 6 * * *", PARIS)
    with store.read() as conn:
        stored = conn.execute(sa.select(operations.c.spec).where(operations.c.id == op)).scalar_one()
    assert stored["schedule_timezone"] == PARIS


def test_a_changed_time_zone_shows_in_the_deploy_preview(store: Store) -> None:
    scheduled(store, "0 6 * * *")
    (preview,) = preview_deploy(store, [spec("nightly", "0 6 * * *", PARIS)], BUILTIN)
    assert [str(change) for change in preview.changes] == ["schedule_timezone: UTC -> Europe/Paris"]


# --- what the API and the Sources page show -----------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[RestStack]:
    with rest_stack(tmp_path / "home", database_url) as running:
        yield running


def test_the_api_and_the_sources_page_show_the_previous_and_next_tick(stack: RestStack) -> None:
    store = stack.store
    cron = "0 6 * * *"
    (deployed,) = deploy(store, [spec("paris-daily", cron, PARIS)], BUILTIN)
    op = deployed.operation_id
    plain = stack.deploy("unscheduled", [{"name": "a", "executor": "noop"}])
    with store.read() as conn:
        now = store.now(conn)
    changed_at(store, op, now - timedelta(days=3))  # so that a tick is owed now
    Scheduler(store, sweep_seconds=1, cancel_timeout_seconds=60).tick_once()  # or the stack's own scheduler did
    with store.read() as conn:
        now = store.now(conn)
    previous, upcoming = previous_tick(cron, PARIS, now), next_tick(cron, PARIS, now)
    admin = stack.as_user("default", "administrator")

    shown = admin.get(f"/api/v1/operations/{op}").json()
    assert (shown["schedule"], shown["schedule_timezone"]) == (cron, PARIS)
    assert shown["previous_tick"] == previous.isoformat().replace("+00:00", "Z")
    assert shown["next_tick"] == upcoming.isoformat().replace("+00:00", "Z")
    listed = {item["id"]: item for item in admin.get("/api/v1/operations").json()}
    assert (listed[op]["previous_tick"], listed[op]["next_tick"]) == (shown["previous_tick"], shown["next_tick"])
    assert (listed[plain]["schedule_timezone"], listed[plain]["previous_tick"], listed[plain]["next_tick"]) == (
        "UTC",
        None,
        None,
    )

    viewer = signed_in(stack, "default", "viewer")
    try:
        page = html.unescape(viewer.get("/sources").text)
        assert f"Schedule <code>{cron}</code>" in page
        assert f"next {upcoming.astimezone(ZoneInfo(PARIS)):%Y-%m-%d} 06:00 Europe/Paris" in page
        assert f"previous {previous.astimezone(ZoneInfo(PARIS)):%Y-%m-%d} 06:00 Europe/Paris" in page

        stopped = admin.post(f"/api/v1/operations/{op}/status", json={"activated": False, "archived": False}).json()
        assert (stopped["previous_tick"], stopped["next_tick"]) == (shown["previous_tick"], None)
        assert "stopped while not active" in viewer.get("/sources").text
    finally:
        viewer.close()
