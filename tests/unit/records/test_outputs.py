from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recovery.frames import OUTPUTS, QUARANTINE, RECORDS
from recovery.metrics.windows import LIVE_RESULTS
from recovery.records.outputs import CANONICAL_RE, _strict, decode_outputs, encode_result, encode_results


def result(**overrides: Any) -> dict[str, Any]:
    base = {
        "metric": "sma_5",
        "key": "AAPL",
        "window": 7,
        "time_ms": 1_767_603_600_123,
        "value": 101.25,
        "count": 5,
        "partition": 2,
        "first_offset": 10,
        "last_offset": 14,
        "worker": "w-1",
    }
    return base | overrides


def records(values: list[bytes | None], keys: list[bytes | None] | None = None) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "partition": [0] * n,
            "offset": list(range(n)),
            "timestamp_ms": [1000 + i for i in range(n)],
            "key": keys if keys is not None else [b"AAPL"] * n,
            "value": values,
        },
        schema=RECORDS,
    )


def test_encode_result_is_compact_json_in_contract_order() -> None:
    value = encode_result(**result())
    assert value.startswith(b'{"metric":"sma_5","key":"AAPL","window":7,')
    assert json.loads(value) == result()
    assert list(json.loads(value)) == list(result())


def test_encode_result_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        encode_result(**result(value=float("nan")))


def test_bulk_encoding_equals_single_encoding_after_decoding() -> None:
    rows = [result(), result(key='we"ird\\ké\n', value=None, window=-5), result(value=1e-7, metric="vwap_5m")]
    frame = pl.DataFrame([{k: v for k, v in r.items() if k != "worker"} for r in rows], schema=LIVE_RESULTS)
    bulk = encode_results(frame, "w-1")
    single = [encode_result(**r) for r in rows]
    assert [json.loads(b) for b in bulk] == [json.loads(s) for s in single]
    assert all(pl.Series([b.decode() for b in bulk + single]).str.contains(CANONICAL_RE))


def test_decode_round_trips_and_keeps_record_order() -> None:
    values = [encode_result(**result(window=w, value=v)) for w, v in [(3, 1.5), (1, None), (2, 2.0)]]
    outputs, quarantine = decode_outputs(records(values))
    expected = pl.DataFrame(
        {
            "key": ["AAPL"] * 3,
            "metric": ["sma_5"] * 3,
            "window": [3, 1, 2],
            "time_ms": [1_767_603_600_123] * 3,
            "value": [1.5, None, 2.0],
            "partition": [0, 0, 0],
            "offset": [0, 1, 2],
            "timestamp_ms": [1000, 1001, 1002],
        },
        schema=OUTPUTS,
    )
    assert_frame_equal(outputs, expected)
    assert_frame_equal(quarantine, pl.DataFrame(schema=QUARANTINE))


def test_decode_empty_input_keeps_the_schemas() -> None:
    outputs, quarantine = decode_outputs(pl.DataFrame(schema=RECORDS))
    assert_frame_equal(outputs, pl.DataFrame(schema=OUTPUTS))
    assert_frame_equal(quarantine, pl.DataFrame(schema=QUARANTINE))


