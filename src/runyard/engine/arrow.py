"""Everything runyard does with pyarrow, in one module: records to batches, schemas, Parquet.

Column names come from the source's JSON keys and are kept as they are (quoted wherever they
reach SQL); nested objects flatten to `parent__child`; lists stay lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runyard.errors import RunyardError

SEPARATOR = "__"
Table = pa.Table
Schema = pa.Schema
RecordBatch = pa.RecordBatch


class RecordShapeError(RunyardError):
    """The source returned something that is not a list of JSON objects."""


def records_to_table(records: Sequence[Any]) -> pa.Table:
    """A page of JSON records as an Arrow table, nested objects flattened.

    pyarrow infers the types in C++ (fast). A key whose values mix types (a number here, a
    string there) cannot be one Arrow type: that column falls back to JSON text.
    """
    if not records:
        return pa.table({})
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise RecordShapeError(f"record {position + 1} is a {kind}, not a JSON object")
    try:
        table = pa.Table.from_pylist(list(records))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        table = _columnwise(records)
    return detect_temporal(flatten(table))


# ISO 8601 as APIs send it: a date, or a date and time with an optional zone.
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_TIME = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
_ISO_ZONE = r"(Z|[+-]\d{2}:?\d{2})"
_DATE_ONLY = f"^{_ISO_DATE}$"
_ZONED = f"^{_ISO_DATE}{_ISO_TIME}{_ISO_ZONE}$"
_NAIVE = f"^{_ISO_DATE}{_ISO_TIME}$"
_TEMPORAL_TYPES = (
    (re.compile(_DATE_ONLY), pa.date32()),
    (re.compile(_ZONED), pa.timestamp("us", tz="UTC")),
    (re.compile(_NAIVE), pa.timestamp("us")),
)


def detect_temporal(table: pa.Table) -> pa.Table:
    """String columns whose every value is an ISO date or timestamp become DATE or TIMESTAMP columns.

    The first value picks the candidate type; the cast itself checks every value (it refuses
    anything that is not ISO 8601), so no column is scanned twice.
    """
    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type):
            continue
        column = table.column(index)
        target = _temporal_type(_first_value(column))
        if target is not None:
            try:
                table = table.set_column(index, field.name, column.cast(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue  # a value that is not ISO 8601 (or an impossible date): keep the text
    return table


def _first_value(column: pa.ChunkedArray) -> Any:
    for chunk in column.chunks:
        if chunk.null_count < len(chunk):
            head = chunk.slice(0, 64).to_pylist()
            found = next((v for v in head if v is not None), None)
            if found is not None:
                return found
            return chunk.drop_null()[0].as_py()
    return None


def _temporal_type(first: Any) -> pa.DataType | None:
    if not (isinstance(first, str) and first[:4].isdigit()):
        return None
    for pattern, target in _TEMPORAL_TYPES:
        if pattern.match(first):
            return target
    return None


def column_max(table: pa.Table, name: str) -> Any:
    """The largest value of a column (None if absent or empty), for high watermarks."""
    if name not in table.column_names or table.num_rows == 0:
        return None
    return pc.max(table.column(name)).as_py()


def column_min(table: pa.Table, name: str) -> Any:
    """The smallest value of a column (None if absent or empty)."""
    if name not in table.column_names or table.num_rows == 0:
        return None
    return pc.min(table.column(name)).as_py()


def _columnwise(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    columns = {}
    for key in keys:
        values = [record.get(key) for record in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[key] = pa.array([_as_text(v) for v in values], type=pa.string())
    return pa.table(columns)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def flatten(table: pa.Table) -> pa.Table:
    """Struct columns become `parent__child` columns, recursively."""
    while any(pa.types.is_struct(field.type) for field in table.schema):
        names, arrays = [], []
        for field, column in zip(table.schema, table.columns, strict=True):
            if pa.types.is_struct(field.type):
                # StructArray.flatten() carries the parent's nulls into the children (field() does not).
                children = [chunk.flatten() for chunk in column.chunks]
                for index, child in enumerate(field.type):
                    names.append(f"{field.name}{SEPARATOR}{child.name}")
                    arrays.append(pa.chunked_array([parts[index] for parts in children], type=child.type))
            else:
                names.append(field.name)
                arrays.append(column)
        table = pa.Table.from_arrays(arrays, names=names)
    return table


def unify(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """The union of schemas, with permissive promotion (int -> double, null -> anything...)."""
    schemas = [s for s in schemas if len(s)]
    if not schemas:
        return pa.schema([])
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _unify_as_text(schemas)


def _unify_as_text(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """When types cannot be promoted (a list here, a string there), the column becomes text."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for field in schema:
            known = fields.get(field.name)
            if known is None:
                fields[field.name] = field
            elif known.type != field.type:
                try:
                    fields[field.name] = pa.unify_schemas(
                        [pa.schema([known]), pa.schema([field])], promote_options="permissive"
                    ).field(0)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    fields[field.name] = pa.field(field.name, pa.string())
    return pa.schema(list(fields.values()))


def align(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with exactly the blueprint's columns, in its order and types (missing ones null)."""
    if table.schema.equals(schema):
        return table
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            arrays.append(column if column.type == field.type else _cast(column, field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_string(target) and not pa.types.is_string(column.type):
        if pa.types.is_null(column.type) or pa.types.is_primitive(column.type):
            return column.cast(target)
        return pa.chunked_array([pa.array([_as_text(v) for v in column.to_pylist()], type=target)])
    return column.cast(target)


def only_missing_columns(schema: pa.Schema, blueprint: pa.Schema) -> bool:
    """True when every column of `schema` is in the blueprint with the same type."""
    return all(
        blueprint.get_field_index(field.name) >= 0 and blueprint.field(field.name).type == field.type
        for field in schema
    )


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables, promote_options="permissive")


def schema_to_json(schema: pa.Schema) -> str:
    """A schema as text for manifests (Arrow IPC, base16), exact for every type."""
    return bytes(schema.serialize()).hex()


def schema_from_json(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(text)))


def describe(schema: pa.Schema) -> dict[str, str]:
    """Column name -> a readable type, for messages."""
    return {field.name: str(field.type) for field in schema}


def write_parquet(table: pa.Table, sink: IO[bytes]) -> None:
    # Staged parts live minutes, not years: snappy without dictionaries writes twice as fast as zstd
    # and reads as fast, for files about twice as large.
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)


def read_parquet(source: IO[bytes]) -> pa.Table:
    return pq.read_table(source)


def batches(table: pa.Table, rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=rows)


def reader(schema: pa.Schema, parts: Iterable[pa.RecordBatch]) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, parts)
