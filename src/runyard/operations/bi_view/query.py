"""Is a bi-view's SQL one query that reads? Checked on the text alone at deploy (no database is opened), with the
table-to-table tokenizer, which knows where strings, quoted names and comments are.

The rule: exactly one statement, which is a SELECT, or a WITH whose main statement is a SELECT and whose common
table expressions change no data; parentheses around either are allowed. The warehouse's own parser has the last
word when the view is exported (its query runs read-only): this check exists to refuse a mistake at deploy, with its
field.
"""

from __future__ import annotations

from collections.abc import Sequence

from runyard.operations.table_to_table.sql import fold
from runyard.sqltext import Token, statement_count, tokens

EXPECTED = "a view is one SELECT (or WITH ... SELECT) query"
_CHANGES_DATA = frozenset(("insert", "update", "delete", "merge", "copy", "truncate"))
_SHOWN_CHARS = 40


def query_problem(sql: str) -> str | None:
    """Why `sql` cannot be a view's query (a sentence fragment after "the SQL"), or None when it can."""
    count = statement_count(sql)
    if count == 0:
        return f"is empty: {EXPECTED}"
    if count > 1:
        return f"holds {count} statements: {EXPECTED}"
    words = [token for token in tokens(sql) if token.kind not in ("space", "comment")]
    start = _skip_parentheses(words, 0)
    if start < len(words) and fold(words[start].text) == "with":
        main = _after_with(words, start + 1)
        if isinstance(main, str):
            return main
        start = _skip_parentheses(words, main)
        if start >= len(words) or words[start].text == ";":
            return f"has a WITH clause but no query after it: {EXPECTED}"
        if fold(words[start].text) != "select":
            return f"has {_shown(words, start)} after its WITH clause: {EXPECTED}"
    if start >= len(words) or fold(words[start].text) != "select":
        return f"starts with {_shown(words, start)}: {EXPECTED}"
    return None


def _skip_parentheses(words: Sequence[Token], index: int) -> int:
    while index < len(words) and words[index].text == "(":
        index += 1
    return index


def _after_with(words: Sequence[Token], index: int) -> int | str:
    """The index of the main statement after `WITH [RECURSIVE] name [(columns)] AS [NOT] [MATERIALIZED] (...), ...`,
    or why the clause is refused."""
    if index < len(words) and fold(words[index].text) == "recursive":
        index += 1
    while True:
        depth = 0
        while index < len(words) and not (depth == 0 and _is_word(words[index], "as")):
            depth += {"(": 1, ")": -1}.get(words[index].text, 0)
            index += 1
        index += 1
        while index < len(words) and fold(words[index].text) in ("not", "materialized"):
            index += 1
        if index >= len(words) or words[index].text != "(":
            return f"has a WITH clause that is not complete: {EXPECTED}"
        body = _skip_parentheses(words, index)
        if body < len(words) and fold(words[body].text) in _CHANGES_DATA:
            return f"has a WITH clause that changes data ({words[body].text.upper()}): {EXPECTED}"
        index = _closing(words, index) + 1
        if index < len(words) and words[index].text == ",":
            index += 1
            continue
        return index


def _is_word(token: Token, word: str) -> bool:
    return token.kind == "code" and fold(token.text) == word


def _closing(words: Sequence[Token], opening: int) -> int:
    depth = 0
    for index in range(opening, len(words)):
        depth += {"(": 1, ")": -1}.get(words[index].text, 0)
        if depth == 0:
            return index
    return len(words)


def _shown(words: Sequence[Token], index: int) -> str:
    if index >= len(words):
        return "nothing to run"
    word = words[index].text
    if words[index].kind == "code" and word.isidentifier():
        return word.upper()
    return repr(word[:_SHOWN_CHARS])
