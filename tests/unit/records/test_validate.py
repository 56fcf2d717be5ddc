"""Validation of raw records: bulk decoding, quarantine reasons, agreement with the per-record rules."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recovery.errors import DataError
from recovery.frames import EVENTS, QUARANTINE, RECORDS
from recovery.records.events import parse_event
from recovery.records.validate import quarantine_counts, validate
from recovery.spec import FieldsSpec

FIELDS = FieldsSpec()


def event(i: int, **changes: object) -> bytes:
    data: dict[str, object] = {
        "event_id": f"S-{i}",
        "symbol": "S",
        "seq": i,
        "ts": 1_000 + i,
        "price": 100.5,
        "volume": 2.0,
    }
    data.update(changes)
    return json.dumps(data).encode()


def records(values: list[bytes | None]) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "partition": [0] * n,
            "offset": list(range(n)),
            "timestamp_ms": [5_000 + i for i in range(n)],
            "key": [b"S"] * n,
            "value": values,
        },
        schema=RECORDS,
    )


def test_valid_records_become_canonical_events() -> None:
    events, quarantine = validate(records([event(1), event(2, price=7, volume=0)]), FIELDS)
    expected = pl.DataFrame(
        {
            "partition": [0, 0],
            "offset": [0, 1],
            "timestamp_ms": [5_000, 5_001],
            "event_id": ["S-1", "S-2"],
            "key": ["S", "S"],
            "seq": [1, 2],
            "ts": [1_001, 1_002],
            "price": [100.5, 7.0],
            "volume": [2.0, 0.0],
        },
        schema=EVENTS,
    )
    assert_frame_equal(events, expected)
    assert_frame_equal(quarantine, pl.DataFrame(schema=QUARANTINE))


def test_empty_input_keeps_the_schemas() -> None:
    events, quarantine = validate(pl.DataFrame(schema=RECORDS), FIELDS)
    assert_frame_equal(events, pl.DataFrame(schema=EVENTS))
    assert_frame_equal(quarantine, pl.DataFrame(schema=QUARANTINE))


MALFORMED: list[tuple[bytes | None, str]] = [
    (b"\xff\xfe{}", "bad encoding"),
    (b"not json", "bad JSON"),
    (b'{"event_id": "x"', "bad JSON"),
    (b"[1, 2]", "not an object"),
    (b"", "empty value"),
    (None, "empty value"),
    (event(3, seq="x"), "wrong type"),
    (event(3, seq=2.5), "wrong type"),
    (event(3, seq=True), "wrong type"),
    (event(3, event_id=7), "wrong type"),
    (event(3, price="1.5"), "wrong type"),
    (event(3, symbol=None), "missing field"),
    (json.dumps({"event_id": "a", "symbol": "S", "seq": 1, "ts": 5, "volume": 1}).encode(), "missing field"),
    (event(3, price=-1.0), "bad value"),
    (event(3).replace(b"100.5", b"NaN"), "bad value"),
    (event(3).replace(b"100.5", b"1e400"), "bad value"),
    (event(3, seq=2**70), "bad value"),
    (event(3, symbol=""), "bad value"),
]


@pytest.mark.parametrize(("value", "category"), MALFORMED)
def test_malformed_records_are_quarantined_with_their_reason(value: bytes | None, category: str) -> None:
    events, quarantine = validate(records([event(1), value, event(2)]), FIELDS)
    assert events.get_column("offset").to_list() == [0, 2]
    assert quarantine.select("partition", "offset", "timestamp_ms").row(0) == (0, 1, 5_001)
    assert quarantine.item(0, "reason").startswith(category)
    assert quarantine.item(0, "key") == "S"


def test_many_malformed_records_never_stop_the_run_and_are_counted() -> None:
    values = [event(i) if i % 3 else b"garbage" for i in range(3_000)]
    events, quarantine = validate(records(values), FIELDS)
    assert events.height == 2_000
    assert quarantine.height == 1_000
    assert quarantine_counts(quarantine) == {"bad JSON": 1_000}
    assert quarantine.get_column("offset").to_list() == list(range(0, 3_000, 3))


def test_nested_or_reordered_json_is_still_valid() -> None:
    reordered = b'{"volume": 1, "price": 2.5e1, "ts": 7, "seq": 4, "symbol": "S", "event_id": "e", "x": {"a": [1]}}'
    events, quarantine = validate(
        records([reordered, b'  {"event_id" : "f", "symbol":"S","seq": 5 ,"ts":8,"price":1,"volume":1}  ']), FIELDS
    )
    assert quarantine.height == 0
    assert events.select("event_id", "seq", "price").rows() == [("e", 4, 25.0), ("f", 5, 1.0)]


def test_field_names_come_from_the_spec() -> None:
    fields = FieldsSpec(id="id", key="key", time="time", seq="n", price="p", volume="v")
    value = json.dumps({"id": "a", "key": "K", "time": 9, "n": 1, "p": 3.0, "v": 1.0}).encode()
    events, quarantine = validate(records([value, event(1)]), fields)
    assert events.select("event_id", "key", "ts").rows() == [("a", "K", 9)]
    assert quarantine.item(0, "reason").startswith("missing field")


def test_quarantined_values_are_truncated_for_display() -> None:
    _, quarantine = validate(records([b"x" * 10_000]), FIELDS)
    assert len(quarantine.item(0, "value")) <= 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


@st.composite
def raw_values(draw: st.DrawFn) -> bytes | None:
    base: dict[str, object] = {
        "event_id": draw(st.text(max_size=3)),
        "symbol": draw(st.sampled_from(["A", "B", ""])),
        "seq": draw(st.integers(-2, 5)),
        "ts": draw(st.integers(-2, 10**13)),
        "price": draw(st.floats(-1, 1e6)),
        "volume": draw(st.floats(-1, 1e3)),
    }
    for name in draw(st.sets(st.sampled_from(sorted(base)), max_size=2)):
        if draw(st.booleans()):
            del base[name]
        else:
            base[name] = draw(json_values)
    text = json.dumps(base)
    mangle = draw(st.sampled_from(["none", "none", "truncate", "bytes", "null"]))
    if mangle == "truncate":
        return text[: draw(st.integers(0, len(text)))].encode()
    if mangle == "bytes":
        return text.encode() + b"\xff"
    if mangle == "null":
        return None
    return text.encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(raw_values(), min_size=1, max_size=25))
def test_bulk_validation_agrees_with_the_per_record_rules(values: list[bytes | None]) -> None:
    events, quarantine = validate(records(values), FIELDS)
    expected_valid = []
    expected_bad = []
    for offset, value in enumerate(values):
        parsed = parse_event(value, FIELDS)
        if isinstance(parsed, dict):
            expected_valid.append((offset, parsed["event_id"], parsed["seq"], parsed["price"]))
        else:
            expected_bad.append((offset, parsed))
    assert events.select("offset", "event_id", "seq", "price").rows() == expected_valid
    assert quarantine.select("offset", "reason").rows() == expected_bad


def test_a_frame_that_is_not_records_is_refused() -> None:
    with pytest.raises(DataError, match="expected a RECORDS frame, it lacks column"):
        validate(pl.DataFrame({"value": [b"{}"]}), FIELDS)


# JSON literals at the edges of what one regex pass may read: escapes, control characters, -0, leading zeros,
# exponents, integers beyond 64 bits, numbers beyond float range, wrong kinds
_LITERALS = [
    "0", "-0", "7", "007", "-3", "1.5", "-0.0", "0.1", "1e5", "1E+05", "2.5e-3", "1e999", "-1e999", "1.",
    "99999999999999999999", "9223372036854775807", "9223372036854775808", "true", "null", '"7"',
    '"A"', '""', '"a\\"b"', '"\\u00e9"', '"\u00e9"', '"x\\ty"', '"tab\there"', '"\\q"',
]  # fmt: skip


@st.composite
def compact_values(draw: st.DrawFn) -> bytes:
    """Records in the toolkit's own compact field order, each field a literal from the edge cases."""
    usual = {"event_id": '"S-1"', "symbol": '"S"', "seq": "3", "ts": "1767603600123", "price": "1.25"}
    usual["volume"] = "2.0"
    changed = draw(st.sets(st.sampled_from(sorted(usual)), max_size=2))
    fields = {name: draw(st.sampled_from(_LITERALS)) if name in changed else usual[name] for name in usual}
    return ("{" + ",".join(f'"{name}":{literal}' for name, literal in fields.items()) + "}").encode()


