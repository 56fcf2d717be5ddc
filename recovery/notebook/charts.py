"""Charts of an incident: functions that take the frames of :mod:`recovery.frames` and return Altair charts.

Every chart is drawn from a small frame: large series are aggregated into time buckets (or downsampled)
in polars before they reach Altair, so the spec of a chart stays small whatever the size of the incident
and an HTML report of a million events opens fast. One house theme (``recovery``) is registered and
enabled on import; statuses always have the same colours. :func:`save_chart` writes a chart to HTML
(self-contained, opens offline), PNG, SVG or JSON, chosen from the file suffix.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from recovery.errors import ConfigError, DataError
from recovery.frames import STATUSES

THEME = "recovery"
FONT = "'Source Sans Pro', 'Segoe UI', Helvetica, Arial, sans-serif"
WIDTH_PX = 640
STATUS_COLORS: dict[str, str] = {
    "ok": "#b8bcc2",
    "missing": "#e8871e",
    "wrong": "#d62839",
    "duplicate": "#7b2cbf",
    "extra": "#1d70b8",
}
SERIES_COLORS: dict[str, str] = {"corrected": "#1b4965", "original": "#e8871e"}
CATEGORY_PALETTE = [
    "#1b4965",
    "#e8871e",
    "#2a9d8f",
    "#d62839",
    "#7b2cbf",
    "#8d6e63",
    "#1d70b8",
    "#c9a227",
    "#5c677d",
    "#43aa8b",
    "#f28482",
    "#6d597a",
]
# bucket sizes a reader recognises, smallest first
NICE_BUCKETS_MS: tuple[int, ...] = (
    1,
    10,
    100,
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
)
SAVE_FORMATS: tuple[str, ...] = (".html", ".json", ".png", ".svg")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OTHER = "(other)"


@alt.theme.register(THEME, enable=True)
def house_theme() -> alt.theme.ThemeConfig:
    """The project's one chart theme: quiet axes, readable fonts, fixed width, categorical palette."""
    return {
        "config": {
            "font": FONT,
            "background": "white",
            "view": {"stroke": None, "continuousWidth": WIDTH_PX, "continuousHeight": 220},
            "title": {"anchor": "start", "fontSize": 15, "fontWeight": 600, "subtitleColor": "#5c677d", "offset": 10},
            "axis": {
                "labelFontSize": 11,
                "titleFontSize": 12,
                "titleFontWeight": 500,
                "gridColor": "#eceff3",
                "domainColor": "#9aa1ab",
                "tickColor": "#9aa1ab",
            },
            "legend": {"labelFontSize": 11, "titleFontSize": 12, "orient": "right"},
            "header": {"labelFontSize": 12, "titleFontSize": 12, "labelFontWeight": 600},
            "range": {"category": CATEGORY_PALETTE},
            "line": {"strokeWidth": 1.6},
            "point": {"size": 40, "filled": True},
            "bar": {"binSpacing": 1},
        }
    }


# ---------------------------------------------------------------- helpers


def bucket_ms_for(span_ms: int, max_buckets: int) -> int:
    """The smallest readable bucket size (1 s, 5 s, 1 min, ...) that cuts ``span_ms`` into <= ``max_buckets``."""
    if max_buckets < 1:
        raise ConfigError(f"max_buckets must be >= 1, got {max_buckets}")
    needed = max(1, math.ceil(max(span_ms, 1) / max_buckets))
    for size in NICE_BUCKETS_MS:
        if size >= needed:
            return size
    return math.ceil(needed / NICE_BUCKETS_MS[-1]) * NICE_BUCKETS_MS[-1]


def describe_bucket(bucket_ms: int) -> str:
    """A bucket size in words (``"1 min"``, ``"5 s"``)."""
    for unit_ms, unit in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")):
        if bucket_ms >= unit_ms and bucket_ms % unit_ms == 0:
            return f"{bucket_ms // unit_ms} {unit}"
    return f"{bucket_ms} ms"


