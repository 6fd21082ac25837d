"""The task search rules of the API Run Details page (spec 000, "Understanding the API Run Details Page").

A search string matches a task when any of these holds:

1. its initials (acronym) start with the string: "mc" finds "Metadata Consolidation [employees]";
2. its name contains the string;
3. the label of its status starts with the string: "waiting" finds "Waiting to Start";
4. one of its tables' names contains the string;
5. one of its messages contains the string.

All comparisons ignore case, Unicode letters included: the store keeps fold_case() copies of names, table names
and messages, and the query is folded the same way, so the SQL compares them case-sensitively with LIKE on both
backends. This module holds the pure parts; runyard.services.listing builds the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol, TypeVar

#: Any space or underscore ends a word (spec 000: "where any underscore or space denotes a word boundary").
_WORD_BOUNDARY = re.compile(r"[\s_]+")

#: The length of the tasks.initials column: longer acronyms (names of over 100 words) are cut there.
INITIALS_MAX_LENGTH = 100

#: The escape character used in every LIKE pattern runyard builds (``... LIKE :pattern ESCAPE '\'``).
LIKE_ESCAPE = "\\"


class _Labelled(Protocol):
    @property
    def label(self) -> str: ...


LabelledT = TypeVar("LabelledT", bound=_Labelled)


def words(name: str) -> list[str]:
    """The words of a task name: split on spaces and underscores, empty pieces dropped."""
    return [word for word in _WORD_BOUNDARY.split(name) if word]


def _first_letter(word: str) -> str:
    """The first letter or digit of `word`, lowercased; "" when it has none (brackets, punctuation)."""
    for char in word.lower():
        if char.isalnum():
            return char
    return ""


def initials(name: str) -> str:
    """The acronym of a task name, lowercase: one letter per word, brackets and punctuation skipped.

    This is the value to store in tasks.initials; it is cut at INITIALS_MAX_LENGTH letters.

    >>> initials("Metadata Consolidation [employees]")
    'mce'
    >>> initials("Process [time_off]")
    'pto'
    """
    return "".join(_first_letter(word) for word in words(name))[:INITIALS_MAX_LENGTH]


def fold_case(text: str) -> str:
    """`text` as the search compares it: lowercased, Unicode-aware ("Étape" -> "étape").

    What the store keeps in tasks.name_lower, task_tables.table_name_lower and task_messages.text_lower, and what
    a query is turned into: the same Python function on both sides, whatever the database's collation.
    """
    return text.lower()


def normalize_query(query: str | None) -> str:
    """The search string as it is matched: surrounding whitespace removed, case folded ("" means no search)."""
    return fold_case((query or "").strip())


def statuses_starting_with(query: str, statuses: Iterable[LabelledT]) -> list[LabelledT]:
    """The statuses whose label starts with `query`, ignoring case ("comp" -> Completed, Completed with Errors).

    An empty query matches every status; keep the order of `statuses`.
    """
    prefix = query.lower()
    return [status for status in statuses if status.label.lower().startswith(prefix)]


def like_escape(text: str, escape: str = LIKE_ESCAPE) -> str:
    """`text` with the LIKE wildcards `%` and `_` (and the escape character itself) taken literally.

    Use the result with ``ESCAPE`` set to the same `escape` character.
    """
    if len(escape) != 1:
        raise ValueError("the LIKE escape must be a single character")
    escaped = text.replace(escape, escape + escape)
    return escaped.replace("%", escape + "%").replace("_", escape + "_")


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching any value that contains `text` literally."""
    return f"%{like_escape(text)}%"


def prefix_pattern(text: str) -> str:
    """A LIKE pattern matching any value that starts with `text` literally."""
    return f"{like_escape(text)}%"
