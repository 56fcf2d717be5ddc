from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import DataError
from recovery.frames import EVENTS, RESULTS
from recovery.metrics.recompute import order_by_event_time, recompute
from recovery.spec import PipelineSpec


def spec_of(*metrics: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.from_dict({"metrics": list(metrics)})


def events(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """EVENTS from (key, seq, ts, price, volume[, partition, offset]) tuples; offsets default to row order."""
    data: dict[str, list[Any]] = {name: [] for name in EVENTS}
    for i, row in enumerate(rows):
        key, seq, ts, price, volume, *where = row
        partition, offset = where if where else (0, i)
        for name, value in zip(
            EVENTS.names(),
            (partition, offset, ts, f"{key}-{seq}", key, seq, ts, price, volume),
            strict=True,
        ):
            data[name].append(value)
    return pl.DataFrame(data, schema=EVENTS)


def results(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RESULTS, orient="row")


SMA3 = {"name": "sma_3", "kind": "sma", "n": 3}
MEAN10 = {"name": "mean_10", "kind": "mean", "window_ms": 10}
VWAP10_5 = {"name": "vwap_10", "kind": "vwap", "window_ms": 10, "hop_ms": 5}


def test_empty_input_keeps_the_schema() -> None:
    out = recompute(pl.DataFrame(schema=EVENTS), spec_of(SMA3, MEAN10, VWAP10_5))
    assert_frame_equal(out, pl.DataFrame(schema=RESULTS))


def test_sma_first_events_get_the_mean_so_far_in_event_time_order() -> None:
    # rows arrive out of order; ties in ts are broken by seq
    ev = events([("A", 2, 20, 2.0, 1.0), ("A", 1, 10, 1.0, 1.0), ("A", 4, 30, 4.0, 1.0), ("A", 3, 20, 3.0, 1.0)])
    out = recompute(ev, spec_of(SMA3))
    expected = results(
        [("A", "sma_3", 1, 10, 1.0), ("A", "sma_3", 2, 20, 1.5), ("A", "sma_3", 3, 20, 2.0), ("A", "sma_3", 4, 30, 3.0)]
    )
    assert_frame_equal(out, expected)


def test_sma_keys_are_independent() -> None:
    ev = events([("B", 1, 1, 10.0, 1.0), ("A", 1, 2, 1.0, 1.0), ("B", 2, 3, 20.0, 1.0), ("A", 2, 4, 3.0, 1.0)])
    out = recompute(ev, spec_of({"name": "s2", "kind": "sma", "n": 2}))
    expected = results(
        [("A", "s2", 1, 2, 1.0), ("A", "s2", 2, 4, 2.0), ("B", "s2", 1, 1, 10.0), ("B", "s2", 2, 3, 15.0)]
    )
    assert_frame_equal(out, expected)


def test_sma_over_volume_field() -> None:
    ev = events([("A", 1, 1, 1.0, 4.0), ("A", 2, 2, 1.0, 8.0)])
    out = recompute(ev, spec_of({"name": "v", "kind": "sma", "n": 5, "field": "volume"}))
    assert out.get_column("value").to_list() == [4.0, 6.0]


def test_long_sma_uses_rolling_sum_and_matches_definition() -> None:
    n = 80
    ev = events([("A", i, i, float(i), 1.0) for i in range(1, 201)])
    out = recompute(ev, spec_of({"name": "long", "kind": "sma", "n": n}))
    expected = [sum(range(max(1, i - n + 1), i + 1)) / min(i, n) for i in range(1, 201)]
    assert out.get_column("value").to_list() == pytest.approx(expected, rel=1e-12)


def test_tumbling_mean_window_edges_are_start_inclusive_end_exclusive() -> None:
    ev = events([("A", 1, 0, 1.0, 1.0), ("A", 2, 9, 3.0, 1.0), ("A", 3, 10, 10.0, 1.0), ("A", 4, 19, 20.0, 1.0)])
    out = recompute(ev, spec_of(MEAN10))
    assert_frame_equal(out, results([("A", "mean_10", 0, 0, 2.0), ("A", "mean_10", 10, 10, 15.0)]))


def test_hopping_vwap_and_null_for_zero_volume() -> None:
    # window 10, hop 5: ts 7 is in [0,10) and [5,15); ts 12 in [5,15) and [10,20)
    ev = events([("A", 1, 3, 10.0, 1.0), ("A", 2, 7, 20.0, 3.0), ("A", 3, 12, 30.0, 0.0), ("B", 1, 1, 5.0, 0.0)])
    out = recompute(ev, spec_of(VWAP10_5))
    expected = results(
        [
            ("A", "vwap_10", -5, -5, 10.0),
            ("A", "vwap_10", 0, 0, (10.0 * 1 + 20.0 * 3) / 4),
            ("A", "vwap_10", 5, 5, 20.0),
            ("A", "vwap_10", 10, 10, None),
            ("B", "vwap_10", -5, -5, None),
            ("B", "vwap_10", 0, 0, None),
        ]
    )
    assert_frame_equal(out, expected)


def test_window_not_a_multiple_of_hop() -> None:
    # window 10, hop 4: starts are multiples of 4; ts 9 is in [0,10), [4,14), [8,18); ts 10 not in [0,10)
    ev = events([("A", 1, 9, 1.0, 1.0), ("A", 2, 10, 3.0, 1.0)])
    out = recompute(ev, spec_of({"name": "m", "kind": "mean", "window_ms": 10, "hop_ms": 4}))
    expected = results([("A", "m", 0, 0, 1.0), ("A", "m", 4, 4, 2.0), ("A", "m", 8, 8, 2.0)])
    assert_frame_equal(out, expected)


def test_metrics_come_in_spec_order() -> None:
    ev = events([("A", 1, 1, 2.0, 1.0)])
    out = recompute(ev, spec_of(MEAN10, SMA3))
    assert out.get_column("metric").to_list() == ["mean_10", "sma_3"]


def test_range_trims_sma_by_event_time_and_windows_when_fully_inside() -> None:
    ev = events([("A", i, ts, float(i), 1.0) for i, ts in enumerate([2, 8, 12, 18, 22, 28], start=1)])
    out = recompute(ev, spec_of(SMA3, MEAN10), from_ms=10, to_ms=25)
    expected = results(
        [
            ("A", "sma_3", 3, 12, 2.0),  # the lookback (seq 1, 2) still feeds the first sma in range
            ("A", "sma_3", 4, 18, 3.0),
            ("A", "sma_3", 5, 22, 4.0),
            ("A", "mean_10", 10, 10, 3.5),  # [20, 30) ends after to_ms: not fully inside
        ]
    )
    assert_frame_equal(out, expected)


def test_emulate_grace_drops_events_whose_windows_were_closed_on_arrival() -> None:
    # arrival order on partition 0: ts 5, 25, then ts 8 (late: watermark 25 - 2 closed [0,10)), then ts 21
    spec = spec_of({"name": "m", "kind": "mean", "window_ms": 10, "grace_ms": 2})
    ev = events([("A", 1, 5, 1.0, 1.0), ("A", 3, 25, 5.0, 1.0), ("A", 2, 8, 3.0, 1.0), ("A", 4, 21, 7.0, 1.0)])
    truth = recompute(ev, spec)
    assert_frame_equal(truth, results([("A", "m", 0, 0, 2.0), ("A", "m", 20, 20, 6.0)]))
    live = recompute(ev, spec, emulate_grace=True)
    assert_frame_equal(live, results([("A", "m", 0, 0, 1.0), ("A", "m", 20, 20, 6.0)]))


def test_emulate_grace_watermark_is_per_partition() -> None:
    spec = spec_of({"name": "m", "kind": "mean", "window_ms": 10, "grace_ms": 0})
    # partition 1 runs far ahead; partition 0's later event at ts 3 is not late
    ev = events([("B", 1, 500, 1.0, 1.0, 1, 0), ("A", 1, 5, 2.0, 1.0, 0, 0), ("A", 2, 3, 4.0, 1.0, 0, 1)])
    out = recompute(ev, spec, emulate_grace=True)
    assert_frame_equal(out, results([("A", "m", 0, 0, 3.0), ("B", "m", 500, 500, 1.0)]))


def test_emulate_grace_event_late_for_old_windows_still_feeds_open_ones() -> None:
    spec = spec_of({"name": "m", "kind": "mean", "window_ms": 10, "hop_ms": 5, "grace_ms": 0})
    # after ts 11 the watermark is 11: [0,10) is closed, [5,15) open; ts 7 only feeds [5,15)
    ev = events([("A", 1, 2, 1.0, 1.0), ("A", 3, 11, 3.0, 1.0), ("A", 2, 7, 5.0, 1.0)])
    out = recompute(ev, spec, emulate_grace=True)
    expected = results([("A", "m", -5, -5, 1.0), ("A", "m", 0, 0, 1.0), ("A", "m", 5, 5, 4.0), ("A", "m", 10, 10, 3.0)])
    assert_frame_equal(out, expected)


def test_ordering_breaks_time_ties_by_seq_and_is_skipped_when_sorted() -> None:
    ev = events([("B", 1, 5, 1.0, 1.0), ("A", 3, 5, 1.0, 1.0), ("A", 2, 5, 1.0, 1.0), ("A", 1, 4, 1.0, 1.0)])
    ordered = order_by_event_time(ev)
    assert ordered.select("key", "seq").rows() == [("A", 1), ("A", 2), ("A", 3), ("B", 1)]
    assert order_by_event_time(ordered) is ordered


@pytest.mark.parametrize(
    ("n", "n_keys", "ts_span", "seed"),
    [
        (200, 3, 10, 1),  # many (key, ts) ties
        (5_000, 40, 100_000, 2),
        (3_000, 16, 2**60, 3),  # (key rank, ts) does not fit one integer
        (2_000, 5, 2**50, 4),  # fits, but not with the row number beside it
        (1, 1, 1, 5),
    ],
)
def test_ordering_is_a_stable_sort_by_key_time_seq(n: int, n_keys: int, ts_span: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    rows = [(f"k{rng.randrange(n_keys)}", rng.randrange(3), rng.randrange(ts_span), float(i), 1.0) for i in range(n)]
    if seed % 2:  # mostly in order already, as a partition in arrival order is
        rows.sort(key=lambda r: (r[0], r[2]))
        for _ in range(n // 20):
            i, j = rng.randrange(n), rng.randrange(n)
            rows[i], rows[j] = rows[j], rows[i]
    ev = events(rows)
    # the reference: Python's stable sort of the rows (price numbers the rows in arrival order)
    expected = [r[3] for r in sorted(rows, key=lambda r: (r[0], r[2], r[1]))]
    assert order_by_event_time(ev).get_column("price").to_list() == expected


def test_bad_range_and_bad_frame_are_errors() -> None:
    with pytest.raises(DataError, match="empty range"):
        recompute(pl.DataFrame(schema=EVENTS), spec_of(SMA3), from_ms=10, to_ms=10)
    with pytest.raises(DataError, match="lacks column"):
        recompute(pl.DataFrame({"key": ["A"]}), spec_of(SMA3))
