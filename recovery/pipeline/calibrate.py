"""Calibration: does the spec reproduce the team's pipeline? Recompute a range believed clean and compare.

A team learns here, before it trusts a fix set, whether its ``[events]``, ``[outputs]`` and ``[[metrics]]``
describe what its job computes: the share of results that come out ``ok`` per metric, and the first
mismatches with the events behind them. ``recovery check-spec`` exits non-zero below the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.kafka.client import DEFAULT_CLIENT
from recovery.metrics.windows import window_end
from recovery.pipeline.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, compare
from recovery.pipeline.steps import SourceLike, originals_for_range, truth_for_range
from recovery.replay.bounded import DEFAULT_SLACK_MS
from recovery.spec import MetricSpec, PipelineSpec

DEFAULT_THRESHOLD_PCT = 99.9


@dataclass(frozen=True)
class MetricShare:
    """How many of a metric's results in the range the spec reproduces."""

    metric: str
    results: int
    ok: int

    @property
    def ok_pct(self) -> float:
        return 100.0 * self.ok / self.results if self.results else 0.0


@dataclass(frozen=True)
class Mismatch:
    """One result the spec does not reproduce, with the events that went into it."""

    key: str
    metric: str
    window: int
    status: str
    original: float | None
    corrected: float | None
    events: pl.DataFrame  # the EVENTS behind the recomputed result


@dataclass(frozen=True)
class SpecCheck:
    """The calibration of a spec on a range."""

    shares: list[MetricShare]
    mismatches: list[Mismatch]
    comparison: pl.DataFrame
    threshold_pct: float

    @property
    def passed(self) -> bool:
        """Every metric has results, and at least ``threshold_pct`` % of them are ok."""
        return all(s.results and s.ok_pct >= self.threshold_pct for s in self.shares)

    def lines(self) -> list[str]:
        """A human summary: one line per metric, then the first mismatches."""
        out = []
        for s in self.shares:
            verdict = "ok" if s.results and s.ok_pct >= self.threshold_pct else "BELOW THRESHOLD"
            if not s.results:
                out.append(f"{s.metric}: no results in the range (neither published nor recomputed)  {verdict}")
                continue
            out.append(f"{s.metric}: {s.ok:,} of {s.results:,} results ok ({s.ok_pct:.2f} %)  {verdict}")
        for m in self.mismatches:
            out.append(
                f"  {m.status}: {m.metric} key={m.key} window={m.window} published={m.original} "
                f"recomputed={m.corrected} from {m.events.height} event(s)"
            )
            for row in m.events.head(5).iter_rows(named=True):
                out.append(f"      {row}")
        out.append(
            f"spec check {'passed' if self.passed else 'FAILED'} (threshold {self.threshold_pct} % ok per metric)"
        )
        return out


def events_behind(events: pl.DataFrame, metric: MetricSpec, key: str, window: int) -> pl.DataFrame:
    """The events a recomputed result of ``metric`` for ``key`` and ``window`` is made of (event-time order)."""
    mine = events.filter(pl.col("key") == key)
    if metric.is_windowed:
        return mine.filter((pl.col("ts") >= window) & (pl.col("ts") < window_end(pl.lit(window), metric)))
    if metric.window_kind == "session":
        assert metric.gap_ms is not None
        after = mine.filter(pl.col("ts") >= window).sort("ts", maintain_order=True)
        # the session runs on while consecutive events are at most gap_ms apart
        broken = (pl.col("ts").diff().fill_null(0) > metric.gap_ms).cum_sum()
        return after.filter(broken == 0)
    if metric.window_kind != "count":
        return mine
    assert metric.n is not None
    ident = "seq" if mine.get_column("seq").null_count() == 0 else "ts"
    upto = mine.with_row_index("_i").filter(pl.col(ident) == window)
    if upto.height == 0:
        return mine.clear()
    last = int(upto.item(0, "_i"))
    return mine.slice(max(0, last - metric.n + 1), min(metric.n, last + 1))


def check_spec(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    raw_source: SourceLike = None,
    outputs_source: SourceLike = None,
    settings: KafkaSettings | None = None,
    slack_ms: int = DEFAULT_SLACK_MS,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
    client: str = DEFAULT_CLIENT,
    show: int = 5,
) -> SpecCheck:
    """Recompute ``[from_ms, to_ms)`` and compare with what was published: the share of ok results per metric."""
    if not 0 < threshold_pct <= 100:
        raise ConfigError(f"threshold must be a percentage in (0, 100], got {threshold_pct}")
    options = {"settings": settings, "slack_ms": slack_ms, "client": client}
    truth = truth_for_range(spec, from_ms, to_ms, source=raw_source, **options)  # type: ignore[arg-type]
    originals, _, _ = originals_for_range(spec, from_ms, to_ms, source=outputs_source, **options)  # type: ignore[arg-type]
    comparison = compare(originals, truth.results, spec, from_ms=from_ms, to_ms=to_ms, abs_tol=abs_tol, rel_tol=rel_tol)
    shares = []
    for m in spec.metrics:
        rows = comparison.filter(pl.col("metric") == m.name)
        shares.append(MetricShare(m.name, rows.height, rows.filter(pl.col("status") == "ok").height))
    bad = comparison.filter(pl.col("status") != "ok").sort("time_ms", "metric", "key").head(show)
    mismatches = [
        Mismatch(
            row["key"],
            row["metric"],
            row["window"],
            row["status"],
            row["original"],
            row["corrected"],
            events_behind(truth.events.events, spec.metric(row["metric"]), row["key"], row["window"]),
        )
        for row in bad.iter_rows(named=True)
        if row["metric"] in spec.metric_names
    ]
    return SpecCheck(shares, mismatches, comparison, threshold_pct)
