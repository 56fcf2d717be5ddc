"""The simulator's reference (recovery.sim.oracle) on tiny cases whose answers are worked out by hand."""

from __future__ import annotations

import polars as pl
import pytest

from recovery.sim.oracle import (
    Event,
    Published,
    Verdict,
    classify,
    differ,
    first_copies,
    predict_discrepancies,
    summarize,
    truth,
    window_starts,
)
from recovery.spec import MetricSpec, PipelineSpec

SMA3 = MetricSpec("sma_3", "sma", n=3)
MEAN_1M = MetricSpec("mean_1m", "mean", window_ms=60_000)
VWAP_2M = MetricSpec("vwap_2m", "vwap", window_ms=120_000, hop_ms=60_000)
MEAN_2M = MetricSpec("mean_2m", "mean", window_ms=120_000, hop_ms=60_000)


def spec(*metrics: MetricSpec) -> PipelineSpec:
    return PipelineSpec(metrics=metrics)


def ev(partition: int, offset: int, seq: int, ts: int, price: float, volume: float = 1.0, **kw: object) -> Event:
    key = str(kw.get("key", "A"))
    return Event(partition, offset, str(kw.get("event_id", f"{key}-{seq}")), key, seq, ts, price, volume)


# ------------------------------------------------------------------------------------------------- truth


def test_first_copy_by_partition_then_offset_is_the_event() -> None:
    late_copy = ev(0, 7, 2, 2_000, 100.0)
    first = ev(0, 3, 2, 2_000, 2.0)
    other_partition = ev(1, 0, 2, 2_000, 50.0)  # lower offset, but a later partition
    assert first_copies([late_copy, other_partition, first]) == [first]


def test_sma_over_the_last_n_in_event_time_order_with_seq_breaking_ties() -> None:
    # prices 1, 2, 4, 8 for seqs 1..4; seq 3 arrives before seq 2, seq 4 (same ts as seq 3) before seq 3
    events = [
        ev(0, 0, 1, 1_000, 1.0),
        ev(0, 1, 4, 3_000, 8.0),
        ev(0, 2, 3, 3_000, 4.0),
        ev(0, 3, 2, 2_000, 2.0),
        ev(0, 4, 2, 2_000, 100.0),  # a later, conflicting copy of seq 2: ignored
    ]
    assert truth(events, spec(SMA3)) == {
        ("A", "sma_3", 1): 1.0,  # 1 / 1
        ("A", "sma_3", 2): 1.5,  # (1 + 2) / 2
        ("A", "sma_3", 3): pytest.approx(7 / 3),  # (1 + 2 + 4) / 3
        ("A", "sma_3", 4): pytest.approx(14 / 3),  # (2 + 4 + 8) / 3
    }


def test_keys_are_independent() -> None:
    events = [ev(0, 0, 1, 1_000, 1.0), ev(0, 1, 1, 1_500, 10.0, key="B"), ev(0, 2, 2, 2_000, 3.0)]
    assert truth(events, spec(SMA3)) == {("A", "sma_3", 1): 1.0, ("A", "sma_3", 2): 2.0, ("B", "sma_3", 1): 10.0}


def test_sma_results_are_trimmed_by_event_time() -> None:
    events = [ev(0, i, i + 1, 1_000 * (i + 1), float(i + 1)) for i in range(4)]  # ts 1000..4000, prices 1..4
    # in [2000, 4000): seqs 2 and 3, whose means still use the earlier events
    assert truth(events, spec(SMA3), 2_000, 4_000) == {("A", "sma_3", 2): 1.5, ("A", "sma_3", 3): 2.0}


def test_window_starts_are_multiples_of_the_hop_covering_the_event() -> None:
    assert window_starts(61_000, 60_000, 60_000) == [60_000]
    assert window_starts(60_000, 60_000, 60_000) == [60_000]  # the start is inside, the end is not
    assert window_starts(59_999, 60_000, 60_000) == [0]
    assert window_starts(90_000, 120_000, 60_000) == [60_000, 0]
    assert window_starts(30_000, 120_000, 60_000) == [0, -60_000]


