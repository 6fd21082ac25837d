"""How an export page is written: CSV (the default), gzip of that CSV, or JSON (an array of objects); and the words
of the export's wire protocol (its header and messages), which the server and the client share.

Every page stands alone: a CSV page starts with the header row, so any page can be read without the first.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

TOKEN_HEADER = "continuation-token"  # noqa: S105 - a header's name: page 1 answers it, every later page sends it
NOT_CACHED = "Page still not yet cached. Please retry."
WILL_NOT_EXIST = "This page will not exist"
OutputType = Literal["csv", "gzip", "json"]
OUTPUT_TYPES: tuple[OutputType, ...] = ("csv", "gzip", "json")
# BI Views v2's soft limits: 10,000 rows a page in CSV, 20,000 compressed.
MAX_PAGE_SIZE: dict[OutputType, int] = {"csv": 10_000, "json": 10_000, "gzip": 20_000}
MEDIA_TYPES: dict[OutputType, str] = {
    "csv": "text/csv; charset=utf-8",
    "gzip": "application/gzip",
    "json": "application/json",
}
EXTENSIONS: dict[OutputType, str] = {"csv": "csv", "gzip": "csv.gz", "json": "json"}
_GZIP_LEVEL = 5  # about as small as level 9 on CSV, several times faster
_GZIP_WBITS = 31  # a gzip header and trailer, not a bare zlib stream


def encode_page(table: pa.Table, output_type: OutputType) -> bytes:
    """One page in `output_type`: its CSV with the header row, gzipped, or a JSON array of objects."""
    if output_type == "json":
        return _json(table)
    data = _csv(table)
    return _gzip(data) if output_type == "gzip" else data


def empty_page(columns: Sequence[str], output_type: OutputType) -> bytes:
    """The page of an export without rows: the header row alone (CSV), or `[]`."""
    if output_type == "json":
        return b"[]"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(columns)  # as pyarrow writes headers
    data = buffer.getvalue().encode()
    return _gzip(data) if output_type == "gzip" else data


def _csv(table: pa.Table) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    sink = pa.BufferOutputStream()
    pa_csv.write_csv(_flat(table), sink, pa_csv.WriteOptions(include_header=True))
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _flat(table: pa.Table) -> pa.Table:
    """Nested columns (lists, structs, maps), which CSV cannot hold, become their JSON text."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            texts = [
                None if value is None else orjson.dumps(value, default=_plain).decode()
                for value in table.column(index).to_pylist()
            ]
            table = table.set_column(index, pa.field(field.name, pa.string()), pa.array(texts, pa.string()))
    return table


def _json(table: pa.Table) -> bytes:
    names = table.column_names
    columns = [column.to_pylist() for column in table.columns]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if columns else []
    return orjson.dumps(rows, default=_plain, option=orjson.OPT_NAIVE_UTC)


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: exact decimals as text, bytes as hex, times as ISO text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()


def without_header(page: bytes) -> bytes:
    """A CSV page without its header record (a quoted column name may hold a line break), to append it to the pages
    before it."""
    quoted = False
    for index, byte in enumerate(page):
        if byte == _QUOTE:
            quoted = not quoted  # an escaped quote ("") flips twice
        elif byte == _NEWLINE and not quoted:
            return page[index + 1 :]
    return b""


_QUOTE, _NEWLINE = ord('"'), ord("\n")
