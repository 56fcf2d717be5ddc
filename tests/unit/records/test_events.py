from __future__ import annotations

import json

import pytest

from recovery.records.events import parse_event
from recovery.records.reasons import REASON_CATEGORIES, display_value, reason_category
from recovery.spec import FieldsSpec

FIELDS = FieldsSpec()
GOOD = {"event_id": "AAPL-1", "symbol": "AAPL", "seq": 1, "ts": 1_767_603_600_000, "price": 101.5, "volume": 20}


def encode(**changes: object) -> bytes:
    event = {k: v for k, v in (GOOD | changes).items() if v is not ...}
    return json.dumps(event).encode()


def test_valid_event_in_canonical_names() -> None:
    assert parse_event(encode(), FIELDS) == {
        "event_id": "AAPL-1",
        "key": "AAPL",
        "seq": 1,
        "ts": 1_767_603_600_000,
        "price": 101.5,
        "volume": 20.0,
    }


def test_field_names_come_from_the_spec() -> None:
    fields = FieldsSpec(id="id", key="sensor", time="t", seq="n", price="reading", volume="weight")
    value = json.dumps({"id": "x", "sensor": "s1", "t": 5, "n": 2, "reading": 1.0, "weight": 0}).encode()
    parsed = parse_event(value, fields)
    assert isinstance(parsed, dict) and parsed["key"] == "s1" and parsed["ts"] == 5
    assert parse_event(encode(), fields) == "missing field: id, sensor, n, t, reading, weight"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value: null value (tombstone)"),
        (b"", "empty value: no bytes"),
        (b"\xff\xfe{", "bad encoding: value is not UTF-8"),
        (b'{"event_id": "A-1", "symbol": "A"', "bad JSON"),
        (b"[1, 2, 3]", "not an object: got list"),
        (b'"just a string"', "not an object: got str"),
        (encode(price=...), "missing field: price"),
        (encode(ts=None), "missing field: ts"),
        (encode(price="101.5"), "wrong type: price must be a number, got str"),
        (encode(seq=1.0), "wrong type: seq must be an integer, got float"),
        (encode(ts=True), "wrong type: ts must be an integer (epoch ms), got bool"),
        (encode(symbol=7), "wrong type: symbol must be a string, got int"),
        (encode(symbol=""), "bad value: symbol is empty"),
        (encode(price=-1.0), "bad value: price is negative"),
        (encode(volume=-3), "bad value: volume is negative"),
        (encode(price=float("nan")), "bad value: price is nan"),
        (encode(price=float("inf")), "bad value: price is inf"),
        (encode(price=10**400), "bad value: price is too large"),
        (encode(ts=-5), "bad value: ts is negative"),
        (encode(seq=2**70), "bad value: seq does not fit 64 bits"),
    ],
)
def test_every_malformed_kind_gets_a_reason(value: bytes | None, reason: str) -> None:
    got = parse_event(value, FIELDS)
    assert isinstance(got, str) and got.startswith(reason)
    assert reason_category(got) in REASON_CATEGORIES


def test_display_value_is_lossy_and_short() -> None:
    assert display_value(None) == ""
    assert display_value(b"ok\xff") == "ok\ufffd"
    assert len(display_value(b"x" * 10_000)) == 200
