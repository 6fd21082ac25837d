"""SQL text cut into tokens, without a database: what the table-to-table steps and the PostgreSQL warehouse read.

`tokens` splits SQL into code, strings, quoted names, comments and blanks by DuckDB's and PostgreSQL's lexical rules
('' and "" escapes, E'' strings, $tag$ strings, nested /* */ comments); `statements` cuts a text at the semicolons
outside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Kind = Literal["code", "string", "name", "comment", "space"]

WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int  # offset in the text


def tokens(sql: str) -> Iterator[Token]:
    """The text cut into tokens; every character belongs to exactly one. Unterminated quotes run to the end."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            j = i + 1
            while j < n and sql[j].isspace():
                j += 1
            yield Token("space", sql[i:j], i)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            yield Token("comment", sql[i:j], i)
        elif sql.startswith("/*", i):
            j = _block_comment_end(sql, i)
            yield Token("comment", sql[i:j], i)
        elif ch == "'":
            j = _quoted_end(sql, i, "'", backslashes=_is_escape_string(sql, i))
            yield Token("string", sql[i:j], i)
        elif ch == '"':
            yield Token("name", sql[i : (j := _quoted_end(sql, i, '"', backslashes=False))], i)
        elif ch == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(), tag.end())
            j = n if close < 0 else close + len(tag.group())
            yield Token("string", sql[i:j], i)
        elif word := WORD.match(sql, i):
            j = word.end()
            yield Token("code", word.group(), i)
        else:
            j = i + 1
            yield Token("code", ch, i)
        i = j


def _block_comment_end(sql: str, start: int) -> int:
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(sql)


def _is_escape_string(sql: str, quote_at: int) -> bool:
    """E'...' (backslash escapes), but not a word ending in e followed by a quote."""
    return quote_at > 0 and sql[quote_at - 1] in "eE" and (quote_at < 2 or not WORD.match(sql[quote_at - 2]))


def _quoted_end(sql: str, start: int, quote: str, *, backslashes: bool) -> int:
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if backslashes and ch == "\\":
            i += 2
        elif ch == quote:
            if sql.startswith(quote * 2, i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return len(sql)


def statements(sql: str) -> list[str]:
    """The text's statements, cut at the semicolons outside quotes and comments (each without its `;`); those with
    nothing but blanks and comments are left out."""
    found: list[str] = []
    current: list[str] = []
    significant = False
    for token in tokens(sql):
        if token.kind == "code" and token.text == ";":
            if significant:
                found.append("".join(current))
            current, significant = [], False
            continue
        current.append(token.text)
        significant = significant or token.kind not in ("space", "comment")
    if significant:
        found.append("".join(current))
    return found


def statement_count(sql: str) -> int:
    """How many statements the text holds (`;` outside quotes and comments separate them; empty ones don't count)."""
    return len(statements(sql))
