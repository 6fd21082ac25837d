"""The table-to-table executors: build one step's table, then publish every table of the run at once.

A step builds its target into the run's own staging table (`_runyard_staging__<run_key>__<target>`), reading
the tables its upstream steps built in this run. Nothing a reader sees changes until the Data Load renames
every staging table into place in one transaction with the run's load record, so a failed or canceled run
leaves every published table as it was, and a repeated Data Load is a no-op.
"""

from __future__ import annotations

from datetime import date

from runyard.domain.runs import run_key_moment
from runyard.engine.context import TaskContext, TaskFailed
from runyard.engine.executors import Executor, Stage, bind_stages
from runyard.engine.load import commit_load
from runyard.engine.resources import EngineResources
from runyard.errors import ConfigError
from runyard.faults import crash_point
from runyard.operations.table_to_table import plan
from runyard.operations.table_to_table.render import render_step, sql_variables
from runyard.operations.table_to_table.sql import BoundSql, SqlTextError, line_of
from runyard.warehouse.base import LOADED_AT_COLUMN, QueryFailed, TableLoad


def build_step(ctx: TaskContext, resources: EngineResources) -> None:
    identity = ctx.identity
    target: str = ctx.params["target"]
    bound = _bound_sql(ctx)
    warehouse = resources.warehouses.for_account(identity.account)
    ctx.checkpoint()
    with warehouse.transform(identity.run_key, ctx.params["inputs"]) as session, ctx.on_stop(session.interrupt):
        try:
            rows = session.build(target, bound.sql, bound.params)
            crash_point("transform.mid_step")  # built in the staging table, the session still open
        except QueryFailed as error:
            ctx.checkpoint()  # stopped (canceled, shutting down): that is why the statement ended
            raise TaskFailed(_failure(target, error, bound)) from None
    ctx.checkpoint()
    ctx.add_records(rows)
    ctx.table(target, rows)
    ctx.message("info", f"Built {target}: {rows:,} rows, published when the run's Data Load commits")


def _bound_sql(ctx: TaskContext) -> BoundSql:
    variables = sql_variables(
        date.fromisoformat(ctx.params["execution_date"]), run_key_moment(ctx.identity.run_key), ctx.params["parameters"]
    )
    try:
        return render_step(ctx.params["sql"], variables, what=f"step {ctx.params['target']}")
    except SqlTextError as error:
        raise TaskFailed(f"step {ctx.params['target']}: {error}") from None
    except ConfigError as error:
        raise TaskFailed(str(error)) from None


def _failure(target: str, error: QueryFailed, bound: BoundSql) -> str:
    where = ""
    if error.line is not None:
        where = f" (line {error.line} of its SQL: {line_of(bound.sql, error.line)})"
    return f"Step {target} failed{where}: {error.reason}. Its table was not published, nor any of this run's."


def publish(ctx: TaskContext, resources: EngineResources) -> None:
    built = {upstream.name for upstream in ctx.inputs if upstream.succeeded}
    missing = [table for table in ctx.params["tables"] if table not in built]
    if missing:  # the plan makes every step a hard dependency: this is a store that was edited by hand
        raise TaskFailed(f"not published: the step(s) {', '.join(missing)} did not complete")
    commit_load(
        ctx,
        resources,
        [TableLoad(name=table, mode="replace", loaded_at_column=LOADED_AT_COLUMN) for table in ctx.params["tables"]],
    )


STAGES: dict[str, tuple[Stage, str]] = {
    plan.STEP: (build_step, "builds one step's table from its SELECT, in the run's staging"),
    plan.LOAD: (publish, "publishes every table the run built, in one transaction"),
}


def executors(resources: EngineResources) -> list[Executor]:
    """Each stage with this process's resources, ready for the worker's executor registry."""
    return bind_stages(STAGES, resources)
