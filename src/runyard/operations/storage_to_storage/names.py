"""Destination names: the variables a `destination_name` template sees, and the names it may produce.

The file's date and time are its last-modified time in UTC, as the source store reports it when the run lists
the files. A retry lists again and gets the same time for an unchanged file, so it renders the same name and
finds the copy already there instead of making a second one under a new name.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache

from jinja2 import Template, TemplateError

from runyard.operations.templating import date_variables, render_text, sandbox

FILE_VARIABLES = ("FD_NAME", "FD_BASENAME", "FD_EXTENSION", "FD_PATH", "FD_FOLDER")
RUN_VARIABLES = ("execution_date",)
TEMPLATE_VARIABLES = frozenset(
    (*FILE_VARIABLES, *RUN_VARIABLES, *date_variables(datetime(2000, 1, 1)))  # FD_DATE, FD_TIME and their parts
)
DEFAULT_NAME = "{{FD_NAME}}"


def file_variables(relative_path: str, modified: datetime, execution_date: date) -> dict[str, str]:
    """What a template may name for the file at `relative_path` (in the source folder), last modified `modified`.

    FD_NAME `2024/stores-1.csv` -> `stores-1.csv`, FD_BASENAME `stores-1`, FD_EXTENSION `.csv` (with its dot,
    empty when there is none), FD_PATH `2024/stores-1.csv`, FD_FOLDER `2024` (empty at the top);
    FD_DATE `YYYYMMDD` and FD_TIME `HHMMSS` (and their parts) of `modified` in UTC; execution_date `YYYY-MM-DD`.
    """
    name = posixpath.basename(relative_path)
    stem, _, extension = name.rpartition(".")
    if not stem:  # no dot, or a leading one only (".env"): no extension
        stem, extension = name, ""
    return {
        "FD_NAME": name,
        "FD_BASENAME": stem,
        "FD_EXTENSION": f".{extension}" if extension else "",
        "FD_PATH": relative_path,
        "FD_FOLDER": posixpath.dirname(relative_path),
        **date_variables(modified.astimezone(UTC)),
        "execution_date": execution_date.isoformat(),
    }


def render_name(template: str, variables: Mapping[str, str]) -> str:
    """`template` rendered for one file; compiled once per template (a listing renders it for every file)."""
    try:
        return _compiled(template).render(**variables)
    except TemplateError:
        return render_text(template, variables, what="destination_name")  # raises ConfigError, worded as elsewhere


@lru_cache(maxsize=64)
def _compiled(template: str) -> Template:
    return sandbox().from_string(template)


def name_problem(name: str) -> str | None:
    """Why a rendered destination name cannot be used (it would leave the destination folder); None if fine."""
    if not name.strip():
        return "renders an empty name"
    if "\x00" in name:
        return f"renders {name!r}, which contains a NUL character"
    if name.startswith("/") or name.startswith("\\"):
        return f"renders {name!r}, an absolute path; names are relative to the destination folder"
    for segment in name.split("/"):
        if segment in ("..", "."):
            return f"renders {name!r}, which has a {segment!r} folder and would leave the destination folder"
        if not segment:
            return f"renders {name!r}, which has an empty folder name (a '//' or a trailing '/')"
    return None