@settings(max_examples=80, deadline=None)
@given(st.lists(compact_values(), min_size=1, max_size=30))
def test_the_one_pass_reading_of_compact_records_agrees_with_the_per_record_rules(values: list[bytes]) -> None:
    events, quarantine = validate(records(list(values)), FIELDS)
    expected_valid, expected_bad = [], []
    for offset, value in enumerate(values):
        parsed = parse_event(value, FIELDS)
        if isinstance(parsed, dict):
            numbers = tuple(repr(parsed[c]) for c in ("price", "volume"))  # repr tells -0.0 from 0.0
            expected_valid.append((offset, parsed["event_id"], parsed["key"], parsed["seq"], parsed["ts"], *numbers))
        else:
            expected_bad.append((offset, parsed))
    columns = ("offset", "event_id", "key", "seq", "ts", "price", "volume")
    got = [(*row[:5], repr(row[5]), repr(row[6])) for row in events.select(columns).rows()]
    assert got == expected_valid
    assert quarantine.select("offset", "reason").rows() == expected_bad


def test_compact_records_in_the_toolkit_order_are_read_in_one_pass() -> None:
    values = [json.dumps(json.loads(event(i)), separators=(",", ":")).encode() for i in range(3)]
    events, quarantine = validate(records([*values, b'{"event_id":"x","symbol":"S"}']), FIELDS)
    assert events.select("event_id", "seq", "ts", "price", "volume").rows() == [
        ("S-0", 0, 1_000, 100.5, 2.0),
        ("S-1", 1, 1_001, 100.5, 2.0),
        ("S-2", 2, 1_002, 100.5, 2.0),
    ]
    assert quarantine.get_column("reason").to_list() == ["missing field: seq, ts, price, volume"]


def test_validate_leaves_no_reference_cycles_that_hold_its_frames() -> None:
    """Regression: a recursive closure kept every decoded chunk alive until the cyclic collector ran, which
    grew a long replay's memory by hundreds of MB."""
    import gc

    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        validate(records([event(i) for i in range(50)] + [b"{", None]), FIELDS)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
