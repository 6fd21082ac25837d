"""postgres-cdc's configuration, plan, wal2json decoding and LSNs, without a database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from runyard.domain.statuses import RunType
from runyard.operations.postgres_cdc import plan
from runyard.operations.postgres_cdc.decoding import DELETE, DecodingError, batch, transactions
from runyard.operations.postgres_cdc.lsn import format_lsn, from_watermark, parse_lsn, to_watermark
from runyard.operations.postgres_cdc.spec import PostgresCdcOperation

BASE: dict[str, Any] = {
    "configuration_type": "postgres-cdc",
    "configuration_id": "shop_cdc",
    "source": {"url_env": "SHOP_PG_URL"},
    "tables": ["public.orders", "sales.customers"],
}


def errors(**changes: Any) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as raised:
        PostgresCdcOperation.model_validate({**BASE, **changes})
    return [(tuple(e["loc"]), e["msg"]) for e in raised.value.errors()]


def test_a_valid_configuration_has_defaults() -> None:
    spec = PostgresCdcOperation.model_validate(BASE)
    assert (spec.slot, spec.batch_max_changes, spec.poll_seconds) == (None, 10_000, 1.0)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"source": {"url_env": "postgresql://u:p@h/db"}}, ("source", "url_env"), "not an environment variable"),
        ({"source": {"url_env": "X", "url": "postgresql://h"}}, ("source", "url"), "Extra inputs"),
        ({"tables": ["orders"]}, ("tables", 0), "named with its schema"),
        ({"tables": []}, ("tables",), "at least 1"),
        ({"tables": ["public.orders", "sales.orders"]}, ("tables",), "would both load the warehouse table"),
        ({"tables": ["public._runyard_x"]}, ("tables", 0), "runyard's own"),
        ({"slot": "Bad-Slot"}, ("slot",), "not a replication slot name"),
        ({"batch_max_changes": 0}, ("batch_max_changes",), "greater than or equal to 1"),
        ({"poll_seconds": 0}, ("poll_seconds",), "greater than 0"),
        ({"password": "x"}, ("password",), "Extra inputs"),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], field: tuple[Any, ...], words: str) -> None:
    found = errors(**changes)
    assert any(loc == field and words in message for loc, message in found), found


def test_the_plan_is_a_snapshot_then_a_long_stream_with_many_attempts() -> None:
    spec = PostgresCdcOperation.model_validate(BASE).model_dump()
    snapshot, stream = plan.plan_cdc(spec, RunType.INCREMENTAL)

    assert (snapshot.name, snapshot.metrics_type, snapshot.params["destructive"]) == (
        "Initial Snapshot",
        "extract",
        False,
    )
    assert stream.name == "Stream Changes [runyard_default_shop_cdc_dev]"
    assert (stream.stage, stream.metrics_type, stream.depends_on[0].upstream) == (
        "stream",
        "stream",
        "Initial Snapshot",
    )
    assert stream.max_attempts >= 100
    assert stream.params["tables"] == [
        {"source": "public.orders", "target": "orders"},
        {"source": "sales.customers", "target": "customers"},
    ]
    assert plan.plan_cdc(spec, RunType.DESTRUCTIVE)[0].params["destructive"] is True


def test_a_long_default_slot_name_is_cut_and_stays_unique() -> None:
    one = plan.default_slot("acme", "x" * 80 + "1", "PROD")
    two = plan.default_slot("acme", "x" * 80 + "2", "PROD")
    assert len(one) == len(two) == plan.SLOT_MAX
    assert one != two
    assert plan.default_slot("Acme", "my-op.v2", "DEV") == "runyard_acme_my_op_v2_dev"


def test_lsns_parse_format_and_store_in_order() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("0/194F7D0")) == "0/194F7D0"
    low, high = parse_lsn("0/FFFFFFFF"), parse_lsn("1/0")
    assert low < high
    assert to_watermark(low) < to_watermark(high)  # text order is LSN order: max() over tables is the position
    assert max(to_watermark(high), to_watermark(low)) == "0000000100000000"
    assert from_watermark(to_watermark(high)) == high
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        parse_lsn("12345")


def row(lsn: str, xid: int, **data: Any) -> tuple[str, int, str]:
    return (lsn, xid, json.dumps(data))


def col(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


STAMP = "2026-01-02 03:04:05.123456+00"


def insert(table: str, key: int, name: str) -> dict[str, Any]:
    return {
        "action": "I",
        "schema": "public",
        "table": table,
        "columns": [col("id", "integer", key), col("name", "text", name)],
    }


def test_wal2json_rows_decode_into_committed_transactions() -> None:
    rows = [
        row("0/10", 5, action="B", timestamp=STAMP),
        row("0/10", 5, **insert("orders", 1, "a")),
        row("0/20", 5, action="C", timestamp=STAMP),
        row("0/20", 6, action="B", timestamp=STAMP),
        row("0/20", 6, **insert("orders", 2, "b")),  # no C: left out
    ]
    (only,) = transactions(rows)
    assert (only.xid, only.commit_lsn) == (5, 0x20)
    assert only.committed_at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert [change.kind for change in only.changes] == ["I"]


def test_a_batch_keeps_the_last_change_per_key_and_only_the_configured_tables() -> None:
    update = {
        "action": "U",
        "schema": "public",
        "table": "orders",
        "columns": [col("id", "integer", 1), col("name", "text", "a2"), col("total", "numeric(10,2)", 1.50)],
        "identity": [col("id", "integer", 1)],
    }
    moved = {
        "action": "U",
        "schema": "public",
        "table": "orders",
        "columns": [col("id", "integer", 9), col("name", "text", "c")],
        "identity": [col("id", "integer", 3)],
    }
    delete = {"action": "D", "schema": "public", "table": "orders", "identity": [col("id", "integer", 2)]}
    rows = [
        row("0/10", 1, action="B"),
        row("0/10", 1, **insert("orders", 1, "a")),
        row("0/10", 1, **insert("orders", 2, "b")),
        row("0/10", 1, **insert("orders", 3, "c")),
        row("0/10", 1, **insert("other", 1, "x")),
        row("0/20", 1, action="C"),
        row("0/20", 2, action="B"),
        row("0/20", 2, **update),
        row("0/20", 2, **delete),
        row("0/20", 2, **moved),
        row("0/30", 2, action="C"),
    ]

    tables = batch(transactions(rows), {"public.orders": ("id",)})

    assert list(tables) == ["public.orders"]
    orders = tables["public.orders"]
    assert orders.columns == {"id": "integer", "name": "text", "total": "numeric(10,2)"}
    assert orders.rows == {
        (1,): (False, {"id": 1, "name": "a2", "total": Decimal("1.50")}),
        (2,): (True, {"id": 2}),
        (3,): (True, {"id": 3}),  # the key moved away from 3
        (9,): (False, {"id": 9, "name": "c"}),
    }
    assert [kind for kind, _ in orders.rows.values()] == [False, True, True, False]
    assert DELETE == "D"


def test_numbers_keep_their_digits() -> None:
    rows = [row("0/1", 1, action="B"), row("0/1", 1, **insert("t", 1, "a")), row("0/2", 1, action="C")]
    rows[1] = ("0/1", 1, rows[1][2].replace('"a"', "12345678901234567890.000001"))
    (transaction,) = transactions(rows)
    assert transaction.changes[0].columns[1][2] == Decimal("12345678901234567890.000001")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("not json", "not JSON"),
        (json.dumps({"change": []}), "format-version 2"),
        (json.dumps({"action": "D", "schema": "public", "table": "t"}), "outside a transaction"),
    ],
)
def test_what_the_decoder_cannot_read_is_said(data: str, words: str) -> None:
    with pytest.raises(DecodingError, match=words):
        transactions([("0/1", 1, data)])


def test_arrow_types_and_stream_values_agree_with_the_snapshot() -> None:
    pa = pytest.importorskip("pyarrow")
    from runyard.operations.postgres_cdc.types import arrow_type, stream_value

    assert arrow_type("numeric(10,2)") == pa.decimal128(10, 2)
    assert arrow_type("numeric") == pa.string()
    assert arrow_type("numeric(60,2)") == pa.string()
    assert arrow_type("timestamp(3) with time zone") == pa.timestamp("us", tz="UTC")
    assert arrow_type("character varying(20)") == pa.string()
    assert stream_value(Decimal("0.0000001"), pa.string()) == "0.0000001"
    assert stream_value("2024-02-03", pa.date32()) == date(2024, 2, 3)
    assert stream_value("2024-02-03 10:00:00+02", pa.timestamp("us", tz="UTC")) == datetime(2024, 2, 3, 8, tzinfo=UTC)
    assert stream_value("NaN", pa.float64()) != stream_value("NaN", pa.float64())
