"""Plain factory functions for tests: an account, an operation, a launched run."""

from __future__ import annotations

from typing import Any

from runyard.operations.tasks.executors import BUILTIN
from runyard.operations.tasks.spec import TaskGraphOperation
from runyard.services.accounts import bootstrap_admin
from runyard.services.operations import deploy
from runyard.store.database import Store


def make_account(store: Store) -> None:
    bootstrap_admin(store, "admin-password")


def sleep_task(name: str, seconds: float = 0.0, *, depends_on: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    params = {"seconds": seconds, "units": extra.pop("units", 2)}
    params.update(extra.pop("params", {}))
    return {"name": name, "executor": "sleep", "params": params, "depends_on": depends_on or [], **extra}


def make_operation(
    store: Store, tasks: list[dict[str, Any]] | None = None, *, configuration_id: str = "op", account: str = "default"
) -> int:
    """Deploy a `tasks` operation (the default: two sleep tasks, the second after the first)."""
    make_account(store)
    spec = TaskGraphOperation.model_validate(
        {
            "configuration_type": "tasks",
            "configuration_id": configuration_id,
            "account": account,
            "tasks": tasks or [sleep_task("first"), sleep_task("second", depends_on=["first"])],
        }
    )
    return deploy(store, [spec], BUILTIN)[0].operation_id