def test_tumbling_mean_epoch_aligned() -> None:
    events = [ev(0, 0, 1, 0, 1.0), ev(0, 1, 2, 59_999, 3.0), ev(0, 2, 3, 60_000, 10.0), ev(0, 3, 4, 61_000, 20.0)]
    assert truth(events, spec(MEAN_1M)) == {("A", "mean_1m", 0): 2.0, ("A", "mean_1m", 60_000): 15.0}


def test_hopping_vwap_and_mean_with_zero_volume_and_trimming() -> None:
    events = [
        ev(0, 0, 1, 30_000, 10.0, 1.0),  # windows -60000, 0
        ev(0, 1, 2, 90_000, 20.0, 3.0),  # windows 0, 60000
        ev(0, 2, 3, 150_000, 5.0, 0.0),  # windows 60000, 120000
        ev(0, 3, 4, 200_000, 7.0, 0.0),  # windows 120000, 180000
    ]
    assert truth(events, spec(VWAP_2M)) == {
        ("A", "vwap_2m", -60_000): 10.0,  # 10*1 / 1
        ("A", "vwap_2m", 0): 17.5,  # (10*1 + 20*3) / (1 + 3)
        ("A", "vwap_2m", 60_000): 20.0,  # (20*3 + 5*0) / (3 + 0)
        ("A", "vwap_2m", 120_000): None,  # zero volume
        ("A", "vwap_2m", 180_000): None,
    }
    # [0, 240000): only windows wholly inside (-60000 starts before, 180000 ends at 300000)
    assert truth(events, spec(VWAP_2M, MEAN_2M), 0, 240_000) == {
        ("A", "vwap_2m", 0): 17.5,
        ("A", "vwap_2m", 60_000): 20.0,
        ("A", "vwap_2m", 120_000): None,
        ("A", "mean_2m", 0): 15.0,  # (10 + 20) / 2
        ("A", "mean_2m", 60_000): 12.5,  # (20 + 5) / 2
        ("A", "mean_2m", 120_000): 6.0,  # (5 + 7) / 2
    }


def test_windows_use_the_first_copy_only() -> None:
    events = [ev(0, 0, 1, 1_000, 2.0), ev(0, 1, 2, 2_000, 4.0), ev(0, 2, 2, 2_000, 40.0)]  # offset 2: a copy
    assert truth(events, spec(MEAN_1M)) == {("A", "mean_1m", 0): 3.0}


# ------------------------------------------------------------------------------------------------ classes


def test_differ_nulls_and_tolerances() -> None:
    assert not differ(None, None)
    assert differ(None, 0.0) and differ(0.0, None)
    assert not differ(0.0, 5e-10)  # within the absolute tolerance
    assert differ(0.0, 2e-9)
    assert not differ(1e12, 1e12 + 100)  # 1e-10 relative
    assert differ(1e12, 1e12 + 10_000)  # 1e-8 relative


def test_every_class() -> None:
    expected = {
        ("A", "sma_3", 1): 1.0,
        ("A", "sma_3", 2): 2.0,
        ("A", "sma_3", 3): 3.0,
        ("A", "sma_3", 4): 4.0,
        ("A", "sma_3", 5): 5.0,
        ("A", "sma_3", 6): 6.0,
        ("A", "sma_3", 8): None,
        ("A", "sma_3", 9): None,
        ("A", "sma_3", 10): 1.0,
    }
    published = [
        Published("A", "sma_3", 1, 1_000, 1.0),
        Published("A", "sma_3", 3, 3_000, 3.5),
        Published("A", "sma_3", 4, 4_000, 4.0),
        Published("A", "sma_3", 5, 5_000, 9.0),
        Published("A", "sma_3", 6, 6_000, 6.0),
        Published("A", "sma_3", 4, 4_000, 4.0),
        Published("A", "sma_3", 5, 5_000, 5.0),
        Published("A", "sma_3", 6, 6_000, 7.0),
        Published("A", "sma_3", 7, 7_000, 1.0),
        Published("A", "sma_3", 8, 8_000, None),
        Published("A", "sma_3", 9, 9_000, 0.0),
        Published("A", "sma_3", 10, 10_000, None),
        Published("A", "other", 1, 1_000, 1.0),  # a metric the spec does not define: ignored
    ]
    verdicts = classify(published, expected, spec(SMA3))
    assert verdicts == {
        ("A", "sma_3", 1): Verdict("ok", 1, False),
        ("A", "sma_3", 2): Verdict("missing", 0, False),
        ("A", "sma_3", 3): Verdict("wrong", 1, False),
        ("A", "sma_3", 4): Verdict("duplicate", 2, False),
        ("A", "sma_3", 5): Verdict("duplicate", 2, True),  # last copy right, an earlier one not
        ("A", "sma_3", 6): Verdict("wrong", 2, True),  # the last copy is what downstream holds
        ("A", "sma_3", 7): Verdict("extra", 1, False),
        ("A", "sma_3", 8): Verdict("ok", 1, False),  # both null
        ("A", "sma_3", 9): Verdict("wrong", 1, False),  # truth null, a number published
        ("A", "sma_3", 10): Verdict("wrong", 1, False),  # a number in truth, null published
    }
    prediction = summarize(verdicts)
    assert prediction.counts == {"ok": 2, "missing": 1, "wrong": 4, "duplicate": 2, "extra": 1}
    assert [r[2] for r in prediction.results] == [2, 3, 4, 5, 6, 7, 9, 10]
    assert prediction.results[3] == ["A", "sma_3", 5, "duplicate", 2, True]


