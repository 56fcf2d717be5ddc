from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.errors import ConfigError
from recovery.records.avro import (
    AVRO_REASON_CATEGORIES,
    BAD_AVRO,
    BAD_SCHEMA,
    UNKNOWN_SCHEMA,
    WRONG_MAGIC,
    AvroCodec,
    LocalSchemas,
    split_wire,
    wire_bytes,
)
from recovery.records.reasons import EMPTY, NOT_OBJECT, reason_category
from tests.unit.records.avro_reference import (
    ORDER_SCHEMA,
    double,
    frame,
    order_payload,
    string,
    write_avsc,
    zigzag_varint,
)

ORDER = {"order_id": "o-1", "customer": "c7", "qty": 3, "price": 2.5, "ts": 1_767_603_600_000, "note": None}


@pytest.fixture
def order_avsc(tmp_path: Path) -> Path:
    return write_avsc(tmp_path / "order.avsc", ORDER_SCHEMA)


@pytest.fixture
def codec(order_avsc: Path) -> AvroCodec:
    return AvroCodec.from_files({7: order_avsc})


def test_reference_varints_follow_the_spec() -> None:
    # the Avro spec's table: 0 -> 00, -1 -> 01, 1 -> 02, -2 -> 03, 2 -> 04, -64 -> 7f, 64 -> 80 01
    assert [zigzag_varint(n).hex() for n in (0, -1, 1, -2, 2, -64, 64)] == [
        "00",
        "01",
        "02",
        "03",
        "04",
        "7f",
        "8001",
    ]


def test_hand_built_bytes_decode_byte_by_byte(codec: AvroCodec) -> None:
    value = bytes.fromhex(
        "00"  # magic byte
        "00000007"  # schema id 7, big-endian
        "06 6f2d31"  # order_id: length 3 (zig-zag 6), "o-1"
        "04 6337"  # customer: length 2, "c7"
        "06"  # qty 3
        "0000000000000440"  # price 2.5, little-endian double
        "d00f"  # ts 1000: zig-zag 2000 = 0x50 | 0x80, then 0x0f
        "02 08 67696674"  # note: union branch 1 (string), length 4, "gift"
    )
    expected = ORDER | {"ts": 1000, "note": "gift"}
    assert codec.decode_many([value]) == [expected]
    assert codec.encode(expected, 7) == value
    assert frame(7, order_payload(expected)) == value


def test_encode_gives_the_reference_bytes(codec: AvroCodec) -> None:
    with_note = ORDER | {"note": "gift", "qty": -64}
    assert codec.encode(ORDER, 7) == frame(7, order_payload(ORDER))
    assert codec.encode(with_note, 7) == frame(7, order_payload(with_note))


orders = st.fixed_dictionaries(
    {
        "order_id": st.text(max_size=20),
        "customer": st.text(min_size=1, max_size=8),
        "qty": st.integers(-(2**31), 2**31 - 1),
        "price": st.floats(allow_nan=False),
        "ts": st.integers(-(2**63), 2**63 - 1),
        "note": st.none() | st.text(max_size=10),
    }
)


@pytest.fixture(scope="module")
def order_codec_id1(tmp_path_factory: pytest.TempPathFactory) -> AvroCodec:
    return AvroCodec.from_files({1: write_avsc(tmp_path_factory.mktemp("avsc") / "order.avsc", ORDER_SCHEMA)})


@settings(max_examples=200, deadline=None)
@given(records=st.lists(orders, max_size=20))
def test_round_trip_against_the_reference_writer(records: list[dict[str, Any]], order_codec_id1: AvroCodec) -> None:
    codec = order_codec_id1
    values = [frame(1, order_payload(r)) for r in records]
    assert [codec.encode(r, 1) for r in records] == values
    assert codec.decode_many(values) == records


def test_empty_input_gives_an_empty_list(codec: AvroCodec) -> None:
    assert codec.decode_many([]) == []


