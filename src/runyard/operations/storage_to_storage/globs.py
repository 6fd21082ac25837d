"""File patterns (`stores-*.csv`, `2024/**/*.csv`): checked at deploy time, matched against listed paths.

One meaning on every store (fsspec's glob and pathlib's differ): a pattern matches a path relative to the
source folder, with `/` between folders. `*` is any run of characters within a name, `?` one character,
`[abc]` / `[!abc]` one of (or none of) a set, and a `**` segment any number of folders, none included. As in a
shell, a name starting with `.` is matched only by a pattern segment starting with `.`. Matching is
case-sensitive. Standard library only: the spec (deploy time) and the listing (run time) share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

RECURSIVE = "**"


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used (it would leave the source folder, or is malformed); None when it is fine."""
    if not pattern.strip():
        return "a file pattern is empty"
    if "\x00" in pattern:
        return f"file pattern {pattern!r} contains a NUL character"
    if pattern.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", pattern):
        return f"file pattern {pattern!r} is an absolute path; patterns are relative to the source folder"
    for segment in pattern.split("/"):
        if segment in ("..", "."):
            return f"file pattern {pattern!r} has a {segment!r} folder; patterns stay inside the source folder"
        if not segment:
            return f"file pattern {pattern!r} has an empty folder name (a '//' or a trailing '/')"
    return None


def recursive(patterns: Iterable[str]) -> bool:
    """Whether matching `patterns` needs the source's subfolders listed too."""
    return any("/" in pattern or RECURSIVE in pattern for pattern in patterns)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression matching the relative paths `pattern` matches (check pattern_problem first)."""
    segments = pattern.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == RECURSIVE:
            # any number of folders; at the end, also the files in them (at any depth, at least one name)
            parts.append(r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+" if last else r"(?:(?!\.)[^/]+/)*")
        else:
            parts.append(_segment(segment) + ("" if last else "/"))
    return re.compile("".join(parts))


def _segment(segment: str) -> str:
    """One name's pattern as a regular expression (never matching '/')."""
    out = [] if segment.startswith(".") else [r"(?!\.)"]
    index = 0
    while index < len(segment):
        char = segment[index]
        index += 1
        if char == "*":
            out.append(r"[^/]*")
        elif char == "?":
            out.append(r"[^/]")
        elif char == "[" and (end := _class_end(segment, index)) is not None:
            out.append(_char_class(segment[index:end]))
            index = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def _class_end(segment: str, start: int) -> int | None:
    """The index of the `]` closing a set that opened just before `start`, or None (then `[` is literal)."""
    index = start
    if index < len(segment) and segment[index] == "!":
        index += 1
    if index < len(segment) and segment[index] == "]":
        index += 1  # a ']' first is part of the set
    end = segment.find("]", index)
    return None if end < 0 else end


def _char_class(body: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    escaped = body.replace("\\", r"\\").replace("^", r"\^")
    return f"[^/{escaped}]" if negate else f"[{escaped}]"