def test_published_results_are_trimmed_like_truth() -> None:
    published = [
        Published("A", "sma_3", 1, 999, 1.0),  # event time before the range
        Published("A", "sma_3", 2, 1_000, 2.0),
        Published("A", "sma_3", 3, 120_000, 3.0),  # at the end: outside
        Published("A", "mean_1m", 0, 0, 1.0),  # window [0, 60000) but the range starts at 1000
        Published("A", "mean_1m", 60_000, 60_000, 1.0),  # wholly inside [1000, 120000)
        Published("A", "mean_1m", 120_000, 120_000, 1.0),  # starts at the end
    ]
    verdicts = classify(published, {}, spec(SMA3, MEAN_1M), 1_000, 120_000)
    assert verdicts == {
        ("A", "sma_3", 2): Verdict("extra", 1, False),
        ("A", "mean_1m", 60_000): Verdict("extra", 1, False),
    }


def test_results_sorted_by_metric_key_window() -> None:
    verdicts = {
        ("B", "sma_3", 1): Verdict("missing", 0, False),
        ("A", "sma_3", 2): Verdict("missing", 0, False),
        ("A", "sma_3", 1): Verdict("extra", 1, False),
        ("Z", "mean_1m", 0): Verdict("wrong", 1, False),
        ("A", "mean_1m", 0): Verdict("ok", 1, False),
    }
    rows = summarize(verdicts).results
    assert [tuple(r[:3]) for r in rows] == [
        ("Z", "mean_1m", 0),
        ("A", "sma_3", 1),
        ("A", "sma_3", 2),
        ("B", "sma_3", 1),
    ]


# ------------------------------------------------------------------------------------------- from frames


def test_prediction_from_frames() -> None:
    # seq 2 arrives after seq 3 on the live side, which therefore published a wrong sma for seq 3 and 2
    events = pl.DataFrame(
        [
            (0, 0, "e1", "A", 1, 1_000, 1.0, 1.0),
            (0, 1, "e3", "A", 3, 3_000, 4.0, 1.0),
            (0, 2, "e2", "A", 2, 2_000, 2.0, 1.0),
        ],
        schema=["partition", "offset", "event_id", "key", "seq", "ts", "price", "volume"],
        orient="row",
    )
    published = pl.DataFrame(
        [("A", "sma_3", 1, 1_000, 1.0), ("A", "sma_3", 3, 3_000, 2.5), ("A", "sma_3", 2, 2_000, 7 / 3)],
        schema=["key", "metric", "window", "time_ms", "value"],
        orient="row",
    )
    # truth: seq 1 -> 1, seq 2 -> (1 + 2) / 2 = 1.5, seq 3 -> (1 + 2 + 4) / 3
    prediction = predict_discrepancies(events, published, spec(SMA3), 0, 10_000)
    assert prediction.counts == {"ok": 1, "missing": 0, "wrong": 2, "duplicate": 0, "extra": 0}
    assert prediction.results == [["A", "sma_3", 2, "wrong", 1, False], ["A", "sma_3", 3, "wrong", 1, False]]