@pytest.mark.parametrize(
    ("value", "category", "detail"),
    [
        (None, EMPTY, "null value (tombstone)"),
        (b"", EMPTY, "no bytes"),
        (b'{"order_id": "o-1"}', WRONG_MAGIC, "first byte is 123"),
        (b"\x01\x00\x00\x00\x07" + order_payload(ORDER), WRONG_MAGIC, "first byte is 1"),
        (b"\x00\x00\x07", BAD_AVRO, "3 bytes, shorter than the 5-byte header"),
        (frame(8, order_payload(ORDER)), UNKNOWN_SCHEMA, "8 is not in Avro schemas 7="),
        (frame(7, order_payload(ORDER)[:-3]), BAD_AVRO, "(schema id 7)"),
        (frame(7, b""), BAD_AVRO, "(schema id 7)"),
        (frame(7, order_payload(ORDER) + b"\x00\x00"), BAD_AVRO, "2 bytes left after the record"),
        (frame(7, string("o-1") + string("c") + b"\x06" + double(1.0) + b"\x02" + b"\x04"), BAD_AVRO, "IndexError"),
    ],
    ids=[
        "null",
        "empty",
        "json",
        "magic-1",
        "short-header",
        "unknown-id",
        "truncated",
        "no-payload",
        "trailing",
        "bad-union-index",
    ],
)
def test_malformed_values_get_a_reason(codec: AvroCodec, value: bytes | None, category: str, detail: str) -> None:
    (reason,) = codec.decode_many([value])
    assert isinstance(reason, str)
    assert reason_category(reason) == category
    assert category in AVRO_REASON_CATEGORIES
    assert detail.lower() in reason.lower()


def test_bad_records_do_not_disturb_their_neighbours(codec: AvroCodec) -> None:
    other = ORDER | {"order_id": "o-2", "note": "x"}
    values = [frame(7, order_payload(ORDER)), b"\x05junk", None, frame(7, order_payload(other)), frame(9, b"")]
    out = codec.decode_many(values)
    assert out[0] == ORDER and out[3] == other
    assert [reason_category(o) for o in out if isinstance(o, str)] == [WRONG_MAGIC, EMPTY, UNKNOWN_SCHEMA]


def test_split_wire_reads_the_id_big_endian() -> None:
    assert split_wire(b"\x00\x01\x02\x03\x04rest") == (0x01020304, 5)
    assert wire_bytes(0x01020304, b"p") == b"\x00\x01\x02\x03\x04p"
    with pytest.raises(ConfigError, match="does not fit 4 bytes"):
        wire_bytes(2**32, b"")


def test_a_reader_schema_alone_serves_every_id(order_avsc: Path) -> None:
    codec = AvroCodec.from_files(reader=order_avsc)
    values = [frame(i, order_payload(ORDER)) for i in (1, 2, 99_999)]
    assert codec.decode_many(values) == [ORDER, ORDER, ORDER]


def test_writer_schemas_resolve_into_the_reader_schema(tmp_path: Path) -> None:
    v1 = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "order_id", "type": "string"}, {"name": "qty", "type": "int"}],
    }
    v2 = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "order_id", "type": "string"},
            {"name": "qty", "type": "long"},
            {"name": "channel", "type": "string", "default": "web"},
        ],
    }
    codec = AvroCodec.from_files(
        {1: write_avsc(tmp_path / "v1.avsc", v1), 2: write_avsc(tmp_path / "v2.avsc", v2)},
        reader=tmp_path / "v2.avsc",
    )
    old = frame(1, string("a") + zigzag_varint(5))
    new = frame(2, string("b") + zigzag_varint(6) + string("app"))
    assert codec.decode_many([old, new]) == [
        {"order_id": "a", "qty": 5, "channel": "web"},
        {"order_id": "b", "qty": 6, "channel": "app"},
    ]


LOGICAL_SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "at_ns", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "tod_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "maybe_us", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "history", "type": {"type": "array", "items": {"type": "int", "logicalType": "date"}}},
    ],
}


