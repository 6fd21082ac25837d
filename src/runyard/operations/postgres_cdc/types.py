"""PostgreSQL column types as Arrow types, the same for the snapshot and for the stream.

| PostgreSQL | Arrow (DuckDB) |
| smallint, integer, bigint | int16, int32, int64 |
| boolean | bool |
| real, double precision | float32, float64 |
| numeric(p, s), p <= 38 | decimal128(p, s): exact |
| numeric without precision (or p > 38) | text, as PostgreSQL prints it: no exact fixed type can hold any value |
| date | date32 |
| timestamp [without time zone] | timestamp[us] |
| timestamp with time zone | timestamp[us, UTC] |
| everything else (text, varchar, char, json, jsonb, uuid, arrays, intervals...) | text, as PostgreSQL prints it |

The snapshot reads text columns with `::text` and the stream takes wal2json's text, both printed by the type's
own output function under the session settings of source.SESSION, so the two agree value by value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from runyard.operations.postgres_cdc.decoding import TableChanges

DELETED_COLUMN = "_runyard_deleted"
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_TIMESTAMP = re.compile(r"^timestamp(\(\d\))?( without time zone)?$")
_TIMESTAMPTZ = re.compile(r"^timestamp(\(\d\))? with time zone$")
_FIXED: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "date": pa.date32(),
}


class UnfitValue(ValueError):
    """A source value that its column's Arrow type cannot hold; the message names the column."""


def arrow_type(pg_type: str) -> pa.DataType:
    """The Arrow type of a column of PostgreSQL type `pg_type` (as format_type and wal2json print it)."""
    if pg_type in _FIXED:
        return _FIXED[pg_type]
    numeric = _NUMERIC.match(pg_type)
    if numeric and int(numeric.group(1)) <= 38:
        return pa.decimal128(int(numeric.group(1)), int(numeric.group(2)))
    if _TIMESTAMPTZ.match(pg_type):
        return pa.timestamp("us", tz="UTC")
    if _TIMESTAMP.match(pg_type):
        return pa.timestamp("us")
    return pa.string()


def read_as_text(pg_type: str) -> bool:
    """Whether the snapshot reads the column as PostgreSQL prints it (`::text`)."""
    return bool(pa.types.is_string(arrow_type(pg_type)))


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # PostgreSQL never prints an exponent
    return str(value)


def stream_value(value: Any, kind: pa.DataType) -> Any:
    """A wal2json value (JSON, numbers as Decimal) as a Python value of Arrow type `kind`."""
    if value is None:
        return None
    if pa.types.is_string(kind):
        return _to_text(value)
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_floating(kind):
        return float(value)  # "NaN", "Infinity" come as text
    if pa.types.is_decimal(kind):
        return Decimal(value) if not isinstance(value, Decimal) else value
    if pa.types.is_date(kind):
        return date.fromisoformat(value)
    if pa.types.is_timestamp(kind):
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return value  # boolean


def _array(values: Sequence[Any], kind: pa.DataType, column: str, table: str) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowException, ValueError, TypeError, OverflowError, InvalidOperation) as error:
        raise UnfitValue(f"{table}.{column}: a value does not fit the warehouse type {kind} ({error})") from None


def change_batch(changes: TableChanges) -> pa.RecordBatchReader:
    """A table's changes as one Arrow batch: its columns, and DELETED_COLUMN true for the deleted keys."""
    names = list(changes.columns)
    kinds = {name: arrow_type(changes.columns[name]) for name in names}
    columns: dict[str, list[Any]] = {name: [] for name in names}
    deleted: list[bool] = []
    for flag, values in changes.rows.values():
        deleted.append(flag)
        for name in names:
            try:
                columns[name].append(stream_value(values.get(name), kinds[name]))
            except (ValueError, TypeError, InvalidOperation) as error:
                raise UnfitValue(
                    f"{changes.source}.{name}: the value {str(values.get(name))[:60]!r} cannot be read as "
                    f"{kinds[name]} ({error})"
                ) from None
    arrays = [_array(columns[name], kinds[name], name, changes.source) for name in names]
    arrays.append(pa.array(deleted, type=pa.bool_()))
    fields = [pa.field(name, kinds[name]) for name in names] + [pa.field(DELETED_COLUMN, pa.bool_())]
    batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return pa.RecordBatchReader.from_batches(batch.schema, [batch])


def snapshot_schema(columns: Mapping[str, str]) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type(kind)) for name, kind in columns.items()])


def snapshot_batches(
    table: str, schema: pa.Schema, chunks: Iterable[Sequence[Sequence[Any]]]
) -> Iterable[pa.RecordBatch]:
    """Rows read by the snapshot (tuples in the schema's column order), chunk by chunk, as Arrow batches."""
    for rows in chunks:
        arrays = [
            _array([row[index] for row in rows], column.type, column.name, table) for index, column in enumerate(schema)
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
