"""Per-partition recovery: when partition results add up to the whole range's, and merged summaries."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import ConfigError
from recovery.frames import COMPARISON
from recovery.pipeline.compare import summarize, summarize_counts, summary_counts
from recovery.pipeline.partitioned import misalignment


def ids(*values: str) -> pl.Series:
    return pl.Series(values, dtype=pl.String).hash()


def test_keys_partitioned_alike_are_aligned() -> None:
    raw = {0: ["A", "B"], 1: ["C"]}
    outputs = {0: ["A", "B", "Z"], 1: ["C"]}  # Z: only published (extra), in one partition
    assert misalignment(raw, outputs, [ids("e1", "e2"), ids("e3")]) is None


def test_a_key_with_raw_events_in_two_partitions_is_misaligned() -> None:
    why = misalignment({0: ["A"], 1: ["A"]}, {0: ["A"], 1: []}, [ids("e1"), ids("e2")])
    assert why is not None and "'A'" in why and "raw events in partitions 0 and 1" in why


def test_outputs_in_another_partition_than_their_raw_events_are_misaligned() -> None:
    why = misalignment({0: ["A"], 1: ["B"]}, {0: ["B"], 1: ["A"]}, [ids("e1"), ids("e2")])
    assert why is not None and "outputs in partition 0" in why


def test_an_extra_key_published_to_two_partitions_is_misaligned() -> None:
    why = misalignment({0: ["A"], 1: []}, {0: ["A", "Z"], 1: ["Z"]}, [ids("e1"), ids()])
    assert why is not None and "'Z'" in why


def test_an_event_id_in_two_partitions_is_misaligned() -> None:
    why = misalignment({0: ["A"], 1: ["B"]}, {0: ["A"], 1: ["B"]}, [ids("e1", "e2"), ids("e2")])
    assert why == "an event id appears in more than one partition"


def test_no_partitions_are_aligned() -> None:
    assert misalignment({}, {}, []) is None


def comparison(n: int, seed: int) -> pl.DataFrame:
    import random

    rnd = random.Random(seed)
    statuses = ["ok", "missing", "wrong", "duplicate", "extra"]
    rows = []
    for i in range(n):
        status = rnd.choice(statuses)
        rows.append(
            {
                "key": f"K{rnd.randrange(7)}",
                "metric": rnd.choice(["sma_5", "mean_1m"]),
                "window": i,
                "time_ms": 1_767_225_600_000 + rnd.randrange(3 * 3_600_000),
                "original": 1.0,
                "corrected": 1.0,
                "copies": 2 if status == "duplicate" else 1,
                "conflicting": status == "duplicate" and rnd.random() < 0.5,
                "status": status,
            }
        )
    return pl.DataFrame(rows, schema=COMPARISON)


@pytest.mark.parametrize("bucket_ms", [None, 60_000, 900_000])
def test_summary_of_partition_counts_equals_the_summary_of_the_whole(bucket_ms: int | None) -> None:
    whole = comparison(3_000, seed=5)
    parts = [whole.filter(pl.col("key").is_in(group)) for group in (["K0", "K1"], ["K2", "K3", "K4"], ["K5", "K6"])]
    merged = summarize_counts(pl.concat([summary_counts(p) for p in parts]), bucket_ms=bucket_ms)
    expected = summarize(whole, bucket_ms=bucket_ms)
    assert merged.counts == expected.counts and merged.counts["conflicting"] > 0
    assert merged.bucket_ms == expected.bucket_ms
    for name in ("by_key", "by_metric", "by_bucket"):
        assert_frame_equal(getattr(merged, name), getattr(expected, name))


def test_summary_counts_refuse_a_bucket_that_is_not_a_whole_number_of_grains() -> None:
    counts = summary_counts(comparison(10, seed=1))
    with pytest.raises(ConfigError, match="multiple of the counts' grain"):
        summarize_counts(counts, bucket_ms=90_000)
