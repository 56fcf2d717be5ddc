"""Property: the live worker's incremental path, the vectorised recompute and a per-event reference agree."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.frames import EVENTS
from recovery.live.state import LiveState
from recovery.metrics.recompute import recompute
from recovery.spec import PipelineSpec

from .. import reference

KEYS = ("A", "B", "C", "D")

metric_specs = st.one_of(
    st.builds(lambda n: {"kind": "sma", "n": n}, st.integers(1, 6)),
    st.builds(
        lambda kind, field, window, hop_div, grace: {
            "kind": kind,
            "field": field,
            "window_ms": window,
            "hop_ms": max(1, window // hop_div),
            "grace_ms": grace,
        },
        st.sampled_from(["mean", "vwap"]),
        st.sampled_from(["price", "volume"]),
        st.integers(1, 40),
        st.integers(1, 4),
        st.integers(0, 15),
    ),
)
specs = st.lists(metric_specs, min_size=1, max_size=4).map(
    lambda ms: PipelineSpec.from_dict({"metrics": [{"name": f"m{i}"} | m for i, m in enumerate(ms)]})
)


@st.composite
def streams(draw: Any, disorder: bool) -> list[dict[str, Any]]:
    """Events in arrival order; keys live on fixed partitions; without disorder, time never goes back."""
    n = draw(st.integers(0, 60))
    partition_of = {k: draw(st.integers(0, 1)) for k in KEYS}
    seq = dict.fromkeys(KEYS, 0)
    t = draw(st.integers(0, 50))
    out = []
    for i in range(n):
        key = draw(st.sampled_from(KEYS))
        t += draw(st.integers(0, 6))
        ts = max(0, t - draw(st.integers(0, 30))) if disorder and draw(st.booleans()) else t
        seq[key] += 1
        price = draw(st.sampled_from([1.0, 2.5, 3.0, 10.0, 99.75]))
        volume = draw(st.sampled_from([0.0, 1.0, 2.0, 7.5]))
        out.append({"key": key, "seq": seq[key], "ts": ts, "price": price, "volume": volume, "i": i})
    offsets = {0: 0, 1: 0}
    for e in out:
        e["partition"] = partition_of[e["key"]]
        e["offset"] = offsets[e["partition"]]
        offsets[e["partition"]] += 1
    return out


def to_frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "partition": e["partition"],
                "offset": e["offset"],
                "timestamp_ms": e["ts"],
                "event_id": f"{e['key']}-{e['seq']}",
                "key": e["key"],
                "seq": e["seq"],
                "ts": e["ts"],
                "price": e["price"],
                "volume": e["volume"],
            }
            for e in events
        ],
        schema=EVENTS,
    )


def as_dict(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str, int], float | None]:
    out: dict[tuple[str, str, int], float | None] = {}
    for key, metric, window, _time, value in rows:
        assert (key, metric, window) not in out, f"published twice: {(key, metric, window)}"
        out[(key, metric, window)] = value
    return out


def assert_same(got: dict[tuple[str, str, int], float | None], want: dict[tuple[str, str, int], float | None]) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        if v is None:
            assert got[k] is None, k
        else:
            assert got[k] is not None and abs(got[k] - v) <= 1e-9 * max(1.0, abs(v)), (k, got[k], v)


def run_live(events: list[dict[str, Any]], spec: PipelineSpec, cuts: list[int]) -> tuple[LiveState, list[Any]]:
    state = LiveState(spec)
    frame = to_frame(events)
    bounds = sorted({0, frame.height, *(c % (frame.height + 1) for c in cuts)})
    outs = [state.process(frame.slice(a, b - a)) for a, b in zip(bounds, bounds[1:], strict=False)]
    rows = pl.concat(outs).select("key", "metric", "window", "time_ms", "value").rows() if outs else []
    return state, rows


@settings(max_examples=100, deadline=None)
@given(specs, streams(disorder=False), st.lists(st.integers(0, 60), max_size=5))
def test_fault_free_stream_live_equals_recompute_and_reference(
    spec: PipelineSpec, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    truth_ref = as_dict(reference.truth(events, spec))
    truth = as_dict(recompute(to_frame(events), spec).rows())
    assert_same(truth, truth_ref)
    state, published = run_live(events, spec, cuts)
    live = as_dict(published)
    # the live worker publishes every truth result except windows still open at the end of the stream
    ref_published, ref_open = reference.live(events, spec)
    assert_same(live, as_dict(ref_published))
    assert_same(live, {k: v for k, v in truth.items() if k in live})
    assert live.keys() | as_dict(ref_open).keys() == truth.keys()
    assert state.late_events == 0


@settings(max_examples=100, deadline=None)
@given(specs, streams(disorder=True), st.lists(st.integers(0, 60), max_size=5))
def test_disordered_stream_grace_policy_matches_reference_and_emulation(
    spec: PipelineSpec, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    state, published = run_live(events, spec, cuts)
    ref_published, ref_open = reference.live(events, spec)
    assert_same(as_dict(published), as_dict(ref_published))
    windowed = {m.name for m in spec.metrics if m.is_windowed}
    emulated = as_dict([r for r in recompute(to_frame(events), spec, emulate_grace=True).rows() if r[1] in windowed])
    assert_same(emulated, {k: v for k, v in as_dict(ref_published + ref_open).items() if k[1] in windowed})
