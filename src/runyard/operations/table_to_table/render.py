"""A step's SQL for one run: its template rendered in the sandbox, every value a bound parameter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from runyard.operations.table_to_table.plan import BUILTIN_VARIABLES
from runyard.operations.table_to_table.sql import BoundSql, bind, mark, without_trailing_semicolon
from runyard.operations.templating import date_variables, render_values


def variable_names(parameters: Mapping[str, Any]) -> set[str]:
    """Every name a step's SQL may use."""
    return {*BUILTIN_VARIABLES, *date_variables(date.min), *parameters}


def sql_variables(execution_date: date, launched_at: datetime, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """execution_date (a DATE), FD_DATE and FD_TIME (the execution date at the launch's time of day, as text)
    with their parts, and the configuration's parameters."""
    moment = datetime.combine(execution_date, time(launched_at.hour, launched_at.minute, launched_at.second))
    return {**parameters, **date_variables(moment), "execution_date": execution_date}


def render_step(sql: str, variables: Mapping[str, Any], *, what: str) -> BoundSql:
    """The SELECT with `?` where its template had values, and those values (ConfigError or SqlTextError)."""
    rendered, values = render_values(sql, variables, mark, what=what)
    return bind(without_trailing_semicolon(rendered), values)
