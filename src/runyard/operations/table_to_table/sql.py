"""Just enough SQL reading for table-to-table steps, without a database: pure functions over text.

On top of `runyard.sqltext.tokens` (SQL cut into code, strings, quoted names and comments):
`table_references` finds the tables a SELECT reads (what a step depends on), and `bind` turns the
value markers a template rendered into `?` parameters, refusing any that would land inside quotes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from runyard.sqltext import WORD, Token, tokens

# What a rendered `{{ value }}` becomes in the text, until `bind` makes it a parameter (private-use chars).
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
MARKER = re.compile(f"{MARK_OPEN}(\\d+){MARK_CLOSE}")


def mark(index: int) -> str:
    return f"{MARK_OPEN}{index}{MARK_CLOSE}"


_JINJA_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Words after which a FROM item ends (or that cannot be a table's alias).
_CLAUSE_WORDS = frozenset(
    [
        "where",
        "group",
        "order",
        "limit",
        "offset",
        "fetch",
        "having",
        "qualify",
        "window",
        "union",
        "except",
        "intersect",
        "join",
        "inner",
        "left",
        "right",
        "full",
        "outer",
        "cross",
        "natural",
        "positional",
        "asof",
        "anti",
        "semi",
        "lateral",
        "on",
        "using",
        "select",
        "from",
        "pivot",
        "unpivot",
        "tablesample",
        "returning",
        "values",
        "as",
        "with",
    ]
)
# Words after a "(" that make it a subquery, whatever comes before it (`THEN (SELECT ...)`).
_QUERY_STARTS = frozenset(("select", "from", "with", "values", "table"))
# Words before a "(" that open a subquery or a list, not a function call.
_NOT_FUNCTIONS = frozenset(
    [
        "from",
        "join",
        "in",
        "exists",
        "as",
        "select",
        "where",
        "and",
        "or",
        "not",
        "any",
        "all",
        "some",
        "lateral",
        "union",
        "except",
        "intersect",
        "on",
        "having",
        "qualify",
        "values",
        "with",
        "materialized",
    ]
)


class SqlTextError(ValueError):
    """The SQL text cannot be used as it is; the message says where and why."""


def strip_template(template: str) -> str:
    """The template with its `{{ }}`, `{% %}` and `{# #}` blocks blanked (newlines kept, so lines still match)."""
    return _JINJA_BLOCK.sub(lambda block: re.sub(r"[^\n]", " ", block.group()), template)


def unquote(name_token: str) -> str:
    return name_token[1:-1].replace('""', '"') if name_token.startswith('"') else name_token


def fold(name: str) -> str:
    """DuckDB and PostgreSQL compare unquoted names case-insensitively; runyard compares target names so."""
    return name.lower()


def table_references(sql: str) -> list[str]:
    """The tables a query reads after FROM and JOIN, folded, in order of appearance, each once.

    A name qualified by the `main` schema counts as the bare name; other schemas, table functions
    (`range(10)`), subqueries and the query's own common table expressions do not count.
    """
    significant = [t for t in tokens(sql) if t.kind in ("code", "name")]
    ctes = _cte_names(significant)
    found: list[str] = []
    calls: list[bool] = []  # for each open parenthesis: is it a function call's?
    for index, token in enumerate(significant):
        if token.text == "(":
            previous = significant[index - 1] if index else None
            following = significant[index + 1] if index + 1 < len(significant) else None
            opens_query = following is not None and fold(following.text) in _QUERY_STARTS
            calls.append(not opens_query and previous is not None and _is_function_name(previous))
        elif token.text == ")" and calls:
            calls.pop()
        elif token.kind == "code" and fold(token.text) in ("from", "join") and not (calls and calls[-1]):
            for name in _from_items(significant, index + 1, many=fold(token.text) == "from"):
                if name not in ctes and name not in found:
                    found.append(name)
    return found


def _is_function_name(token: Token) -> bool:
    if token.kind == "name":
        return True
    return bool(WORD.fullmatch(token.text)) and fold(token.text) not in _NOT_FUNCTIONS


def _from_items(significant: Sequence[Token], start: int, *, many: bool) -> Iterator[str]:
    index = start
    while index < len(significant):
        parts, index = _dotted_name(significant, index)
        is_call = index < len(significant) and significant[index].text == "("
        if not is_call and (len(parts) == 1 or (len(parts) == 2 and fold(parts[0]) == "main")):
            yield fold(parts[-1])
        index = _skip_alias(significant, index)
        if not many or index >= len(significant) or significant[index].text != ",":
            return
        index += 1


def _dotted_name(significant: Sequence[Token], index: int) -> tuple[list[str], int]:
    parts: list[str] = []
    while index < len(significant) and _is_name(significant[index]):
        parts.append(unquote(significant[index].text))
        index += 1
        if index < len(significant) and significant[index].text == ".":
            index += 1
        else:
            break
    return parts, index


def _is_name(token: Token) -> bool:
    if token.kind == "name":
        return True
    return bool(WORD.fullmatch(token.text)) and fold(token.text) not in _CLAUSE_WORDS


def _skip_alias(significant: Sequence[Token], index: int) -> int:
    if index < len(significant) and fold(significant[index].text) == "as":
        index += 1
    if index < len(significant) and _is_name(significant[index]):
        index += 1
        if index < len(significant) and significant[index].text == "(":  # t(a, b): column aliases
            depth = 0
            while index < len(significant):
                depth += {"(": 1, ")": -1}.get(significant[index].text, 0)
                index += 1
                if depth == 0:
                    break
    return index


def _cte_names(significant: Sequence[Token]) -> set[str]:
    """Names defined as `name AS (` or `name(columns) AS (`, with MATERIALIZED or NOT MATERIALIZED allowed."""
    names: set[str] = set()
    for index, token in enumerate(significant):
        if fold(token.text) != "as" or index == 0:
            continue
        after = index + 1
        while after < len(significant) and fold(significant[after].text) in ("not", "materialized"):
            after += 1
        if after >= len(significant) or significant[after].text != "(":
            continue
        before = index - 1
        if significant[before].text == ")":  # name(a, b) AS (
            depth = 0
            while before >= 0:
                depth += {")": 1, "(": -1}.get(significant[before].text, 0)
                if depth == 0:
                    break
                before -= 1
            before -= 1
        if before >= 0 and _is_name(significant[before]):
            names.add(fold(unquote(significant[before].text)))
    return names


@dataclass(frozen=True)
class BoundSql:
    sql: str
    params: tuple[object, ...]


def bind(rendered: str, values: Sequence[object]) -> BoundSql:
    """Replace each value marker with `?` and collect its value, in text order.

    A marker inside a string or a quoted name would make a value part of the SQL text: refused, as is
    one glued to a name (`sales_{{FD_DATE}}`), which would need the value to build a name. A marker in a
    comment is dropped.
    """
    out: list[str] = []
    params: list[object] = []
    for token in tokens(rendered):
        if token.kind == "comment":
            out.append(MARKER.sub("", token.text))
            continue
        if token.kind in ("string", "name") and MARKER.search(token.text):
            raise SqlTextError(
                f"line {_line(rendered, token.start)}: a {{{{ }}}} value is inside quotes; values are passed "
                "as parameters, so write it bare (day = {{FD_DATE}}, not day = '{{FD_DATE}}')"
            )
        out.append(token.text)
    text = "".join(out)
    pieces: list[str] = []
    last = 0
    for match in MARKER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if _glued(before) or _glued(after):
            raise SqlTextError(
                f"line {_line(text, match.start())}: a {{{{ }}}} value is glued to a name; values are passed as "
                "parameters and cannot build table or column names"
            )
        pieces.append(text[last : match.start()])
        pieces.append("?")
        params.append(values[int(match.group(1))])
        last = match.end()
    pieces.append(text[last:])
    return BoundSql("".join(pieces), tuple(params))


def _glued(ch: str) -> bool:
    return ch.isalnum() or ch in "_$." or ch in (MARK_OPEN, MARK_CLOSE)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def without_trailing_semicolon(sql: str) -> str:
    """The query without its final `;` (and what follows it, blanks and comments only): it is wrapped in a CREATE."""
    last = None
    for token in tokens(sql):
        if token.kind == "code" and token.text == ";":
            last = token
        elif token.kind not in ("space", "comment"):
            last = None
    return sql if last is None else sql[: last.start]


def line_of(sql: str, number: int) -> str:
    """Line `number` (1-based) of the text, stripped; empty when there is no such line."""
    lines = sql.splitlines()
    return lines[number - 1].strip() if 0 < number <= len(lines) else ""
