"""Charts of an incident: functions that take the frames of :mod:`recovery.frames` and return Altair charts.

Every chart is drawn from a small frame: large series are aggregated into time buckets (or downsampled)
in polars before they reach Altair, so the spec of a chart stays small whatever the size of the incident
and an HTML report of a million events opens fast. One house theme (``recovery``) is registered and
enabled on import; statuses always have the same colours. :func:`save_chart` writes a chart to HTML
(self-contained, opens offline), PNG, SVG or JSON, chosen from the file suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import polars as pl

from recovery.errors import ConfigError, DataError
from recovery.frames import STATUSES
from recovery.notebook.chart_style import (
    CATEGORY_PALETTE,
    OTHER,
    SERIES_COLORS,
    STATUS_COLORS,
    THEME,
    WIDTH_PX,
    bucket_end,
    bucket_ms_for,
    bucket_of,
    describe_bucket,
    largest_group_size,
    lump_groups,
    message_chart,
    nice_step,
    non_ok_rows,
    require_chart_columns,
    save_chart,
    spec_size_bytes,
    status_color,
    time_axis,
    time_bounds,
    time_span_ms,
    time_tooltip,
    top_groups,
    use_offline_renderer,
)

__all__ = [
    "CATEGORY_PALETTE",
    "OTHER",
    "STATUS_COLORS",
    "THEME",
    "bucket_ms_for",
    "class_counts",
    "class_totals",
    "discrepancy_heatmap",
    "lateness_histogram",
    "message_chart",
    "nice_step",
    "overlay",
    "overlays",
    "partition_throughput",
    "quarantine_reasons",
    "save_chart",
    "spec_size_bytes",
    "use_offline_renderer",
    "volume_over_time",
    "worst_keys",
]

# ---------------------------------------------------------------- comparison charts


def pick_metric(comparison: pl.DataFrame) -> str | None:
    """The metric with the most discrepancies (else the first one), or None for an empty comparison."""
    if comparison.is_empty():
        return None
    ranked = (
        comparison.group_by("metric")
        .agg((pl.col("status") != "ok").sum().alias("bad"))
        .sort(["bad", "metric"], descending=[True, False])
    )
    return str(ranked["metric"][0])


def worst_keys(comparison: pl.DataFrame, limit: int = 4, metric: str | None = None) -> list[str]:
    """Keys with the most discrepancies (ties alphabetical); keys without any come last."""
    frame = comparison if metric is None else comparison.filter(pl.col("metric") == metric)
    ranked = (
        frame.group_by("key")
        .agg((pl.col("status") != "ok").sum().alias("bad"))
        .sort(["bad", "key"], descending=[True, False])
    )
    return [str(k) for k in ranked["key"].head(limit).to_list()]


def overlay(
    comparison: pl.DataFrame,
    metric: str | None = None,
    keys: Sequence[str] | None = None,
    max_keys: int = 4,
    max_points: int = 300,
    max_markers: int = 100,
    statuses: Sequence[str] | None = None,
) -> alt.VConcatChart | alt.Chart:
    """Original vs corrected series of one metric, one panel per key, with the discrepancies marked.

    Series longer than ``max_points`` are averaged into time buckets; more than ``max_markers``
    discrepancies of a key are grouped per bucket and status (the tooltip gives the count). ``statuses``
    fixes the marker legend (charts shown together must agree on it).
    """
    require_chart_columns(
        comparison, ["key", "metric", "window", "time_ms", "original", "corrected", "status"], "overlay"
    )
    metric = metric or pick_metric(comparison)
    title = f"Original vs corrected: {metric}" if metric else "Original vs corrected"
    if metric is None:
        return message_chart("Nothing to compare: the comparison is empty.", title)
    rows = comparison.filter(pl.col("metric") == metric)
    if rows.is_empty():
        known = ", ".join(sorted(comparison["metric"].unique().to_list()))
        raise DataError(f"no comparison rows for metric {metric!r}", hint=f"metrics in the comparison: {known}")
    chosen = list(keys) if keys is not None else worst_keys(rows, max_keys)
    rows = rows.filter(pl.col("key").is_in(chosen))
    if rows.is_empty():
        return message_chart(f"No rows for keys {', '.join(chosen)}.", title)

    longest = largest_group_size(rows, "key")
    bucket_ms = bucket_ms_for(time_span_ms(rows, "time_ms"), max_points) if longest > max_points else 0
    if bucket_ms:
        series = (
            rows.group_by("key", bucket_of("time_ms", bucket_ms).alias("t"))
            .agg(pl.col("original").mean(), pl.col("corrected").mean())
            .sort("key", "t")
        )
    else:
        series = rows.select("key", pl.col("time_ms").alias("t"), "original", "corrected").sort("key", "t")
    lines = series.unpivot(index=["key", "t"], on=["original", "corrected"], variable_name="series").with_columns(
        pl.lit(None, dtype=pl.String).alias("status"), pl.lit(1, dtype=pl.Int64).alias("count")
    )

    bad = non_ok_rows(rows).with_columns(pl.coalesce("original", "corrected").alias("value"))
    per_key = largest_group_size(bad, "key")
    if per_key > max_markers:
        marker_bucket = bucket_ms_for(time_span_ms(rows, "time_ms"), max_markers)
        markers = bad.group_by("key", "status", bucket_of("time_ms", marker_bucket).alias("t")).agg(
            pl.col("value").mean(), pl.len().cast(pl.Int64).alias("count")
        )
    else:
        markers = bad.select("key", "status", pl.col("time_ms").alias("t"), "value", pl.lit(1).alias("count"))
    markers = markers.with_columns(pl.lit("discrepancy").alias("series")).select(lines.columns)
    data = pl.concat([lines.cast({"count": pl.Int64}), markers.cast({"count": pl.Int64})], how="vertical")
    data = data.with_columns(pl.col("value").round(6))

    subtitle = f"{len(chosen)} key(s) with the most discrepancies"
    if bucket_ms:
        subtitle += f"; series averaged per {describe_bucket(bucket_ms)}"
    seen = set(bad["status"].to_list())
    present = list(statuses) if statuses is not None else [s for s in STATUSES if s != "ok" and s in seen]
    t_min, t_max = data.select(pl.col("t").min().alias("lo"), pl.col("t").max().alias("hi")).row(0)
    clamped = False
    panels = []
    for key in chosen:
        part = data.filter(pl.col("key") == key)
        domain = _focus_domain(part)
        clamped = clamped or domain is not None
        panels.append(_overlay_panel(part, key, metric, present, (t_min, t_max), domain))
    if clamped:
        subtitle += "; values far outside the corrected series are drawn at the edge (the tooltip has them)"
    return alt.vconcat(*panels, spacing=12).properties(title=alt.Title(title, subtitle=subtitle))


def _focus_domain(part: pl.DataFrame) -> list[float] | None:
    """A y domain around the corrected series when the original strays far outside it (else None: auto)."""
    truth = part.filter(pl.col("series") == "corrected").get_column("value").drop_nulls()
    others = part.filter(pl.col("series") != "corrected").get_column("value").drop_nulls()
    if truth.len() == 0 or others.len() == 0:
        return None
    lo, hi = float(truth.min()), float(truth.max())  # type: ignore[arg-type]
    span = max(hi - lo, abs(hi) * 0.01, 1e-9)
    if float(others.min()) >= lo - 2 * span and float(others.max()) <= hi + 2 * span:  # type: ignore[arg-type]
        return None
    return [lo - 0.25 * span, hi + 0.25 * span]


def _overlay_panel(
    part: pl.DataFrame,
    key: str,
    metric: str,
    present: list[str],
    time_domain: tuple[int, int],
    domain: list[float] | None,
) -> alt.LayerChart | alt.FacetChart:
    x = time_axis("t", time_domain, fix_domain=True)
    y_scale = alt.Scale(zero=False, domain=domain, clamp=True) if domain else alt.Scale(zero=False)
    base = alt.Chart(part).encode(x=x)
    line = (
        base.transform_filter(alt.FieldOneOfPredicate(field="series", oneOf=["original", "corrected"]))
        .mark_line()
        .encode(
            y=alt.Y("value:Q", title=f"{key} {metric}", scale=y_scale),
            color=alt.Color(
                "series:N",
                title="series",
                scale=alt.Scale(domain=list(SERIES_COLORS), range=list(SERIES_COLORS.values())),
            ),
            strokeDash=alt.StrokeDash(
                "series:N", scale=alt.Scale(domain=["original", "corrected"], range=[[5, 3], [1, 0]]), legend=None
            ),
            tooltip=[time_tooltip("t", "time"), "series:N", alt.Tooltip("value:Q", format=".4f")],
        )
    )
    layers: list[alt.Chart] = [line]
    if present:
        points = (
            base.transform_filter(alt.datum.series == "discrepancy")
            .mark_point(size=70, filled=True, opacity=0.9)
            .encode(
                y=alt.Y("value:Q", scale=y_scale),
                fill=alt.Fill(
                    "status:N",
                    title="discrepancy",
                    scale=alt.Scale(domain=present, range=[STATUS_COLORS[s] for s in present]),
                ),
                shape=alt.Shape("status:N", title="discrepancy", scale=alt.Scale(domain=present)),
                tooltip=[
                    time_tooltip("t", "time"),
                    "status:N",
                    alt.Tooltip("count:Q", title="results"),
                    alt.Tooltip("value:Q", format=".4f"),
                ],
            )
        )
        layers.append(points)
    return alt.layer(*layers).properties(width=WIDTH_PX, height=150)


def overlays(comparison: pl.DataFrame, max_keys: int = 3, max_points: int = 300) -> alt.VConcatChart | alt.Chart:
    """One :func:`overlay` per metric (metrics with discrepancies first), stacked vertically."""
    require_chart_columns(comparison, ["metric", "status"], "overlays")
    if comparison.is_empty():
        return message_chart("Nothing to compare: the comparison is empty.", "Original vs corrected")
    ranked = (
        comparison.group_by("metric")
        .agg((pl.col("status") != "ok").sum().alias("bad"))
        .sort(["bad", "metric"], descending=[True, False])
    )
    seen = set(non_ok_rows(comparison)["status"].unique().to_list())
    statuses = [s for s in STATUSES if s in seen]
    panels = [
        overlay(comparison, metric=m, max_keys=max_keys, max_points=max_points, statuses=statuses)
        for m in ranked["metric"]
    ]
    return alt.vconcat(*panels, spacing=30)


def discrepancy_heatmap(comparison: pl.DataFrame, max_keys: int = 30, max_buckets: int = 60) -> alt.Chart:
    """Discrepancies per key and time bucket (all metrics); keys beyond ``max_keys`` are lumped together."""
    require_chart_columns(comparison, ["key", "metric", "time_ms", "status"], "discrepancy_heatmap")
    title = "Discrepancies by key and time"
    bad = non_ok_rows(comparison)
    if bad.is_empty():
        return message_chart("All clear: no discrepancies.", title)
    bucket_ms = bucket_ms_for(time_span_ms(bad, "time_ms"), max_buckets)
    bad, others = lump_groups(bad, "key", max_keys)
    cells = (
        bad.with_columns(bucket_of("time_ms", bucket_ms).alias("t"))
        .pivot(on="status", index=["key", "t"], values="time_ms", aggregate_function="len")
        .fill_null(0)
    )
    statuses = [s for s in STATUSES if s in cells.columns]
    cells = cells.with_columns(pl.sum_horizontal(statuses).alias("discrepancies")).with_columns(
        bucket_end("t", bucket_ms).alias("t_end")
    )
    order = [k for k in top_groups(bad, "key", max_keys + 1)]
    subtitle = f"count of non-ok results per {describe_bucket(bucket_ms)}"
    if others:
        subtitle += f"; {others} more key(s) lumped into {OTHER}"
    return (
        alt.Chart(cells, title=alt.Title(title, subtitle=subtitle))
        .mark_rect()
        .encode(
            x=time_axis("t", time_bounds(cells, "t")),
            x2="t_end:T",
            y=alt.Y("key:N", title="key", sort=order),
            color=alt.Color("discrepancies:Q", title="discrepancies", scale=alt.Scale(scheme="orangered", zero=True)),
            tooltip=["key:N", time_tooltip("t", "from"), "discrepancies:Q"] + [alt.Tooltip(f"{s}:Q") for s in statuses],
        )
        .properties(width=WIDTH_PX, height=alt.Step(16))
    )


def class_counts(comparison: pl.DataFrame, max_buckets: int = 60, include_ok: bool = False) -> alt.Chart:
    """Results per discrepancy class over time (stacked bars per time bucket)."""
    require_chart_columns(comparison, ["time_ms", "status"], "class_counts")
    title = "Discrepancies by class over time"
    rows = comparison if include_ok else non_ok_rows(comparison)
    if rows.is_empty():
        return message_chart("All clear: no discrepancies.", title)
    bucket_ms = bucket_ms_for(time_span_ms(rows, "time_ms"), max_buckets)
    order = {status: i for i, status in enumerate(STATUSES)}
    counts = (
        rows.group_by(bucket_of("time_ms", bucket_ms).alias("t"), "status")
        .agg(pl.len().cast(pl.Int64).alias("results"))
        .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int64).alias("rank"))
        .sort("t", "rank")
        # stacked here rather than by Vega-Lite: a bar ranged over x (bucket start..end) cannot also stack on y
        .with_columns(pl.col("results").cum_sum().over("t").alias("top"))
        .with_columns((pl.col("top") - pl.col("results")).alias("bottom"), bucket_end("t", bucket_ms).alias("t_end"))
        .drop("rank")
    )
    present = [s for s in STATUSES if s in set(counts["status"].to_list())]
    return (
        alt.Chart(counts, title=alt.Title(title, subtitle=f"results per {describe_bucket(bucket_ms)}"))
        .mark_rect()
        .encode(
            x=time_axis("t", time_bounds(counts, "t")),
            x2="t_end:T",
            y=alt.Y("bottom:Q", title="results"),
            y2="top:Q",
            color=status_color(present),
            tooltip=[time_tooltip("t", "from"), "status:N", "results:Q"],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def class_totals(comparison: pl.DataFrame) -> alt.Chart:
    """Number of results per class and metric (horizontal bars)."""
    require_chart_columns(comparison, ["metric", "status"], "class_totals")
    title = "Results by class and metric"
    if comparison.is_empty():
        return message_chart("Nothing to compare: the comparison is empty.", title)
    order = {status: i for i, status in enumerate(STATUSES)}
    totals = (
        comparison.group_by("metric", "status")
        .agg(pl.len().cast(pl.Int64).alias("results"))
        .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int64).alias("rank"))
    )
    present = [s for s in STATUSES if s in set(totals["status"].to_list())]
    return (
        alt.Chart(totals, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("metric:N", title=None),
            x=alt.X("results:Q", title="results", stack="normalize", axis=alt.Axis(format="%")),
            color=status_color(present),
            order=alt.Order("rank:Q"),
            tooltip=["metric:N", "status:N", "results:Q"],
        )
        .properties(width=WIDTH_PX, height=alt.Step(22))
    )


# ---------------------------------------------------------------- event charts


def lateness_histogram(
    frame: pl.DataFrame, bins: int = 40, grace_ms: int | None = None, clip_quantile: float = 0.9999
) -> alt.LayerChart | alt.FacetChart | alt.Chart:
    """Distribution of lateness (Kafka timestamp minus event time, ms); the tail beyond a quantile is clipped.

    ``frame`` is an EVENTS frame, or any frame with a ``lateness_ms`` column.
    """
    title = "Lateness (Kafka timestamp minus event time)"
    if "lateness_ms" in frame.columns:
        values = frame.select(pl.col("lateness_ms").cast(pl.Int64))
    else:
        require_chart_columns(frame, ["timestamp_ms", "ts"], "lateness_histogram")
        values = frame.select((pl.col("timestamp_ms") - pl.col("ts")).alias("lateness_ms"))
    values = values.drop_nulls()
    if values.is_empty():
        return message_chart("No events.", title)
    low = int(values["lateness_ms"].min())  # type: ignore[arg-type]
    high = int(values["lateness_ms"].quantile(clip_quantile, interpolation="higher"))  # type: ignore[arg-type]
    step = nice_step((high - low + 1) / bins)
    low = (low // step) * step
    clipped = int((values["lateness_ms"] > high).sum())
    hist = (
        values.filter(pl.col("lateness_ms") <= high)
        .group_by((((pl.col("lateness_ms") - low) // step) * step + low).alias("from_ms"))
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .with_columns((pl.col("from_ms") + step).alias("to_ms"))
        .sort("from_ms")
    )
    subtitle = f"{values.height:,} events, bins of {step:,} ms"
    if clipped:
        subtitle += f"; {clipped:,} events beyond the {clip_quantile:.1%} quantile ({high:,} ms) not drawn"
    bars = (
        alt.Chart(hist)
        .mark_bar(color=CATEGORY_PALETTE[0])
        .encode(
            x=alt.X("from_ms:Q", title="lateness (ms)", bin="binned"),
            x2="to_ms:Q",
            # symlog: a few very late events stay visible next to thousands of punctual ones
            y=alt.Y("events:Q", title="events (symlog scale)", scale=alt.Scale(type="symlog")),
            tooltip=[alt.Tooltip("from_ms:Q", title="from ms"), alt.Tooltip("to_ms:Q", title="to ms"), "events:Q"],
        )
    )
    properties: dict[str, Any] = {"title": alt.Title(title, subtitle=subtitle), "width": WIDTH_PX, "height": 200}
    if grace_ms is None:
        return bars.properties(**properties)
    rule = (
        alt.Chart(pl.DataFrame({"grace_ms": [grace_ms], "label": [f"grace {grace_ms:,} ms"]}))
        .mark_rule(color=STATUS_COLORS["wrong"], strokeDash=[4, 3])
        .encode(x="grace_ms:Q", tooltip=["label:N"])
    )
    return alt.layer(bars, rule).properties(**properties)


def partition_throughput(frame: pl.DataFrame, max_buckets: int = 120, what: str = "events") -> alt.Chart:
    """Records per second per partition over time, by Kafka timestamp (EVENTS, RECORDS, OUTPUTS, ...)."""
    require_chart_columns(frame, ["partition", "timestamp_ms"], "partition_throughput")
    title = f"Throughput per partition ({what}/s)"
    if frame.is_empty():
        return message_chart(f"No {what}.", title)
    bucket_ms = bucket_ms_for(time_span_ms(frame, "timestamp_ms"), max_buckets)
    rates = (
        frame.group_by("partition", bucket_of("timestamp_ms", bucket_ms).alias("t"))
        .agg(pl.len().alias("n"))
        .with_columns((pl.col("n") * 1000.0 / (bucket_end("t", bucket_ms) - pl.col("t"))).alias("rate"))
        .sort("partition", "t")
        .select("partition", "t", "rate")
    )
    return (
        alt.Chart(rates, title=alt.Title(title, subtitle=f"Kafka timestamp, per {describe_bucket(bucket_ms)}"))
        .mark_line(point=rates.height <= 60)
        .encode(
            x=time_axis("t", time_bounds(rates, "t"), "Kafka time (UTC)"),
            y=alt.Y("rate:Q", title=f"{what}/s"),
            color=alt.Color("partition:N", title="partition"),
            tooltip=["partition:N", time_tooltip("t", "from"), alt.Tooltip("rate:Q", format=",.1f")],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def volume_over_time(
    events: pl.DataFrame, by: str = "partition", max_series: int = 12, max_buckets: int = 120
) -> alt.Chart:
    """Events per time bucket (event time) per partition or per key; small groups are lumped together."""
    if by not in ("partition", "key"):
        raise ConfigError(f"volume_over_time: by must be 'partition' or 'key', got {by!r}")
    require_chart_columns(events, [by, "ts"], "volume_over_time")
    title = f"Events per {by} over time"
    if events.is_empty():
        return message_chart("No events.", title)
    bucket_ms = bucket_ms_for(time_span_ms(events, "ts"), max_buckets)
    grouped, others = lump_groups(events.select(by, "ts"), by, max_series)
    counts = (
        grouped.group_by(by, bucket_of("ts", bucket_ms).alias("t"))
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .sort(by, "t")
    )
    subtitle = f"event time, per {describe_bucket(bucket_ms)}"
    if others:
        subtitle += f"; {others} smaller {by}s lumped into {OTHER}"
    return (
        alt.Chart(counts, title=alt.Title(title, subtitle=subtitle))
        .mark_area(opacity=0.85, interpolate="step-after")
        .encode(
            x=time_axis("t", time_bounds(counts, "t"), "event time (UTC)"),
            y=alt.Y("events:Q", title="events", stack="zero"),
            color=alt.Color(f"{by}:N", title=by),
            tooltip=[f"{by}:N", time_tooltip("t", "from"), "events:Q"],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def quarantine_reasons(quarantine: pl.DataFrame, max_reasons: int = 15) -> alt.Chart:
    """Quarantined (malformed) records per reason and partition."""
    require_chart_columns(quarantine, ["partition", "reason"], "quarantine_reasons")
    title = "Quarantined records by reason"
    if quarantine.is_empty():
        return message_chart("No malformed records.", title)
    frame, _ = lump_groups(quarantine.select("partition", "reason"), "reason", max_reasons)
    counts = frame.group_by("reason", "partition").agg(pl.len().cast(pl.Int64).alias("records"))
    order = top_groups(frame, "reason", max_reasons + 1)
    return (
        alt.Chart(counts, title=alt.Title(title, subtitle=f"{quarantine.height:,} records"))
        .mark_bar()
        .encode(
            y=alt.Y("reason:N", title=None, sort=order, axis=alt.Axis(labelLimit=320)),
            x=alt.X("records:Q", title="records", stack="zero"),
            color=alt.Color("partition:N", title="partition"),
            tooltip=["reason:N", "partition:N", "records:Q"],
        )
        .properties(width=WIDTH_PX - 200, height=alt.Step(20))
    )
