"""Every aggregation over every window kind against a plain per-event reference written here."""

from __future__ import annotations

import math
import statistics
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.frames import EVENTS, RESULTS
from recovery.metrics.recompute import recompute
from recovery.spec import AGGREGATIONS, MetricSpec, PipelineSpec

Event = dict[str, Any]


def frame(events: list[Event]) -> pl.DataFrame:
    rows = [
        (
            e.get("partition", 0),
            i,
            e["ts"],
            f"{e['key']}-{e['seq']}",
            e["key"],
            e["seq"],
            e["ts"],
            e["price"],
            e["volume"],
        )
        for i, e in enumerate(events)
    ]
    return pl.DataFrame(rows, schema=EVENTS, orient="row")


def aggregate(agg: str, window: list[Event]) -> float | None:
    xs = [e["price"] for e in window]
    if agg == "count":
        return float(len(xs))
    if agg == "sum":
        return sum(xs)
    if agg == "mean":
        return sum(xs) / len(xs)
    if agg == "min":
        return min(xs)
    if agg == "max":
        return max(xs)
    if agg == "first":
        return xs[0]
    if agg == "last":
        return xs[-1]
    if agg == "stddev":
        return statistics.stdev(xs) if len(xs) > 1 else None
    weights = sum(e["volume"] for e in window)
    return None if weights == 0 else sum(e["price"] * e["volume"] for e in window) / weights


def reference(events: list[Event], m: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(key, window, time_ms, value) of every result, from each key's events in (ts, seq) order."""
    out: list[tuple[Any, ...]] = []
    for key in sorted({e["key"] for e in events}):
        mine = sorted((e for e in events if e["key"] == key), key=lambda e: (e["ts"], e["seq"]))
        if m["window"] == "count":
            for i, e in enumerate(mine):
                out.append((key, e["seq"], e["ts"], aggregate(m["aggregation"], mine[max(0, i - m["n"] + 1) : i + 1])))
        elif m["window"] == "session":
            sessions: list[list[Event]] = []
            for e in mine:
                if sessions and e["ts"] - sessions[-1][-1]["ts"] <= m["gap_ms"]:
                    sessions[-1].append(e)
                else:
                    sessions.append([e])
            out += [(key, s[0]["ts"], s[-1]["ts"], aggregate(m["aggregation"], s)) for s in sessions]
        else:
            size, hop, offset = m["size_ms"], m.get("hop_ms", m["size_ms"]), m.get("offset_ms", 0)
            windows: dict[int, list[Event]] = {}
            for e in mine:
                start = offset + (e["ts"] - offset) // hop * hop
                while start > e["ts"] - size:
                    windows.setdefault(start, []).append(e)
                    start -= hop
            out += [(key, s, s, aggregate(m["aggregation"], w)) for s, w in sorted(windows.items())]
    return out


def computed(events: list[Event], m: dict[str, Any]) -> list[tuple[Any, ...]]:
    spec = PipelineSpec.from_dict({"metrics": [{"name": "x", **m}]})
    results = recompute(frame(events), spec)
    return sorted(results.select("key", "window", "time_ms", "value").rows(), key=lambda r: (r[0], r[1], r[2]))


def same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    if [r[:3] for r in a] != [r[:3] for r in b]:
        return False
    for (*_, x), (*_, y) in zip(a, b, strict=True):
        if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)):
            return False
    return True


events_st = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from("AB"),
            "ts": st.integers(0, 400),
            "price": st.integers(-50, 200).map(float),
            "volume": st.integers(0, 5).map(float),
        }
    ),
    max_size=40,
).map(lambda es: [e | {"seq": i + 1} for i, e in enumerate(es)])


@st.composite
def metric_st(draw: Any) -> dict[str, Any]:
    agg = draw(st.sampled_from(AGGREGATIONS))
    m: dict[str, Any] = {"aggregation": agg}
    if agg != "count":
        m["field"] = "price"
    if agg == "weighted_mean":
        m["weight"] = "volume"
    window = draw(st.sampled_from(["count", "tumbling", "hopping", "session"]))
    m["window"] = window
    if window == "count":
        m["n"] = draw(st.integers(1, 6))
    elif window == "session":
        m["gap_ms"] = draw(st.integers(1, 40))
    else:
        m["size_ms"] = draw(st.integers(1, 120))
        if window == "hopping":
            m["hop_ms"] = draw(st.integers(1, m["size_ms"]))
        hop = m.get("hop_ms", m["size_ms"])
        m["offset_ms"] = draw(st.integers(0, hop - 1))
        m["grace_ms"] = draw(st.integers(0, 10))
    return m