def test_other_valid_layouts_are_decoded_record_by_record() -> None:
    relaxed = json.dumps({"value": 3, "window": 4, "key": "B", "time_ms": 5, "metric": "m", "extra": [1]}).encode()
    outputs, quarantine = decode_outputs(records([relaxed]))
    assert outputs.select("key", "metric", "window", "time_ms", "value").rows() == [("B", "m", 4, 5, 3.0)]
    assert quarantine.height == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value"),
        (b"", "empty value"),
        (b"\xff\xfe", "bad encoding"),
        (b'{"metric": "m", ', "bad JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"metric":"m","key":"A","window":1,"time_ms":2}', "missing field: value"),
        (b'{"metric":"m","key":"A","window":1.5,"time_ms":2,"value":1}', "wrong type: window"),
        (b'{"metric":"m","key":"A","window":true,"time_ms":2,"value":1}', "wrong type: window"),
        (b'{"metric":"m","key":"A","window":1,"time_ms":2,"value":"1.5"}', "wrong type: value"),
        (b'{"metric":"m","key":"A","window":1,"time_ms":2,"value":NaN}', "bad value: value is nan"),
        (b'{"metric":"","key":"A","window":1,"time_ms":2,"value":1}', "wrong type: metric"),
        (
            b'{"metric":"m\n","key":"A","window":1,"time_ms":2,"value":1.0,"count":1,"partition":0,'
            b'"first_offset":0,"last_offset":0,"worker":"w"}',
            "bad JSON",
        ),
    ],
)
def test_malformed_outputs_are_quarantined_not_raised(value: bytes | None, reason: str) -> None:
    good = encode_result(**result())
    outputs, quarantine = decode_outputs(records([good, value, good], keys=[b"AAPL", b"K\xff", b"AAPL"]))
    assert outputs.get_column("offset").to_list() == [0, 2]
    assert quarantine.height == 1
    row = quarantine.row(0, named=True)
    assert row["offset"] == 1 and row["key"] == "K\ufffd"
    assert row["reason"].startswith(reason)


def test_bulk_path_handles_many_records_and_escaped_strings() -> None:
    rows = [result(window=i, value=None if i % 5 == 0 else i / 3, key=f'K"{i % 3}\\') for i in range(1000)]
    outputs, quarantine = decode_outputs(records([encode_result(**r) for r in rows]))
    assert quarantine.height == 0
    assert outputs.select("key", "window", "value").rows() == [(r["key"], r["window"], r["value"]) for r in rows]


def test_a_value_out_of_float_range_falls_back_to_the_strict_path() -> None:
    canonical_but_huge = encode_result(**result()).replace(b"101.25", b"1e999")
    outputs, quarantine = decode_outputs(records([encode_result(**result()), canonical_but_huge]))
    assert outputs.height == 1
    assert quarantine.get_column("reason").to_list() == ["bad value: value is inf"]


# JSON literals at the edges of what the regex passes may read (see test_validate's list)
_LITERALS = [
    "0", "-0", "7", "007", "-3", "1.5", "-0.0", "1e5", "2.5e-3", "1e999", "-1e999", "1.",
    "99999999999999999999", "9223372036854775808", "true", "null", '"7"',
    '"A"', '""', '"a\\"b"', '"\\u00e9"', '"\u00e9"', '"tab\there"', '"\\q"',
]  # fmt: skip


@st.composite
def compact_outputs(draw: st.DrawFn) -> bytes:
    """Output records in the canonical compact layout, one or two fields replaced by an edge-case literal."""
    usual = json.loads(encode_result(**result()))
    changed = draw(st.sets(st.sampled_from(sorted(usual)), max_size=2))
    fields = {n: draw(st.sampled_from(_LITERALS)) if n in changed else json.dumps(v) for n, v in usual.items()}
    return ("{" + ",".join(f'"{name}":{literal}' for name, literal in fields.items()) + "}").encode()


@settings(max_examples=80, deadline=None)
@given(st.lists(compact_outputs(), min_size=1, max_size=30))
def test_the_regex_reading_of_canonical_outputs_agrees_with_the_strict_path(values: list[bytes]) -> None:
    outputs, quarantine = decode_outputs(records(list(values)))
    expected_good, expected_bad = [], []
    for offset, value in enumerate(values):
        parsed = _strict(value)
        if isinstance(parsed, str):
            expected_bad.append((offset, parsed))
        else:
            got = (parsed["key"], parsed["metric"], parsed["window"], parsed["time_ms"], repr(parsed["value"]))
            expected_good.append((offset, *got))
    columns = ("offset", "key", "metric", "window", "time_ms", "value")
    assert [(*row[:5], repr(row[5])) for row in outputs.select(columns).rows()] == expected_good
    assert quarantine.select("offset", "reason").rows() == expected_bad
