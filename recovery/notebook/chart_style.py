"""The house style of every chart: the Altair theme, time axes and buckets, saving and offline rendering."""

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
from recovery.notebook.timefmt import DAY_MS, axis_time

# calendar buckets by their nominal size: months and years of the calendar, not fixed lengths
CALENDAR_BUCKETS: dict[int, tuple[str, str]] = {
    30 * DAY_MS: ("1mo", "month"),
    91 * DAY_MS: ("3mo", "quarter"),
    182 * DAY_MS: ("6mo", "6 months"),
    365 * DAY_MS: ("1y", "year"),
    730 * DAY_MS: ("2y", "2 years"),
    1826 * DAY_MS: ("5y", "5 years"),
    3652 * DAY_MS: ("10y", "10 years"),
    36524 * DAY_MS: ("100y", "100 years"),
}

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
# bucket sizes a reader recognises, smallest first; from a month up they follow the calendar (bucket_of)
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
    DAY_MS,
    7 * DAY_MS,
    *CALENDAR_BUCKETS,
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
    """A bucket size in words (``"1 min"``, ``"5 s"``, ``"quarter"``)."""
    if bucket_ms in CALENDAR_BUCKETS:
        return CALENDAR_BUCKETS[bucket_ms][1]
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


def time_bounds(frame: pl.DataFrame, column: str) -> tuple[int, int]:
    """The first and last time of ``column`` ((0, 0) for an empty frame)."""
    if frame.is_empty():
        return 0, 0
    low, high = frame.select(pl.col(column).min().alias("low"), pl.col(column).max().alias("high")).row(0)
    return (0, 0) if low is None or high is None else (int(low), int(high))


def time_span_ms(frame: pl.DataFrame, column: str) -> int:
    low, high = time_bounds(frame, column)
    return high - low


def largest_group_size(frame: pl.DataFrame, column: str) -> int:
    """Rows of the biggest group of ``column`` (0 for an empty frame)."""
    if frame.is_empty():
        return 0
    return int(frame.group_by(column).len().select(pl.col("len").max()).item())


def bucket_of(column: str, bucket_ms: int) -> pl.Expr:
    """The start of the bucket of each time (epoch ms); calendar buckets start on a month or a year."""
    if bucket_ms in CALENDAR_BUCKETS:
        every = CALENDAR_BUCKETS[bucket_ms][0]
        return pl.from_epoch(pl.col(column), time_unit="ms").dt.truncate(every).dt.epoch("ms")
    return (pl.col(column) // bucket_ms) * bucket_ms


def bucket_end(start: str, bucket_ms: int) -> pl.Expr:
    """The end of the bucket starting at column ``start`` (a calendar bucket ends a month or year later)."""
    if bucket_ms in CALENDAR_BUCKETS:
        every = CALENDAR_BUCKETS[bucket_ms][0]
        return pl.from_epoch(pl.col(start), time_unit="ms").dt.offset_by(every).dt.epoch("ms")
    return pl.col(start) + bucket_ms


def require_chart_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} needs columns {', '.join(missing)}; got {', '.join(frame.columns) or 'none'}",
            hint="pass a frame with the schema of recovery.frames",
        )


def time_axis(field: str, bounds: tuple[int, int], title: str = "time (UTC)", fix_domain: bool = False) -> alt.X:
    """A UTC time axis over ``bounds`` (epoch ms): labels that suit the span, what they omit in the title."""
    low, high = bounds
    spec = axis_time(low, high)
    if spec.context:
        title = title.replace("(UTC)", f"(UTC, {spec.context})") if "(UTC)" in title else f"{title} ({spec.context})"
    # a utc scale formats labels in UTC (Vega-Lite 6 ignores formatType="utc")
    axis = alt.Axis(labelAngle=0, format=spec.label_format, tickCount=spec.tick_count, labelOverlap=True)
    scale = alt.Scale(type="utc", domain=[low, high]) if fix_domain else alt.Scale(type="utc")
    return alt.X(f"{field}:T", title=title, scale=scale, axis=axis)


def time_tooltip(field: str, title: str) -> alt.Tooltip:
    # a utc time unit formats in UTC whatever the reader's time zone
    return alt.Tooltip(f"utcyearmonthdatehoursminutesseconds({field}):T", title=title, format=TIME_FORMAT)


def status_color(statuses: Sequence[str] | None = None) -> alt.Color:
    domain = list(statuses) if statuses is not None else list(STATUSES)
    return alt.Color(
        "status:N",
        title="status",
        scale=alt.Scale(domain=domain, range=[STATUS_COLORS[s] for s in domain]),
        sort=domain,
    )


def top_groups(frame: pl.DataFrame, column: str, limit: int) -> list[Any]:
    """The ``limit`` values of ``column`` with the most rows (ties by value)."""
    counts = frame.group_by(column).agg(pl.len().alias("n")).sort(["n", column], descending=[True, False])
    return counts[column].head(limit).to_list()


def lump_groups(frame: pl.DataFrame, column: str, limit: int) -> tuple[pl.DataFrame, int]:
    """Keep the ``limit`` biggest groups of ``column`` (as strings) and lump the rest into ``(other)``."""
    top = top_groups(frame, column, limit)
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


def non_ok_rows(comparison: pl.DataFrame) -> pl.DataFrame:
    return comparison.filter(pl.col("status") != "ok")


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