@settings(max_examples=300, deadline=None)
@given(events=events_st, m=metric_st())
def test_every_aggregation_and_window_matches_the_reference(events: list[Event], m: dict[str, Any]) -> None:
    assert same(computed(events, m), sorted(reference(events, m), key=lambda r: (r[0], r[1], r[2])))


@pytest.mark.parametrize(
    "window",
    [
        {"window": "count", "n": 3},
        {"window": "session", "gap_ms": 5},
        {"window": "tumbling", "size_ms": 10},
        {"window": "hopping", "size_ms": 10, "hop_ms": 5},
    ],
)
@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_empty_input_keeps_the_schema(agg: str, window: dict[str, Any]) -> None:
    m = {"name": "x", "aggregation": agg, **window} | ({} if agg == "count" else {"field": "price"})
    m |= {"weight": "volume"} if agg == "weighted_mean" else {}
    out = recompute(pl.DataFrame(schema=EVENTS), PipelineSpec.from_dict({"metrics": [m]}))
    assert out.schema == RESULTS and out.height == 0


def test_window_edges_start_inclusive_end_exclusive_and_session_gap_inclusive() -> None:
    events = [
        {"key": "A", "seq": i + 1, "ts": ts, "price": float(i + 1), "volume": 1.0}
        for i, ts in enumerate([0, 9, 10, 20, 30])
    ]
    tumbling = computed(events, {"aggregation": "sum", "field": "price", "window": "tumbling", "size_ms": 10})
    assert [(w, v) for _, w, _, v in tumbling] == [(0, 3.0), (10, 3.0), (20, 4.0), (30, 5.0)]
    session = computed(events, {"aggregation": "count", "window": "session", "gap_ms": 10})
    assert [(w, t, v) for _, w, t, v in session] == [(0, 30, 5.0)]  # exactly gap_ms apart still joins
    split = computed(events, {"aggregation": "count", "window": "session", "gap_ms": 9})
    assert [(w, t, v) for _, w, t, v in split] == [(0, 10, 3.0), (20, 20, 1.0), (30, 30, 1.0)]


def test_count_window_without_seq_uses_the_event_time_as_window() -> None:
    events = frame(
        [
            {"key": "A", "seq": 1, "ts": 5, "price": 1.0, "volume": 1.0},
            {"key": "A", "seq": 2, "ts": 7, "price": 3.0, "volume": 1.0},
        ]
    )
    spec = PipelineSpec.from_dict(
        {"metrics": [{"name": "x", "aggregation": "max", "field": "price", "window": "count", "n": 2}]}
    )
    out = recompute(events.with_columns(pl.lit(None, dtype=pl.Int64).alias("seq")), spec)
    assert out.select("window", "value").rows() == [(5, 1.0), (7, 3.0)]


def test_stddev_stays_accurate_on_large_values() -> None:
    prices = [1e9 + d for d in (0.1, 0.2, 0.3, 0.4)]
    events = [{"key": "A", "seq": i + 1, "ts": i * 30, "price": p, "volume": 1.0} for i, p in enumerate(prices)]
    m = {"aggregation": "stddev", "field": "price", "window": "tumbling", "size_ms": 1000}
    [(_, _, _, value)] = computed(events, m)  # four panes of 30 ms merged into one window
    assert math.isclose(value, statistics.stdev(prices), rel_tol=1e-6)


def test_weighted_mean_is_the_legacy_vwap() -> None:
    events = [
        {"key": k, "seq": i + 1, "ts": i * 7, "price": float(i % 5), "volume": float(i % 3)}
        for i, k in enumerate("ABAB" * 10)
    ]
    new = PipelineSpec.from_dict(
        {
            "metrics": [
                {
                    "name": "v",
                    "aggregation": "weighted_mean",
                    "field": "price",
                    "weight": "volume",
                    "window": "hopping",
                    "size_ms": 30,
                    "hop_ms": 10,
                }
            ]
        }
    )
    old = PipelineSpec.from_dict({"metrics": [{"name": "v", "kind": "vwap", "window_ms": 30, "hop_ms": 10}]})
    assert recompute(frame(events), new).equals(recompute(frame(events), old))


def test_metric_spec_round_trips() -> None:
    m = MetricSpec(
        "w",
        aggregation="mean",
        field="price",
        window="tumbling",
        size_ms=7 * 86_400_000,
        offset_ms=4 * 86_400_000,
        time_zone="Europe/Paris",
        grace_ms=1,
    )
    spec = PipelineSpec(metrics=(m,))
    assert PipelineSpec.from_dict(spec.to_dict()).metrics == (m,)
    assert spec.to_dict()["metrics"] == [
        {
            "name": "w",
            "aggregation": "mean",
            "field": "price",
            "window": "tumbling",
            "size_ms": 604_800_000,
            "offset_ms": 345_600_000,
            "time_zone": "Europe/Paris",
            "grace_ms": 1,
        }
    ]
