"""Templates in configurations (`{{FD_DATE}}`, `{{execution_date}}`): one sandboxed Jinja environment.

The sandbox refuses attribute tricks (`{{ ''.__class__ }}`) and unknown names (StrictUndefined). What a
template may name is fixed per use: file names see the file's date variables, SQL sees the run's. A rendered
value never becomes SQL text: runyard.operations.table_to_table turns each one into a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined, meta, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runyard.errors import ConfigError


@cache
def sandbox() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


_VALUES, _MARK = "__runyard_values", "__runyard_mark"
VALUE_TYPES = (str, int, float, bool, date, datetime, Decimal, type(None))


@pass_context  # a context-dependent finalize is never folded at compile time: every output passes here
def _capture(context: Context, value: Any) -> str:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined: raises, naming the variable
    if not isinstance(value, VALUE_TYPES) and not (
        isinstance(value, list | tuple) and all(isinstance(item, VALUE_TYPES) for item in value)
    ):
        raise TemplateError(
            f"a {{{{ }}}} value must be a text, number, date, boolean or list, not {type(value).__name__}"
        )
    values: list[Any] = context[_VALUES]
    values.append(value)
    mark: Callable[[int], str] = context[_MARK]
    return mark(len(values) - 1)


@cache
def _capturing_sandbox() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_capture
    )


@lru_cache(maxsize=512)
def _compiled(text: str) -> Template:
    """Compiling is most of a render's cost, and a step's SQL is the same at every run."""
    return _capturing_sandbox().from_string(text)


def render_values(
    text: str, variables: Mapping[str, Any], mark: Callable[[int], str], *, what: str
) -> tuple[str, list[Any]]:
    """`text` rendered with each `{{ }}` output replaced by `mark(its index)`, and the values in that order.

    For SQL: the caller makes each mark a bound parameter, so no value ever becomes text of the statement.
    """
    values: list[Any] = []
    if "{" not in text:
        return text, values
    try:
        rendered = _compiled(text).render(**variables, **{_VALUES: values, _MARK: mark})
    except TemplateError as error:
        raise ConfigError(f"{what}: the template cannot be rendered: {error.message or error}") from None
    return rendered, values


def date_variables(moment: datetime | date, prefix: str = "FD") -> dict[str, str]:
    """`FD_DATE` (YYYYMMDD), `FD_TIME` (HHMMSS) and their parts, of `moment` (a date's time is 000000)."""
    when = moment if isinstance(moment, datetime) else datetime(moment.year, moment.month, moment.day)
    return {
        f"{prefix}_DATE": when.strftime("%Y%m%d"),
        f"{prefix}_TIME": when.strftime("%H%M%S"),
        f"{prefix}_DATE_YEAR_4": when.strftime("%Y"),
        f"{prefix}_DATE_YEAR_2": when.strftime("%y"),
        f"{prefix}_DATE_MONTH": when.strftime("%m"),
        f"{prefix}_DATE_DAY": when.strftime("%d"),
        f"{prefix}_TIME_HOUR": when.strftime("%H"),
        f"{prefix}_TIME_MINUTE": when.strftime("%M"),
        f"{prefix}_TIME_SECOND": when.strftime("%S"),
    }


def check_template(text: str, allowed: Collection[str], *, what: str) -> None:
    """ValueError (for a pydantic validator) when `text` is not a template or names a variable not in `allowed`."""
    try:
        parsed = sandbox().parse(text)
    except TemplateError as error:
        raise ValueError(f"{what} is not a valid template: {error.message}") from None
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ValueError(f"{what} uses unknown variable(s) {', '.join(unknown)}; known: {known}")


def render_text(text: str, variables: Mapping[str, Any], *, what: str) -> str:
    """`text` rendered with `variables`; ConfigError naming `what` when it cannot be."""
    try:
        return sandbox().from_string(text).render(**variables)
    except TemplateError as error:
        raise ConfigError(f"{what}: the template cannot be rendered: {error.message or error}") from None