def test_logical_types_decode_to_epoch_ms_floats_and_strings(tmp_path: Path) -> None:
    codec = AvroCodec.from_files({3: write_avsc(tmp_path / "r.avsc", LOGICAL_SCHEMA)})
    ref = uuid.UUID(int=12345)
    payload = (
        zigzag_varint(1_767_603_600_123_456)  # µs
        + zigzag_varint(-1_500_000)  # ns: floor(-1.5 ms) = -2 ms
        + zigzag_varint(20_458)  # days
        + zigzag_varint(5)
        + zigzag_varint(3_600_000_999)  # µs of day
        + zigzag_varint(2)
        + (12_345).to_bytes(2, "big")  # unscaled 12345, scale 2: 123.45
        + string(str(ref))
        + zigzag_varint(1)
        + zigzag_varint(1_000_999)
        + zigzag_varint(2)
        + zigzag_varint(0)
        + zigzag_varint(1)
        + zigzag_varint(0)
    )
    (record,) = codec.decode_many([frame(3, payload)])
    assert record == {
        "at_us": 1_767_603_600_123,
        "at_ns": -2,
        "day": 20_458 * 86_400_000,
        "local_ms": 5,
        "tod_us": 3_600_000,
        "amount": 123.45,
        "ref": str(ref),
        "maybe_us": 1_000,
        "history": [0, 86_400_000],
    }
    # encoding takes the decoded forms back (exact for values with no sub-ms part)
    exact = dict(record) | {"at_us": 1_767_603_600_123, "tod_us": 3_600_000, "maybe_us": 1_000, "at_ns": -2}
    again = codec.decode_many([codec.encode(exact, 3)])[0]
    assert again == exact
    assert (
        isinstance(again, dict)
        and type(again["amount"]) is float
        and Decimal("123.45") == Decimal(repr(again["amount"]))
    )


def test_a_schema_that_is_not_a_record_is_not_an_object(tmp_path: Path) -> None:
    codec = AvroCodec.from_files({1: write_avsc(tmp_path / "n.avsc", "long")})
    (reason,) = codec.decode_many([frame(1, zigzag_varint(42))])
    assert reason == f"{NOT_OBJECT}: got int (schema id 1)"


def test_a_record_that_does_not_fit_is_refused_on_encode(codec: AvroCodec) -> None:
    with pytest.raises(ConfigError, match="record does not fit Avro schema id 7"):
        codec.encode(ORDER | {"qty": "three"}, 7)
    with pytest.raises(ConfigError, match=f"{UNKNOWN_SCHEMA}: 5"):
        codec.encode(ORDER, 5)


def test_bad_schema_files_are_refused_when_the_codec_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read Avro schema"):
        AvroCodec.from_files({1: tmp_path / "missing.avsc"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        AvroCodec.from_files({1: tmp_path / "bad.json"})
    bad = write_avsc(tmp_path / "bad.avsc", {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})
    with pytest.raises(ConfigError, match="does not parse"):
        AvroCodec.from_files({1: bad})
    with pytest.raises(ConfigError, match="no Avro schema given"):
        LocalSchemas({})


def test_unknown_ids_are_looked_up_once(order_avsc: Path) -> None:
    calls: list[int] = []

    class Counting(LocalSchemas):
        def writer_schema(self, schema_id: int) -> Any:
            calls.append(schema_id)
            return super().writer_schema(schema_id)

    codec = AvroCodec(Counting({7: order_avsc}))
    out = codec.decode_many([frame(7, order_payload(ORDER)), frame(8, b"")] * 50)
    assert sorted(calls) == [7, 8]
    assert sum(isinstance(o, dict) for o in out) == 50


def test_registry_schemas_of_another_type_are_unsupported() -> None:
    from recovery.records.avro import RegistrySchemas
    from recovery.records.registry import RegisteredSchema, RegistryClient

    class Protobuf(RegistryClient):
        def schema(self, schema_id: int) -> RegisteredSchema | None:
            return RegisteredSchema(schema_id, 'syntax = "proto3";', "PROTOBUF")

    codec = AvroCodec(RegistrySchemas(Protobuf("http://127.0.0.1:1")))
    (reason,) = codec.decode_many([frame(4, b"\x00")])
    assert reason == f"{BAD_SCHEMA}: schema id 4 is PROTOBUF, not AVRO"