def nice_step(raw: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``raw`` (at least 1): readable bin widths."""
    if raw <= 1:
        return 1
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def _span_ms(frame: pl.DataFrame, column: str) -> int:
    if frame.is_empty():
        return 0
    low, high = frame.select(pl.col(column).min().alias("low"), pl.col(column).max().alias("high")).row(0)
    return 0 if low is None or high is None else int(high) - int(low)


def _largest_group(frame: pl.DataFrame, column: str) -> int:
    """Rows of the biggest group of ``column`` (0 for an empty frame)."""
    if frame.is_empty():
        return 0
    return int(frame.group_by(column).len().select(pl.col("len").max()).item())


def _bucket(column: str, bucket_ms: int) -> pl.Expr:
    return (pl.col(column) // bucket_ms) * bucket_ms


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} needs columns {', '.join(missing)}; got {', '.join(frame.columns) or 'none'}",
            hint="pass a frame with the schema of recovery.frames",
        )


def _time_axis(field: str, span_ms: int, title: str = "time (UTC)", domain: Sequence[int] | None = None) -> alt.X:
    """A UTC time axis with 24-hour labels whose precision suits the span."""
    if span_ms <= 3 * 60_000:
        label = "%H:%M:%S"
    elif span_ms <= 86_400_000:
        label = "%H:%M"
    else:
        label = "%b %d %H:%M"
    # a utc scale formats labels in UTC (Vega-Lite 6 ignores formatType="utc")
    axis = alt.Axis(labelAngle=0, format=label, labelOverlap=True)
    scale = alt.Scale(type="utc", domain=list(domain)) if domain is not None else alt.Scale(type="utc")
    return alt.X(f"{field}:T", title=title, scale=scale, axis=axis)


def _time_tooltip(field: str, title: str) -> alt.Tooltip:
    # a utc time unit formats in UTC whatever the reader's time zone
    return alt.Tooltip(f"utcyearmonthdatehoursminutesseconds({field}):T", title=title, format=TIME_FORMAT)


def _status_color(statuses: Sequence[str] | None = None) -> alt.Color:
    domain = list(statuses) if statuses is not None else list(STATUSES)
    return alt.Color(
        "status:N",
        title="status",
        scale=alt.Scale(domain=domain, range=[STATUS_COLORS[s] for s in domain]),
        sort=domain,
    )


def _top_groups(frame: pl.DataFrame, column: str, limit: int) -> list[Any]:
    """The ``limit`` values of ``column`` with the most rows (ties by value)."""
    counts = frame.group_by(column).agg(pl.len().alias("n")).sort(["n", column], descending=[True, False])
    return counts[column].head(limit).to_list()


def _lump(frame: pl.DataFrame, column: str, limit: int) -> tuple[pl.DataFrame, int]:
    """Keep the ``limit`` biggest groups of ``column`` (as strings) and lump the rest into ``(other)``."""
    top = _top_groups(frame, column, limit)
    others = frame[column].n_unique() - len(top)
    labelled = frame.with_columns(
        pl.when(pl.col(column).is_in(top)).then(pl.col(column).cast(pl.String)).otherwise(pl.lit(OTHER)).alias(column)
    )
    return labelled, others


def message_chart(text: str, title: str, subtitle: str | None = None) -> alt.Chart:
    """A chart that only says ``text`` (used when there is nothing to draw, e.g. no discrepancies)."""
    frame = pl.DataFrame({"text": [text]})
    return (
        alt.Chart(frame, title=alt.Title(title, subtitle=subtitle or ""))
        .mark_text(fontSize=16, color="#2a9d8f", align="center", baseline="middle")
        .encode(text="text:N")
        .properties(width=WIDTH_PX, height=60)
    )


def _non_ok(comparison: pl.DataFrame) -> pl.DataFrame:
    return comparison.filter(pl.col("status") != "ok")


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
    _require(comparison, ["key", "metric", "window", "time_ms", "original", "corrected", "status"], "overlay")
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

    longest = _largest_group(rows, "key")
    bucket_ms = bucket_ms_for(_span_ms(rows, "time_ms"), max_points) if longest > max_points else 0
    if bucket_ms:
        series = (
            rows.group_by("key", _bucket("time_ms", bucket_ms).alias("t"))
            .agg(pl.col("original").mean(), pl.col("corrected").mean())
            .sort("key", "t")
        )
    else:
        series = rows.select("key", pl.col("time_ms").alias("t"), "original", "corrected").sort("key", "t")
    lines = series.unpivot(index=["key", "t"], on=["original", "corrected"], variable_name="series").with_columns(
        pl.lit(None, dtype=pl.String).alias("status"), pl.lit(1, dtype=pl.Int64).alias("count")
    )

    bad = _non_ok(rows).with_columns(pl.coalesce("original", "corrected").alias("value"))
    per_key = _largest_group(bad, "key")
    if per_key > max_markers:
        marker_bucket = bucket_ms_for(_span_ms(rows, "time_ms"), max_markers)
        markers = bad.group_by("key", "status", _bucket("time_ms", marker_bucket).alias("t")).agg(
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
    x = _time_axis("t", time_domain[1] - time_domain[0], domain=time_domain)
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
            tooltip=[_time_tooltip("t", "time"), "series:N", alt.Tooltip("value:Q", format=".4f")],
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
                    _time_tooltip("t", "time"),
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
    _require(comparison, ["metric", "status"], "overlays")
    if comparison.is_empty():
        return message_chart("Nothing to compare: the comparison is empty.", "Original vs corrected")
    ranked = (
        comparison.group_by("metric")
        .agg((pl.col("status") != "ok").sum().alias("bad"))
        .sort(["bad", "metric"], descending=[True, False])
    )
    seen = set(_non_ok(comparison)["status"].unique().to_list())
    statuses = [s for s in STATUSES if s in seen]
    panels = [
        overlay(comparison, metric=m, max_keys=max_keys, max_points=max_points, statuses=statuses)
        for m in ranked["metric"]
    ]
    return alt.vconcat(*panels, spacing=30)


def discrepancy_heatmap(comparison: pl.DataFrame, max_keys: int = 30, max_buckets: int = 60) -> alt.Chart:
    """Discrepancies per key and time bucket (all metrics); keys beyond ``max_keys`` are lumped together."""
    _require(comparison, ["key", "metric", "time_ms", "status"], "discrepancy_heatmap")
    title = "Discrepancies by key and time"
    bad = _non_ok(comparison)
    if bad.is_empty():
        return message_chart("All clear: no discrepancies.", title)
    bucket_ms = bucket_ms_for(_span_ms(bad, "time_ms"), max_buckets)
    bad, others = _lump(bad, "key", max_keys)
    cells = (
        bad.with_columns(_bucket("time_ms", bucket_ms).alias("t"))
        .pivot(on="status", index=["key", "t"], values="time_ms", aggregate_function="len")
        .fill_null(0)
    )
    statuses = [s for s in STATUSES if s in cells.columns]
    cells = cells.with_columns(pl.sum_horizontal(statuses).alias("discrepancies")).with_columns(
        pl.col("t").alias("t_end") + bucket_ms
    )
    order = [k for k in _top_groups(bad, "key", max_keys + 1)]
    subtitle = f"count of non-ok results per {describe_bucket(bucket_ms)}"
    if others:
        subtitle += f"; {others} more key(s) lumped into {OTHER}"
    return (
        alt.Chart(cells, title=alt.Title(title, subtitle=subtitle))
        .mark_rect()
        .encode(
            x=_time_axis("t", _span_ms(bad, "time_ms")),
            x2="t_end:T",
            y=alt.Y("key:N", title="key", sort=order),
            color=alt.Color("discrepancies:Q", title="discrepancies", scale=alt.Scale(scheme="orangered", zero=True)),
            tooltip=["key:N", _time_tooltip("t", "from"), "discrepancies:Q"]
            + [alt.Tooltip(f"{s}:Q") for s in statuses],
        )
        .properties(width=WIDTH_PX, height=alt.Step(16))
    )


def class_counts(comparison: pl.DataFrame, max_buckets: int = 60, include_ok: bool = False) -> alt.Chart:
    """Results per discrepancy class over time (stacked bars per time bucket)."""
    _require(comparison, ["time_ms", "status"], "class_counts")
    title = "Discrepancies by class over time"
    rows = comparison if include_ok else _non_ok(comparison)
    if rows.is_empty():
        return message_chart("All clear: no discrepancies.", title)
    bucket_ms = bucket_ms_for(_span_ms(rows, "time_ms"), max_buckets)
    order = {status: i for i, status in enumerate(STATUSES)}
    counts = (
        rows.group_by(_bucket("time_ms", bucket_ms).alias("t"), "status")
        .agg(pl.len().cast(pl.Int64).alias("results"))
        .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int64).alias("rank"))
        .sort("t", "rank")
        # stacked here rather than by Vega-Lite: a bar ranged over x (bucket start..end) cannot also stack on y
        .with_columns(pl.col("results").cum_sum().over("t").alias("top"))
        .with_columns((pl.col("top") - pl.col("results")).alias("bottom"), (pl.col("t") + bucket_ms).alias("t_end"))
        .drop("rank")
    )
    present = [s for s in STATUSES if s in set(counts["status"].to_list())]
    return (
        alt.Chart(counts, title=alt.Title(title, subtitle=f"results per {describe_bucket(bucket_ms)}"))
        .mark_rect()
        .encode(
            x=_time_axis("t", _span_ms(rows, "time_ms")),
            x2="t_end:T",
            y=alt.Y("bottom:Q", title="results"),
            y2="top:Q",
            color=_status_color(present),
            tooltip=[_time_tooltip("t", "from"), "status:N", "results:Q"],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def class_totals(comparison: pl.DataFrame) -> alt.Chart:
    """Number of results per class and metric (horizontal bars)."""
    _require(comparison, ["metric", "status"], "class_totals")
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
            color=_status_color(present),
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
        _require(frame, ["timestamp_ms", "ts"], "lateness_histogram")
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
    _require(frame, ["partition", "timestamp_ms"], "partition_throughput")
    title = f"Throughput per partition ({what}/s)"
    if frame.is_empty():
        return message_chart(f"No {what}.", title)
    bucket_ms = bucket_ms_for(_span_ms(frame, "timestamp_ms"), max_buckets)
    rates = (
        frame.group_by("partition", _bucket("timestamp_ms", bucket_ms).alias("t"))
        .agg(pl.len().alias("n"))
        .with_columns((pl.col("n") * 1000.0 / bucket_ms).alias("rate"))
        .sort("partition", "t")
        .select("partition", "t", "rate")
    )
    return (
        alt.Chart(rates, title=alt.Title(title, subtitle=f"Kafka timestamp, per {describe_bucket(bucket_ms)}"))
        .mark_line(point=rates.height <= 60)
        .encode(
            x=_time_axis("t", _span_ms(frame, "timestamp_ms"), "Kafka time (UTC)"),
            y=alt.Y("rate:Q", title=f"{what}/s"),
            color=alt.Color("partition:N", title="partition"),
            tooltip=["partition:N", _time_tooltip("t", "from"), alt.Tooltip("rate:Q", format=",.1f")],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def volume_over_time(
    events: pl.DataFrame, by: str = "partition", max_series: int = 12, max_buckets: int = 120
) -> alt.Chart:
    """Events per time bucket (event time) per partition or per key; small groups are lumped together."""
    if by not in ("partition", "key"):
        raise ConfigError(f"volume_over_time: by must be 'partition' or 'key', got {by!r}")
    _require(events, [by, "ts"], "volume_over_time")
    title = f"Events per {by} over time"
    if events.is_empty():
        return message_chart("No events.", title)
    bucket_ms = bucket_ms_for(_span_ms(events, "ts"), max_buckets)
    grouped, others = _lump(events.select(by, "ts"), by, max_series)
    counts = (
        grouped.group_by(by, _bucket("ts", bucket_ms).alias("t"))
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
            x=_time_axis("t", _span_ms(events, "ts"), "event time (UTC)"),
            y=alt.Y("events:Q", title="events", stack="zero"),
            color=alt.Color(f"{by}:N", title=by),
            tooltip=[f"{by}:N", _time_tooltip("t", "from"), "events:Q"],
        )
        .properties(width=WIDTH_PX, height=200)
    )


def quarantine_reasons(quarantine: pl.DataFrame, max_reasons: int = 15) -> alt.Chart:
    """Quarantined (malformed) records per reason and partition."""
    _require(quarantine, ["partition", "reason"], "quarantine_reasons")
    title = "Quarantined records by reason"
    if quarantine.is_empty():
        return message_chart("No malformed records.", title)
    frame, _ = _lump(quarantine.select("partition", "reason"), "reason", max_reasons)
    counts = frame.group_by("reason", "partition").agg(pl.len().cast(pl.Int64).alias("records"))
    order = _top_groups(frame, "reason", max_reasons + 1)
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


# ---------------------------------------------------------------- output


def spec_size_bytes(chart: alt.TopLevelMixin) -> int:
    """Size of the chart's Vega-Lite JSON (data included), in bytes."""
    return len(json.dumps(chart.to_dict()).encode())


def save_chart(chart: alt.TopLevelMixin, path: str | Path, scale_factor: float = 2.0) -> Path:
    """Write ``chart`` to ``path``; the suffix picks the format.

    ``.html`` is self-contained (the Vega scripts inline, opens offline), ``.png``/``.svg`` are static
    images rendered by vl-convert, ``.json`` is the Vega-Lite spec.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ConfigError(
            f"cannot save a chart as {target.name!r}: unsupported suffix {suffix or '(none)'!r}",
            hint=f"use one of {', '.join(SAVE_FORMATS)}",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        chart.save(str(target), format="html", inline=True)
    elif suffix == ".png":
        chart.save(str(target), format="png", scale_factor=scale_factor)
    elif suffix == ".svg":
        chart.save(str(target), format="svg")
    else:
        chart.save(str(target), format="json")
    return target


# ---------------------------------------------------------------- notebook rendering

RENDERER = "recovery-offline"
EMBED_OPTIONS: dict[str, Any] = {"actions": {"export": True, "source": False, "compiled": False, "editor": False}}
_bundle_sent = False


def _vega_bundle() -> str:
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return str(vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert()))  # type: ignore[call-arg]


def _offline_renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """Mimebundle for notebooks: the chart as HTML that draws itself without network access.

    The Vega scripts (~0.9 MB) are sent once per kernel, with the first chart; later charts reuse them,
    so an executed notebook and its HTML report carry one copy whatever the number of charts.
    """
    global _bundle_sent
    div = f"rc-chart-{uuid.uuid4().hex[:12]}"
    spec_json = json.dumps(spec).replace("</", "<\\/")
    options = json.dumps(EMBED_OPTIONS)
    parts = [f'<div class="recovery-chart" id="{div}"></div>']
    if not _bundle_sent:
        bundle = _vega_bundle().replace("</script", "<\\/script")
        # wrapped in a function so a second copy (a rerun in JupyterLab) neither redeclares nor reloads it
        parts.append(
            f'<script type="text/javascript">if (!window.vegaEmbed) {{ (function() {{\n{bundle}\n}})(); }}</script>'
        )
        _bundle_sent = True
    parts.append(
        '<script type="text/javascript">(function() {'
        f'var el = document.getElementById("{div}");'
        "if (!window.vegaEmbed) { el.textContent = 'chart not drawn: the Vega scripts are missing "
        "(run the notebook again to embed them)'; return; }"
        f"window.vegaEmbed(el, {spec_json}, {options}).catch(function (e) {{ console.error(e); }});"
        "})();</script>"
    )
    title = spec.get("title")
    label = title.get("text") if isinstance(title, dict) else title
    return {"text/html": "\n".join(parts), "text/plain": f"<chart: {label or 'untitled'}>"}


alt.renderers.register(RENDERER, _offline_renderer)


def use_offline_renderer() -> None:
    """Draw charts in notebooks (and their HTML reports) with inline Vega scripts: no network needed."""
    global _bundle_sent
    _bundle_sent = False
    alt.renderers.enable(RENDERER)
    alt.theme.enable(THEME)
