"""Log lines nobody can forge: every logged value has its control characters escaped.

A request path, a header, a source's error text or an exception message can carry CR, LF or another line
break; written as is, it starts a new line that looks like runyard's own (`GET /x%0A2026-12-05 ... INFO
runyard.access: POST /api/v1/users 201` would log a user creation that never happened). `OneLineFormatter`
therefore writes a record's message, its args and every other field on one line, with C0 and C1 control
characters and the Unicode line separators (U+2028, U+2029) as visible escapes (`\\n`, `\\x1b`, `\\u2028`).

Only the traceback the formatter appends itself (from `exc_info`) keeps its lines, and within it an
exception's own text (its message and notes) is escaped onto one line, so it cannot forge one either.
Backslashes are not escaped: a literal `\\n` typed by a client reads like an escaped newline, but it
cannot start a line.
"""

from __future__ import annotations

import copy
import logging
import traceback
from collections.abc import Iterator
from types import TracebackType

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]


def _escape_of(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


#: str.translate's table: each control character to its escape. C0 and C1 include every character
#: str.splitlines() breaks at (VT, FF, FS, GS, RS, NEL) but U+2028 and U+2029, added.
_ESCAPES = {code: _escape_of(code) for code in _CONTROLS}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def escape_control(text: str) -> str:
    """`text` on one line: its control characters and line separators as visible escapes."""
    return text.translate(_ESCAPES)


def escape_lines(text: str) -> str:
    """`text` with its LF line breaks kept and every other control character escaped."""
    return "\n".join(escape_control(line) for line in text.split("\n"))


class OneLineFormatter(logging.Formatter):
    """One line per record, whatever its message and args hold; a traceback from exc_info keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy without the exception: the record itself is shared with any other handler, unchanged.
        plain = copy.copy(record)
        plain.exc_info, plain.exc_text, plain.stack_info = None, None, None
        parts = [escape_control(super().format(plain))]
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:  # made elsewhere (another formatter, another process): its lines kept, escaped
            parts.append(escape_lines(record.exc_text))
        if record.stack_info:
            parts.append(escape_lines(self.formatStack(record.stack_info)))
        return "\n".join(parts)

    def formatException(self, ei: ExcInfo) -> str:
        text = super().formatException(ei) + "\n"  # logging strips the last newline, which `own` ends with
        for error in _chain(ei[1]):
            own = "".join(traceback.format_exception_only(type(error), error))
            if _starts_a_line(own):
                text = text.replace(own, escape_control(own.rstrip("\n")) + "\n")
        return escape_lines(text.rstrip("\n"))


def _starts_a_line(exception_text: str) -> bool:
    """Whether an exception's own text (`Type: message` and notes) has a line that starts in column 0 after its
    first: a message or note with a line break. (A SyntaxError's indented source lines are the formatter's.)"""
    return any(line[:1] not in ("", " ") for line in exception_text.rstrip("\n").split("\n")[1:])


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and the exceptions the traceback shows with it: its causes and contexts."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
