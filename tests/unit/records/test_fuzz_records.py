"""Property-based fuzz of raw records through validate, dedup and recompute (no broker).

Bad records (random bytes, empty and null values, huge values, deeply nested JSON, invalid UTF-8,
NaN/Infinity, wrong types, missing fields with extra ones, null and binary keys) are mixed at random
offsets among good ticks. Whatever they hold: nothing raises, every bad record is quarantined with its
partition, offset and a reason, and the results equal those of the good records alone.
"""

from __future__ import annotations

import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recovery.frames import RECORDS, RESULTS
from recovery.metrics.recompute import recompute
from recovery.pipeline.dedup import dedup
from recovery.records.validate import validate
from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec

BASE_MS = 1_767_225_600_000
SPEC = PipelineSpec(
    TopicsSpec(raw="raw", output="out", corrections="out.corr", audit="out.audit", partitions=2),
    FieldsSpec(),
    (
        MetricSpec("sma_5", "sma", n=5),
        MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=5_000),
        MetricSpec("vwap_2m", "vwap", field="price", window_ms=120_000, hop_ms=60_000, grace_ms=5_000),
    ),
)
GOOD_FIELDS = {"event_id": "A-1", "symbol": "A", "seq": 1, "ts": BASE_MS, "price": 1.0, "volume": 1.0}


def good_ticks(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        symbol = "AB"[i % 2]
        seq = i // 2 + 1
        value = {
            "event_id": f"{symbol}-{seq}",
            "symbol": symbol,
            "seq": seq,
            "ts": BASE_MS + i * 7_000,
            "price": 100 + (i * 37 % 11) / 3,
            "volume": float(i % 5 + 1),
        }
        out.append((symbol.encode(), json.dumps(value).encode()))
    return out


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode() if depth % 2 else ('{"a":' * depth + "1" + "}" * depth).encode()


def _broken_event(draw: st.DrawFn) -> bytes:
    """An event-like object that a rule must reject: a field missing, of a wrong type, or not finite."""
    event: dict[str, object] = dict(GOOD_FIELDS)
    event["event_id"] = f"bad-{draw(st.integers(0, 10**6))}"
    field = draw(st.sampled_from(sorted(GOOD_FIELDS)))
    how = draw(st.sampled_from(["missing", "null", "wrong-type", "non-finite", "negative"]))
    if how == "missing":
        del event[field]
        event[draw(st.text(min_size=1, max_size=8)) + "_extra"] = draw(st.integers())  # extra fields too
    elif how == "null":
        event[field] = None
    elif how == "wrong-type":
        event[field] = draw(st.sampled_from([[1], {"x": 1}, True])) if field != "price" else "1.0"
    elif how == "non-finite" or field not in ("seq", "ts", "price", "volume"):
        event["price"] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    else:
        event[field] = -1
    return json.dumps(event, allow_nan=True).encode()


@st.composite
def bad_value(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["bytes", "empty", "null", "big", "nested", "utf8", "scalar", "event", "nan-literal"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=200).filter(lambda b: not b.strip().startswith(b"{")))
    if kind == "empty":
        return b""
    if kind == "null":
        return None
    if kind == "big":
        return b'{"event_id": "' + b"x" * draw(st.integers(100_000, 1_100_000)) + b'"}'
    if kind == "nested":
        return _nested(draw(st.integers(50, 5_000)))
    if kind == "utf8":
        return b'{"event_id": "\xff\xfe", "symbol": "A"}'
    if kind == "scalar":
        return json.dumps(draw(st.one_of(st.integers(), st.text(), st.lists(st.integers(), max_size=3)))).encode()
    if kind == "nan-literal":
        return json.dumps({**GOOD_FIELDS, "event_id": "nan-1", "volume": "NaN"}).encode().replace(b'"NaN"', b"NaN")
    return _broken_event(draw)


bad_record = st.tuples(st.one_of(st.none(), st.binary(max_size=20), st.just(b"A")), bad_value())


def records(rows: list[tuple[int, int, bytes | None, bytes | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "partition": [r[0] for r in rows],
            "offset": [r[1] for r in rows],
            "timestamp_ms": [BASE_MS + r[1] for r in rows],
            "key": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        },
        schema=RECORDS,
    )
    return frame


def truth(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    events, quarantine = validate(frame, SPEC)
    quality = dedup(events, quarantine=quarantine, fields=SPEC.fields)
    return recompute(quality.events, SPEC), quarantine


def mix(
    good: list[tuple[bytes, bytes]], bad: list[tuple[bytes | None, bytes | None]], positions: list[int]
) -> tuple[pl.DataFrame, pl.DataFrame, set[tuple[int, int]]]:
    """(all records, good records only, (partition, offset) of the bad ones); bad ones inserted at positions."""
    slots: list[tuple[bool, bytes | None, bytes | None]] = [(True, k, v) for k, v in good]
    for at, (k, v) in zip(positions, bad, strict=True):
        slots.insert(at % (len(slots) + 1), (False, k, v))
    rows, bad_at = [], set()
    offsets = [0, 0]
    for i, (ok, k, v) in enumerate(slots):
        partition = (k or b"?")[0] % 2 if ok else i % 2
        rows.append((partition, offsets[partition], k, v, ok))
        if not ok:
            bad_at.add((partition, offsets[partition]))
        offsets[partition] += 1
    everything = records([r[:4] for r in rows])
    only_good = records([r[:4] for r in rows if r[4]])
    return everything, only_good, bad_at


GOOD = good_ticks(60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(bad_record, min_size=1, max_size=8), st.lists(st.integers(0, 200), min_size=8, max_size=8))
def test_bad_records_are_quarantined_and_good_results_unchanged(
    bad: list[tuple[bytes | None, bytes | None]], positions: list[int]
) -> None:
    everything, only_good, bad_at = mix(GOOD, bad, positions[: len(bad)])
    results, quarantine = truth(everything)
    expected, clean = truth(only_good)
    assert clean.height == 0
    found = {(int(p), int(o)) for p, o in quarantine.select("partition", "offset").iter_rows()}
    assert found == bad_at
    assert quarantine.get_column("reason").str.len_chars().min() > 0  # type: ignore[operator]
    assert_frame_equal(results, expected)
    assert results.schema == RESULTS


def test_only_bad_records_give_empty_results() -> None:
    everything, _, bad_at = mix([], [(None, b""), (b"A", b"\xff"), (None, None)], [0, 1, 2])
    results, quarantine = truth(everything)
    assert results.height == 0 and results.schema == RESULTS
    assert {(int(p), int(o)) for p, o in quarantine.select("partition", "offset").iter_rows()} == bad_at
