"""PostgreSQL log sequence numbers (LSN): `16/B374D848` as PostgreSQL prints them, integers to compare, and the
zero-padded hex text stored as a table's high watermark (so that the text order is the LSN order)."""

from __future__ import annotations

import re

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_WATERMARK = re.compile(r"^[0-9A-F]{16}$")


def parse_lsn(text: str) -> int:
    """`16/B374D848` as an integer (ValueError if it is no LSN)."""
    found = _LSN.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a PostgreSQL LSN such as 16/B374D848")
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


def format_lsn(value: int) -> str:
    """An LSN as PostgreSQL prints it: `16/B374D848`."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def to_watermark(value: int) -> str:
    """The LSN as 16 upper-case hex digits: stored text whose order (and max()) is the LSN's."""
    return f"{value:016X}"


def from_watermark(text: str) -> int:
    """The LSN a stored watermark holds (ValueError if the text was not written by to_watermark)."""
    if not _WATERMARK.match(text):
        raise ValueError(f"{text!r} is not a stored LSN (16 hex digits)")
    return int(text, 16)
