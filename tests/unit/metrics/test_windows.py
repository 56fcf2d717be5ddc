from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.frames import EVENTS
from recovery.live.state import LiveState
from recovery.metrics.windows import (
    LIVE_RESULTS,
    NO_FLOOR,
    SHORT_WINDOW,
    common_pane_ms,
    grid_of,
    last_window_start,
    pane_ms,
)
from recovery.spec import MetricSpec, PipelineSpec

from ..reference import starts_of

HOP = MetricSpec(name="v", kind="vwap", window_ms=300, hop_ms=60, grace_ms=5)
ODD = MetricSpec(name="o", kind="mean", window_ms=10, hop_ms=4)


def spec_of(*metrics: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.from_dict({"metrics": list(metrics)})


def batch(rows: list[tuple[Any, ...]], offset0: int = 0) -> pl.DataFrame:
    """EVENTS in arrival order from (key, seq, ts, price[, volume[, partition]]) tuples."""
    data: dict[str, list[Any]] = {name: [] for name in EVENTS}
    for i, row in enumerate(rows):
        key, seq, ts, price, *rest = row
        volume = rest[0] if rest else 1.0
        partition = rest[1] if len(rest) > 1 else 0
        values = (partition, offset0 + i, ts, f"{key}-{seq}", key, seq, ts, price, volume)
        for name, value in zip(EVENTS.names(), values, strict=True):
            data[name].append(value)
    return pl.DataFrame(data, schema=EVENTS)


def live_rows(*row: tuple[Any, ...]) -> pl.DataFrame:
    return pl.DataFrame(list(row), schema=LIVE_RESULTS, orient="row")


@pytest.mark.parametrize("ts", [0, 1, 59, 60, 61, 299, 300, 301, 12_345, 1_767_603_600_000])
@pytest.mark.parametrize("metric", [HOP, ODD])
def test_window_assignment_matches_the_definition(ts: int, metric: MetricSpec) -> None:
    assert metric.hop_ms is not None and metric.window_ms is not None
    grid = grid_of(metric)
    latest = pl.select(last_window_start(pl.lit(ts), metric)).item()
    starts = starts_of(ts, metric)
    assert latest == starts[0]
    assert all(s % metric.hop_ms == 0 and s <= ts < s + metric.window_ms for s in starts)
    # a window is open while its end is after the watermark
    for watermark in (ts - 400, ts - 1, ts, ts + 7, ts + 300):
        floor_pane = pl.select(grid.first_open(pl.lit(watermark))).item()
        floor = floor_pane * grid.pane_ms
        assert floor % metric.hop_ms == 0
        assert floor + metric.window_ms > watermark >= floor - metric.hop_ms + metric.window_ms
        late = pl.select(grid.is_late(pl.lit(ts), pl.lit(floor_pane))).item()
        assert late == all(s + metric.window_ms <= watermark for s in starts)


def test_no_watermark_means_nothing_is_closed() -> None:
    assert pl.select(grid_of(HOP).first_open(pl.lit(None, dtype=pl.Int64))).item() == NO_FLOOR


def test_pane_widths() -> None:
    assert pane_ms(HOP) == 60 and pane_ms(ODD) == 2
    assert common_pane_ms([HOP, MetricSpec(name="m", kind="mean", window_ms=90)]) == 30


def test_live_empty_batch_keeps_the_schema() -> None:
    state = LiveState(spec_of({"name": "s", "kind": "sma", "n": 2}, {"name": "m", "kind": "mean", "window_ms": 10}))
    assert_frame_equal(state.process(pl.DataFrame(schema=EVENTS)), pl.DataFrame(schema=LIVE_RESULTS))


def test_live_sma_keeps_the_deque_across_batches_with_offsets() -> None:
    state = LiveState(spec_of({"name": "s", "kind": "sma", "n": 2}))
    first = state.process(batch([("A", 1, 10, 1.0), ("B", 1, 11, 5.0)]))
    second = state.process(batch([("A", 2, 12, 3.0), ("A", 3, 13, 7.0)], offset0=2))
    assert_frame_equal(
        first,
        live_rows(("A", "s", 1, 10, 1.0, 1, 0, 0, 0), ("B", "s", 1, 11, 5.0, 1, 0, 1, 1)),
    )
    assert_frame_equal(
        second,
        live_rows(("A", "s", 2, 12, 2.0, 2, 0, 0, 2), ("A", "s", 3, 13, 5.0, 2, 0, 2, 3)),
    )


def test_live_sma_takes_arrival_order() -> None:
    state = LiveState(spec_of({"name": "s", "kind": "sma", "n": 2}))
    out = state.process(batch([("A", 2, 20, 2.0), ("A", 1, 10, 4.0)]))
    assert out.select("window", "value").rows() == [(2, 2.0), (1, 3.0)]


def test_live_short_window_rows_use_one_event_less() -> None:
    state = LiveState(spec_of({"name": "s", "kind": "sma", "n": 3}))
    rows = batch([("A", i, i, float(i)) for i in range(1, 6)])
    out = state.process(rows.with_columns(pl.Series(SHORT_WINDOW, [False, False, False, True, False])))
    assert out.select("value", "count").rows() == [(1.0, 1), (1.5, 2), (2.0, 3), (3.5, 2), (4.0, 3)]


def test_live_window_closes_when_the_watermark_passes_its_end_and_late_events_are_dropped() -> None:
    state = LiveState(spec_of({"name": "m", "kind": "mean", "window_ms": 10, "grace_ms": 2}))
    assert state.process(batch([("A", 1, 5, 1.0), ("A", 2, 11, 2.0)])).height == 0  # watermark 9
    closed = state.process(batch([("A", 3, 12, 4.0)], offset0=2))  # watermark 10: [0, 10) closes
    assert_frame_equal(closed, live_rows(("A", "m", 0, 0, 1.0, 1, 0, 0, 0)))
    assert state.process(batch([("A", 4, 9, 100.0)], offset0=3)).height == 0  # late for [0, 10)
    assert state.late == {"m": 1} and state.late_events == 1
    assert state.open_windows == 1
    closed = state.process(batch([("A", 5, 40, 8.0)], offset0=4))
    assert_frame_equal(closed, live_rows(("A", "m", 10, 10, 3.0, 2, 0, 1, 2)))


def test_live_watermark_is_per_partition() -> None:
    state = LiveState(spec_of({"name": "m", "kind": "mean", "window_ms": 10}))
    state.process(batch([("A", 1, 5, 1.0, 1.0, 0)]))
    out = state.process(batch([("B", 1, 500, 1.0, 1.0, 1)]))
    assert out.height == 0, "partition 1 running ahead must not close partition 0's windows"
    out = state.process(batch([("A", 2, 3, 2.0, 1.0, 0), ("A", 3, 50, 2.0, 1.0, 0)], offset0=1))
    assert out.select("key", "window", "value").rows() == [("A", 0, 1.5)]
    assert state.late_events == 0


def test_forget_partitions_drops_their_state_only() -> None:
    spec = spec_of({"name": "s", "kind": "sma", "n": 3}, {"name": "m", "kind": "mean", "window_ms": 10})
    state = LiveState(spec)
    state.process(batch([("A", 1, 5, 1.0, 1.0, 0), ("B", 1, 5, 1.0, 1.0, 1)]))
    state.forget_partitions([1])
    assert state.tails.get_column("key").to_list() == ["A"]
    assert state.open["m"].get_column("key").to_list() == ["A"]
    assert set(state.max_ts) == {0}
    out = state.process(batch([("B", 2, 6, 3.0, 1.0, 1)], offset0=1))
    assert out.filter(pl.col("metric") == "s").select("value", "count").rows() == [(3.0, 1)]  # cold for B


def test_batch_boundaries_do_not_change_results() -> None:
    spec = spec_of(
        {"name": "s", "kind": "sma", "n": 4},
        {"name": "m", "kind": "mean", "window_ms": 20, "grace_ms": 3},
        {"name": "v", "kind": "vwap", "window_ms": 30, "hop_ms": 10, "grace_ms": 0},
    )
    rows = [("AB"[i % 2], i // 2 + 1, 3 * i - (4 if i % 7 == 0 else 0), float(i % 5), float(i % 3)) for i in range(60)]
    events = batch(rows)
    whole = LiveState(spec).process(events)
    state = LiveState(spec)
    pieces = pl.concat([state.process(events.slice(i, 7)) for i in range(0, events.height, 7)])
    key = ["metric", "key", "window"]
    assert_frame_equal(whole.sort(key), pieces.sort(key), check_exact=False, rel_tol=1e-12)
