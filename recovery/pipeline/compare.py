"""Compare the originally published results with truth and classify every (key, metric, window).

Classes (``recovery.frames.STATUSES``):

- ``missing``: in truth, never published;
- ``extra``: published, absent from truth;
- ``wrong``: the value downstream holds (the last published copy) differs from truth beyond the tolerance
  (a duplicate whose last copy is wrong counts as wrong);
- ``duplicate``: published more than once, last copy right; ``conflicting`` when the copies disagree;
- ``ok``: published once, right.

Two values agree when both are null or ``|a - b| <= max(abs_tol, rel_tol * max(|a|, |b|))``. Originals are
trimmed to the range with the same rule as truth (sma by event time; time windows fully inside).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recovery.errors import ConfigError
from recovery.frames import COMPARISON, OUTPUTS, RESULTS, STATUSES, conform, empty
from recovery.metrics.recompute import trim
from recovery.records.validate import require_columns
from recovery.spec import PipelineSpec

DEFAULT_ABS_TOL = 1e-9
DEFAULT_REL_TOL = 1e-9
JOIN_KEY = ("key", "metric", "window")


def check_tolerances(abs_tol: float, rel_tol: float) -> None:
    """Tolerances must be finite and >= 0."""
    for name, value in (("abs_tol", abs_tol), ("rel_tol", rel_tol)):
        if not (value >= 0 and value != float("inf")):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def differs(a: pl.Expr, b: pl.Expr, abs_tol: float, rel_tol: float) -> pl.Expr:
    """True where ``a`` and ``b`` disagree (exactly one null, or apart beyond the tolerance)."""
    allowed = pl.max_horizontal(pl.lit(abs_tol), rel_tol * pl.max_horizontal(a.abs(), b.abs()))
    apart = (a - b).abs() > allowed
    return pl.when(a.is_null() | b.is_null()).then(a.is_null() != b.is_null()).otherwise(apart)


def trim_to_range(results: pl.DataFrame, spec: PipelineSpec, from_ms: int | None, to_ms: int | None) -> pl.DataFrame:
    """Results of the spec's metrics inside ``[from_ms, to_ms)`` (other metrics are dropped)."""
    parts = [trim(results.filter(pl.col("metric") == m.name), m, from_ms, to_ms) for m in spec.metrics]
    return pl.concat(parts) if parts else results.clear()


