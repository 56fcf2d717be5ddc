"""Classification of original outputs against truth, and the summaries."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import ConfigError, DataError
from recovery.fixes.fixset import status_counts
from recovery.frames import COMPARISON, OUTPUTS, RESULTS
from recovery.pipeline.compare import compare, summarize
from recovery.spec import MetricSpec, PipelineSpec

SPEC = PipelineSpec(
    metrics=(
        MetricSpec("sma_3", "sma", n=3),
        MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=1_000),
    )
)
T0 = 1_767_225_600_000


def truth(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RESULTS, orient="row")


def outputs(rows: list[tuple]) -> pl.DataFrame:
    """rows of (key, metric, window, time_ms, value); offsets in list order."""
    full = [(*r, 0, i, r[3]) for i, r in enumerate(rows)]
    return pl.DataFrame(full, schema=OUTPUTS, orient="row")


TRUTH = truth(
    [
        ("A", "sma_3", 1, T0 + 1_000, 10.0),  # ok
        ("A", "sma_3", 2, T0 + 2_000, 11.0),  # missing
        ("A", "sma_3", 3, T0 + 3_000, 12.0),  # wrong
        ("A", "sma_3", 4, T0 + 4_000, 13.0),  # consistent duplicate
        ("A", "sma_3", 5, T0 + 5_000, 14.0),  # conflicting duplicate, last copy right
        ("A", "sma_3", 6, T0 + 6_000, 15.0),  # duplicate whose last copy is wrong: wrong
        ("B", "mean_1m", T0, T0, None),  # null truth published as null: ok
        ("B", "mean_1m", T0 + 60_000, T0 + 60_000, 5.0),  # within tolerance: ok
    ]
)
ORIGINALS = outputs(
    [
        ("A", "sma_3", 1, T0 + 1_000, 10.0),
        ("A", "sma_3", 3, T0 + 3_000, 99.0),
        ("A", "sma_3", 4, T0 + 4_000, 13.0),
        ("A", "sma_3", 4, T0 + 4_000, 13.0),
        ("A", "sma_3", 5, T0 + 5_000, 1.0),
        ("A", "sma_3", 5, T0 + 5_000, 14.0),
        ("A", "sma_3", 6, T0 + 6_000, 15.0),
        ("A", "sma_3", 6, T0 + 6_000, 16.0),
        ("B", "mean_1m", T0, T0, None),
        ("B", "mean_1m", T0 + 60_000, T0 + 60_000, 5.0 + 1e-12),
        ("C", "sma_3", 1, T0 + 7_000, 3.0),  # extra
        ("A", "sma_3", 9, T0 + 600_000, 3.0),  # outside the range: ignored
        ("A", "other", 1, T0 + 1_000, 3.0),  # metric not in the spec: ignored
    ]
)

EXPECTED = pl.DataFrame(
    [
        ("A", "sma_3", 1, T0 + 1_000, 10.0, 10.0, 1, False, "ok"),
        ("A", "sma_3", 2, T0 + 2_000, None, 11.0, 0, False, "missing"),
        ("A", "sma_3", 3, T0 + 3_000, 99.0, 12.0, 1, False, "wrong"),
        ("A", "sma_3", 4, T0 + 4_000, 13.0, 13.0, 2, False, "duplicate"),
        ("A", "sma_3", 5, T0 + 5_000, 14.0, 14.0, 2, True, "duplicate"),
        ("A", "sma_3", 6, T0 + 6_000, 16.0, 15.0, 2, True, "wrong"),
        ("C", "sma_3", 1, T0 + 7_000, 3.0, None, 1, False, "extra"),
        ("B", "mean_1m", T0, T0, None, None, 1, False, "ok"),
        ("B", "mean_1m", T0 + 60_000, T0 + 60_000, 5.0 + 1e-12, 5.0, 1, False, "ok"),
    ],
    schema=COMPARISON,
    orient="row",
)


def test_every_class_is_recognised() -> None:
    got = compare(ORIGINALS, TRUTH, SPEC, from_ms=T0, to_ms=T0 + 120_000)
    expected = EXPECTED.sort("metric", "key", "window")
    assert_frame_equal(got, expected)


def test_tolerance_decides_wrong() -> None:
    strict = compare(ORIGINALS, TRUTH, SPEC, from_ms=T0, to_ms=T0 + 120_000, abs_tol=0.0, rel_tol=0.0)
    assert strict.filter(pl.col("window") == T0 + 60_000).item(0, "status") == "wrong"
    loose = compare(ORIGINALS, TRUTH, SPEC, from_ms=T0, to_ms=T0 + 120_000, abs_tol=100.0)
    assert loose.filter(pl.col("metric") == "sma_3", pl.col("key") == "A").get_column("status").to_list() == [
        "ok",
        "missing",
        "ok",
        "duplicate",
        "duplicate",
        "duplicate",
    ]


def test_null_against_a_value_is_wrong() -> None:
    got = compare(outputs([("B", "mean_1m", T0, T0, None)]), truth([("B", "mean_1m", T0, T0, 1.0)]), SPEC, abs_tol=1e9)
    assert got.item(0, "status") == "wrong"


def test_windows_not_fully_inside_the_range_are_ignored() -> None:
    got = compare(
        outputs([("B", "mean_1m", T0, T0, 1.0)]), truth([("B", "mean_1m", T0, T0, 2.0)]), SPEC, to_ms=T0 + 59_999
    )
    assert_frame_equal(got, pl.DataFrame(schema=COMPARISON))


def test_summaries_count_per_class_key_metric_and_bucket() -> None:
    comparison = compare(ORIGINALS, TRUTH, SPEC, from_ms=T0, to_ms=T0 + 120_000)
    summary = summarize(comparison, bucket_ms=60_000)
    assert summary.counts == {"ok": 3, "missing": 1, "wrong": 2, "duplicate": 2, "extra": 1, "conflicting": 1}
    assert summary.discrepancies == 5
    by_key = pl.DataFrame(
        {
            "key": ["A", "B", "C"],
            "ok": [1, 2, 0],
            "missing": [1, 0, 0],
            "wrong": [2, 0, 0],
            "duplicate": [2, 0, 0],
            "extra": [0, 0, 1],
            "total": [6, 2, 1],
        },
        schema={"key": pl.String, **{c: pl.Int64 for c in ("ok", "missing", "wrong", "duplicate", "extra", "total")}},
    )
    assert_frame_equal(summary.by_key, by_key)
    assert summary.by_metric.get_column("metric").to_list() == ["mean_1m", "sma_3"]
    assert summary.by_bucket.select("bucket_ms", "total").rows() == [(T0, 8), (T0 + 60_000, 1)]
    assert any("missing 1" in line for line in summary.lines())


def test_empty_input_keeps_the_schema() -> None:
    got = compare(pl.DataFrame(schema=OUTPUTS), pl.DataFrame(schema=RESULTS), SPEC)
    assert_frame_equal(got, pl.DataFrame(schema=COMPARISON))
    summary = summarize(got)
    assert summary.counts == dict.fromkeys(("ok", "missing", "wrong", "duplicate", "extra", "conflicting"), 0)
    assert summary.by_key.height == 0
    assert status_counts(got)["ok"] == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_tolerances_are_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="abs_tol must be a finite number"):
        compare(ORIGINALS, TRUTH, SPEC, abs_tol=bad)


def test_results_too_far_apart_for_integer_ids_are_compared_by_their_columns() -> None:
    far = 2**61
    original = outputs([("A", "sma_3", 1, T0, 1.0), ("A", "sma_3", far, T0, 2.0), ("A", "sma_3", far, T0, 2.5)])
    expected = truth([("A", "sma_3", 1, T0, 1.0), ("A", "sma_3", far, T0, 2.5), ("B", "sma_3", -far, T0, 3.0)])
    got = compare(original, expected, SPEC)
    assert got.select("key", "window", "copies", "conflicting", "status").rows() == [
        ("A", 1, 1, False, "ok"),
        ("A", far, 2, True, "duplicate"),
        ("B", -far, 0, False, "missing"),
    ]


def test_frames_of_the_wrong_kind_are_refused() -> None:
    with pytest.raises(DataError, match="expected a OUTPUTS frame"):
        compare(TRUTH, TRUTH, SPEC)
