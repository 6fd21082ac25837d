"""What a redeploy changes in an operation: the fields that differ, each as a dotted path with its two values.

Pure functions over JSON-like values (what a configuration's `model_dump(mode="json")` gives): mappings are
compared key by key, lists item by item, so a change deep in a configuration names its place
(`endpoints.0.path: /a -> /b`) instead of the whole list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

MAX_VALUE_CHARS = 80  # a longer value is cut, so that one change stays one line
_PLAIN_TEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@+#")


class Absent:
    """The value of a field one side does not have (a list item added, a key removed)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = Absent()


class DeployAction(StrEnum):
    CREATED = "created"  # a new operation
    UPDATED = "updated"  # an existing operation whose configuration or state changed
    UNCHANGED = "unchanged"  # an existing operation the files describe exactly as it is: nothing is written


@dataclass(frozen=True)
class FieldChange:
    """One field of an operation, before and after the deploy."""

    path: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.path}: {show(self.before)} -> {show(self.after)}"


def diff(before: Any, after: Any, path: str = "") -> Iterator[FieldChange]:
    """Every leaf that differs between two JSON-like values, in the order of `after` (removed keys last)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in [*after, *(key for key in before if key not in after)]:
            yield from diff(before.get(key, ABSENT), after.get(key, ABSENT), _join(path, key))
    elif _is_list(before) and _is_list(after):
        for index in range(max(len(before), len(after))):
            old = before[index] if index < len(before) else ABSENT
            new = after[index] if index < len(after) else ABSENT
            yield from diff(old, new, _join(path, index))
    elif before != after or isinstance(before, bool) != isinstance(after, bool):  # True == 1, yet it changed
        yield FieldChange(path or "(whole)", before, after)


def show(value: Any) -> str:
    """A value as a change line shows it: plain words bare, other text quoted, None and numbers as Python writes
    them, mappings and lists as compact JSON; cut to MAX_VALUE_CHARS."""
    if isinstance(value, str) and value and set(value) <= _PLAIN_TEXT:
        text = value
    elif isinstance(value, (str, bool, int, float, Absent)) or value is None:
        text = repr(value)
    else:
        text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _join(path: str, part: str | int) -> str:
    return f"{path}.{part}" if path else str(part)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