def _ids(frames: list[pl.DataFrame]) -> tuple[list[pl.DataFrame], list[pl.Expr]] | None:
    """``frames`` with ``_id``: (metric, key, window) as one Int64 that sorts like the triple (joins and
    groups on one integer are several times faster than on two strings), and the expressions that give the
    triple back from ``_id`` (so the strings need not ride through the joins); None when it does not fit.
    """
    keys = pl.concat([f.get_column("key") for f in frames]).unique().sort()
    metrics = pl.concat([f.get_column("metric") for f in frames]).unique().sort()
    bounds = [f.select(pl.col("window").min().alias("lo"), pl.col("window").max().alias("hi")).row(0) for f in frames]
    lows = [lo for lo, _ in bounds if lo is not None]
    highs = [hi for _, hi in bounds if hi is not None]
    if keys.null_count() or metrics.null_count() or not lows:
        return None
    lo, hi = min(lows), max(highs)
    key_bits, metric_bits = max(1, (keys.len() - 1).bit_length()), max(1, (metrics.len() - 1).bit_length())
    window_bits = max(1, (hi - lo).bit_length())
    if key_bits + metric_bits + window_bits > 62:
        return None
    metric_no = pl.col("metric").replace_strict(metrics, pl.int_range(metrics.len(), dtype=pl.Int64, eager=True))
    key_no = pl.col("key").replace_strict(keys, pl.int_range(keys.len(), dtype=pl.Int64, eager=True))
    ident = metric_no * (1 << (key_bits + window_bits)) + key_no * (1 << window_bits) + (pl.col("window") - lo)
    number = pl.col("_id")
    decode = [
        (number // (1 << (key_bits + window_bits))).replace_strict(_numbers(metrics), metrics).alias("metric"),
        (number // (1 << window_bits) % (1 << key_bits)).replace_strict(_numbers(keys), keys).alias("key"),
        (number % (1 << window_bits) + lo).alias("window"),
    ]
    return [f.with_columns(ident.alias("_id")) for f in frames], decode


def _numbers(values: pl.Series) -> pl.Series:
    return pl.int_range(values.len(), dtype=pl.Int64, eager=True)


def compare(
    originals: pl.DataFrame,
    truth: pl.DataFrame,
    spec: PipelineSpec,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
) -> pl.DataFrame:
    """COMPARISON of ``originals`` (OUTPUTS, in publish order by partition and offset) with ``truth`` (RESULTS).

    One row per (key, metric, window) of either side within ``[from_ms, to_ms)``, sorted by metric, key, window.
    When the spec's outputs emit every update (``emit = "updates"``), only each window's last record counts.
    """
    check_tolerances(abs_tol, rel_tol)
    require_columns(originals, OUTPUTS, "OUTPUTS")
    require_columns(truth, RESULTS, "RESULTS")
    published = trim_to_range(conform(originals, OUTPUTS), spec, from_ms, to_ms)
    expected = trim_to_range(conform(truth, RESULTS), spec, from_ms, to_ms)
    if published.height == 0 and expected.height == 0:
        return empty(COMPARISON)
    published = published.sort("partition", "offset", maintain_order=True)
    triple = list(JOIN_KEY)
    if spec.outputs.emit == "updates":  # a job that emits every update: a window's last record is its result
        published = published.unique(subset=triple, keep="last", maintain_order=True)
    with_ids = _ids([published, expected])
    decode: list[pl.Expr] = []
    if with_ids is not None:
        (published, expected), decode = with_ids
        published = published.select("_id", "value", "time_ms")
        expected = expected.select("_id", "value", "time_ms")
    on = ["_id"] if with_ids is not None else triple
    if with_ids is not None and published.get_column("_id").n_unique() == published.height:
        copies = published.select(  # every result published once: nothing to group
            *on,
            pl.col("value").alias("original"),
            pl.col("time_ms").alias("_time_original"),
            pl.lit(1, dtype=pl.Int64).alias("copies"),
        )
    else:
        copies = published.group_by(on).agg(
            pl.col("value").last().alias("original"),
            pl.col("time_ms").last().alias("_time_original"),
            pl.len().cast(pl.Int64).alias("copies"),
        )
    repeated = copies.filter(pl.col("copies") > 1).select(*on, "original")
    if repeated.height:  # conflicting: some copy disagrees with the last one (vectorised on the few repeats)
        conflicts = (
            published.join(repeated, on=on, how="inner")
            .with_columns(differs(pl.col("value"), pl.col("original"), abs_tol, rel_tol).alias("_differs"))
            .group_by(on)
            .agg(pl.col("_differs").any().alias("conflicting"))
        )
        copies = copies.join(conflicts, on=on, how="left")
    else:
        copies = copies.with_columns(pl.lit(False).alias("conflicting"))
    if with_ids is None or expected.get_column("_id").n_unique() != expected.height:
        expected = expected.unique(subset=on, keep="last")
    truth_rows = expected.select(
        *on,
        pl.col("time_ms").alias("_time_truth"),
        pl.col("value").alias("corrected"),
        pl.lit(True).alias("_truth"),
    )
    joined = copies.join(truth_rows, on=on, how="full", coalesce=True)
    if with_ids is not None:
        joined = joined.sort("_id").with_columns(decode)
    is_missing = pl.col("copies").is_null()
    is_extra = pl.col("_truth").is_null()
    status = (
        pl.when(is_missing)
        .then(pl.lit("missing"))
        .when(is_extra)
        .then(pl.lit("extra"))
        .when(differs(pl.col("original"), pl.col("corrected"), abs_tol, rel_tol))
        .then(pl.lit("wrong"))
        .when(pl.col("copies") > 1)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("ok"))
    )
    result = joined.with_columns(
        pl.coalesce("_time_truth", "_time_original").alias("time_ms"),
        pl.col("copies").fill_null(0),
        pl.col("conflicting").fill_null(False),
        status.alias("status"),
    )
    ordered = result if with_ids is not None else result.sort("metric", "key", "window")
    return conform(ordered, COMPARISON)


@dataclass(frozen=True)
class ComparisonSummary:
    """Counts per status overall, per key, per metric and per time bucket (wide: one column per status)."""

    counts: dict[str, int]
    by_key: pl.DataFrame
    by_metric: pl.DataFrame
    by_bucket: pl.DataFrame
    bucket_ms: int

    @property
    def discrepancies(self) -> int:
        """Rows that need attention: everything but ``ok`` and consistent duplicates."""
        return self.counts["missing"] + self.counts["wrong"] + self.counts["extra"] + self.counts["conflicting"]

    def lines(self) -> list[str]:
        """A short text summary for the CLI."""
        c = self.counts
        total = sum(c[s] for s in STATUSES)
        out = [
            f"compared {total:,} results: ok {c['ok']:,}, missing {c['missing']:,}, wrong {c['wrong']:,}, "
            f"duplicate {c['duplicate']:,} ({c['conflicting']:,} conflicting), extra {c['extra']:,}"
        ]
        bad = self.by_key.filter(pl.col("total") > pl.col("ok") + pl.col("duplicate"))
        if bad.height:
            worst = bad.with_columns((pl.col("total") - pl.col("ok")).alias("_n")).sort("_n", descending=True)
            shown = ", ".join(f"{k} ({n})" for k, n in worst.select("key", "_n").head(5).iter_rows())
            out.append(f"keys with discrepancies: {bad.height} (most: {shown})")
        return out


SUMMARY_GRAIN_MS = 60_000  # time grain of summary counts: every default bucket is a whole number of them


def summary_counts(comparison: pl.DataFrame, *, grain_ms: int = SUMMARY_GRAIN_MS) -> pl.DataFrame:
    """Rows per (key, metric, ``grain_ms`` time bucket) and status: the mergeable form of a summary.

    Counts of disjoint parts of a comparison (one per partition) concatenated give the same summary as the
    whole comparison (:func:`summarize_counts`).
    """
    frame = conform(comparison, COMPARISON)
    status = pl.col("status")
    return frame.group_by("key", "metric", (pl.col("time_ms") // grain_ms * grain_ms).alias("grain_ms")).agg(
        *[(status == s).sum().cast(pl.Int64).alias(s) for s in STATUSES],
        ((status == "duplicate") & pl.col("conflicting")).sum().cast(pl.Int64).alias("conflicting"),
        pl.col("time_ms").min().alias("lo"),
        pl.col("time_ms").max().alias("hi"),
    )


def _wide(counts: pl.DataFrame, by: list[pl.Expr], names: list[str]) -> pl.DataFrame:
    if counts.height == 0:
        return pl.DataFrame(
            schema={**{n: pl.String for n in names}, **{s: pl.Int64 for s in STATUSES}, "total": pl.Int64}
        )
    sums = [pl.col(s).sum().alias(s) for s in STATUSES]
    total = pl.sum_horizontal(*STATUSES).cast(pl.Int64).alias("total")
    return counts.group_by(by).agg(sums).with_columns(total).sort(names)


def summarize(comparison: pl.DataFrame, *, bucket_ms: int | None = None) -> ComparisonSummary:
    """Summaries of a COMPARISON frame; ``bucket_ms`` defaults to about 50 buckets over the range, in minutes."""
    if bucket_ms is not None and bucket_ms < 1:
        raise ConfigError(f"bucket_ms must be >= 1, got {bucket_ms}")
    grain = SUMMARY_GRAIN_MS if bucket_ms is None or bucket_ms % SUMMARY_GRAIN_MS == 0 else bucket_ms
    return summarize_counts(summary_counts(comparison, grain_ms=grain), bucket_ms=bucket_ms, grain_ms=grain)


def summarize_counts(
    counts: pl.DataFrame, *, bucket_ms: int | None = None, grain_ms: int = SUMMARY_GRAIN_MS
) -> ComparisonSummary:
    """The summary from :func:`summary_counts` frames (of one comparison, or concatenated from its parts)."""
    if bucket_ms is None:
        if counts.height and counts.get_column("lo").null_count() < counts.height:
            lo, hi = counts.select(pl.col("lo").min(), pl.col("hi").max()).row(0)
            span = max(1, hi - lo)
            bucket_ms = max(60_000, -(-span // 50 // 60_000) * 60_000)
        else:
            bucket_ms = 60_000
    if bucket_ms < 1:
        raise ConfigError(f"bucket_ms must be >= 1, got {bucket_ms}")
    if bucket_ms % grain_ms:
        raise ConfigError(f"bucket_ms ({bucket_ms}) must be a multiple of the counts' grain ({grain_ms} ms)")
    bucket = (pl.col("grain_ms") // bucket_ms * bucket_ms).alias("bucket_ms")
    by_bucket = _wide(counts, [bucket], ["bucket_ms"])
    if by_bucket.schema["bucket_ms"] != pl.Int64:
        by_bucket = by_bucket.with_columns(pl.col("bucket_ms").cast(pl.Int64))
    totals = counts.select(*[pl.col(s).sum() for s in (*STATUSES, "conflicting")]).row(0, named=True)
    return ComparisonSummary(
        counts={s: int(totals[s] or 0) for s in (*STATUSES, "conflicting")},
        by_key=_wide(counts, [pl.col("key")], ["key"]),
        by_metric=_wide(counts, [pl.col("metric")], ["metric"]),
        by_bucket=by_bucket,
        bucket_ms=bucket_ms,
    )
