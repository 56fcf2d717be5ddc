"""Tumbling and hopping time windows, shared by the live worker and the recompute so they cannot drift.

Windows sit on a grid of panes (:class:`Grid`): every window is a whole number of panes and every event
falls in exactly one pane. A fixed grid has panes of ``gcd(size_ms, hop_ms, offset_ms)`` from the epoch, and
windows ``[start, start + size_ms)`` with ``start = offset_ms + k * hop_ms``; a calendar grid (``time_zone``)
has one pane per local day, so a daily window runs local midnight to midnight (23 or 25 h on DST days).
Events are first reduced to partial aggregates per pane (:mod:`recovery.metrics.aggregations`), then panes
merge into the windows that contain them.

Grace: the watermark of a partition is the max event time seen there minus ``grace_ms``; a window is closed
once the watermark reaches its end. An event only feeds windows that are still open when it arrives; an
event whose windows are all closed is late (dropped and counted by the live worker).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from recovery.frames import EVENTS, RESULTS
from recovery.metrics.aggregations import event_aggs, merge_aggs, partial_schema, value_expr
from recovery.spec import DAY_MS, MetricSpec, PipelineSpec

# Optional boolean column of a live batch: rows where it is true compute their count window over n - 1
# events (the "window one event short" bug of the simulator's bad-deploy fault).
SHORT_WINDOW = "short_window"

# What the live worker publishes per result: a RESULTS row plus the input records it covers.
LIVE_RESULTS = pl.Schema(
    [
        *RESULTS.items(),
        ("count", pl.Int64()),  # events in the window
        ("partition", pl.Int32()),  # raw partition of the events
        ("first_offset", pl.Int64()),
        ("last_offset", pl.Int64()),
    ]
)

# A fill value below every window start: "no window is closed yet".
NO_FLOOR = -(2**62)

OFFSETS = ("partition", "first_offset", "last_offset")


def tail_schema(spec: PipelineSpec) -> pl.Schema:
    """The count-window state kept per key between live batches (the deque): ids plus the value columns."""
    values = sorted({c for m in spec.metrics if m.window_kind == "count" for c in m.value_columns})
    names = ("key", "partition", "offset", "ts", "seq")
    return pl.Schema([(n, EVENTS[n]) for n in names] + [(v, pl.Float64()) for v in values])


# ----------------------------------------------------------------------------------------------------------
# Grids


@dataclass(frozen=True)
class Grid:
    """Panes and windows of a time-window metric: sizes in panes; a calendar grid when ``time_zone`` is set."""

    pane_ms: int
    size: int
    hop: int
    offset: int
    time_zone: str | None = None

    def pane_of(self, ts: pl.Expr) -> pl.Expr:
        """Index of the pane holding event time ``ts`` (a local day number on a calendar grid)."""
        if self.time_zone is None:
            return ts.cast(pl.Int64) // self.pane_ms
        local = pl.from_epoch(ts, time_unit="ms").dt.replace_time_zone("UTC").dt.convert_time_zone(self.time_zone)
        return local.dt.date().cast(pl.Int32).cast(pl.Int64)

    def start_ms(self, index: pl.Expr) -> pl.Expr:
        """Epoch ms where pane ``index`` starts (local midnight on a calendar grid)."""
        if self.time_zone is None:
            return index * self.pane_ms
        day = index.cast(pl.Int32).cast(pl.Date).cast(pl.Datetime("ms"))
        local = day.dt.replace_time_zone(self.time_zone, ambiguous="earliest", non_existent="null")
        return local.dt.epoch("ms")

    def last_start(self, pane: pl.Expr) -> pl.Expr:
        """Pane index where the latest window containing ``pane`` starts."""
        return ((pane - self.offset) // self.hop) * self.hop + self.offset

    def first_open(self, watermark: pl.Expr) -> pl.Expr:
        """Pane index of the oldest window still open at ``watermark`` ms (end > watermark); NO_FLOOR if null."""
        edge = self.pane_of(watermark) - self.size - self.offset
        return ((edge // self.hop) * self.hop + self.offset + self.hop).fill_null(NO_FLOOR)

    def is_late(self, ts: pl.Expr, floor: pl.Expr) -> pl.Expr:
        """True when every window of an event at ``ts`` starts before pane ``floor`` (all closed)."""
        return floor > self.last_start(self.pane_of(ts))


def pane_ms(metric: MetricSpec) -> int:
    """Width of the panes a fixed-grid metric is reduced over: every window start and end is on a pane edge."""
    return math.gcd(metric.size, metric.hop, metric.offset)


def common_pane_ms(metrics: Iterable[MetricSpec]) -> int:
    """A pane width that serves every given fixed-grid metric at once."""
    return math.gcd(*(pane_ms(m) for m in metrics))


def grid_of(metric: MetricSpec, width_ms: int | None = None) -> Grid:
    """The grid of ``metric``; ``width_ms`` a common pane width (fixed grids only) dividing its own."""
    if metric.time_zone is not None:
        return Grid(DAY_MS, metric.size // DAY_MS, metric.hop // DAY_MS, metric.offset // DAY_MS, metric.time_zone)
    w = width_ms or pane_ms(metric)
    return Grid(w, metric.size // w, metric.hop // w, metric.offset // w)


def pane_groups(metrics: Sequence[MetricSpec]) -> list[tuple[Grid, list[MetricSpec]]]:
    """Metrics that can share panes, each group with its pane grid (one fixed group, one per time zone)."""
    fixed = [m for m in metrics if m.time_zone is None]
    groups = [(grid_of(fixed[0], common_pane_ms(fixed)), fixed)] if fixed else []
    for zone in sorted({m.time_zone for m in metrics if m.time_zone is not None}):
        zoned = [m for m in metrics if m.time_zone == zone]
        groups.append((grid_of(zoned[0]), zoned))
    return groups


def window_end(start: pl.Expr, metric: MetricSpec) -> pl.Expr:
    """Epoch ms where the window starting at ``start`` ms ends (exclusive)."""
    grid = grid_of(metric)
    return grid.start_ms(grid.pane_of(start) + grid.size)


def last_window_start(ts: pl.Expr, metric: MetricSpec) -> pl.Expr:
    """Start (epoch ms) of the latest window containing ``ts``."""
    grid = grid_of(metric)
    return grid.start_ms(grid.last_start(grid.pane_of(ts)))


def watermark_seen_before(frame: pl.DataFrame, state_max_ts: dict[int, int] | None = None) -> pl.Expr:
    """Max event time seen in the row's partition before the row (arrival order), including ``state_max_ts``.

    Minus a metric's ``grace_ms`` this is the watermark the row meets when it arrives.
    """
    before = pl.col("ts").cum_max().shift(1).over("partition")
    if not state_max_ts:
        return before
    known = pl.col("partition").replace_strict(
        list(state_max_ts), list(state_max_ts.values()), default=None, return_dtype=pl.Int64
    )
    return pl.max_horizontal(before, known)


# ----------------------------------------------------------------------------------------------------------
# Panes and windows


def pane_sums(
    events: pl.DataFrame,
    grid: Grid,
    metrics: Sequence[MetricSpec],
    *,
    floor: str | None = None,
    with_offsets: bool = False,
    ordered: bool = False,
    group: str = "key",
) -> pl.DataFrame:
    """Count and partials per (key, pane[, floor]); ``floor`` names a column with each event's oldest open window.

    ``ordered``: rows are sorted by key then event time, so each pane is one run of rows (faster grouping);
    ``group`` then names a column that changes exactly where the key does (an integer run id is fastest).
    """
    pane = grid.pane_of(pl.col("ts")).alias("pane")
    aggs = event_aggs(metrics)
    if with_offsets:
        aggs += [
            pl.col("partition").first(),
            pl.col("offset").min().alias("first_offset"),
            pl.col("offset").max().alias("last_offset"),
        ]
    if ordered and floor is None:
        framed = events.with_columns(pane)
        k, p = pl.col(group), pl.col("pane")
        run = ((k != k.shift(1)) | (p != p.shift(1))).fill_null(True).cum_sum().alias("_run")
        grouped = framed.with_columns(run).group_by("_run", maintain_order=True)
        return grouped.agg(pl.col("key").first(), p.first(), *aggs).drop("_run")
    by = [pl.col("key"), pane]
    if floor is not None:
        by.append(pl.col(floor).alias("floor"))
    return events.group_by(by).agg(aggs)


def _merge(frame: pl.DataFrame, metric: MetricSpec, with_offsets: bool) -> pl.DataFrame:
    aggs = merge_aggs([metric])
    if with_offsets:
        aggs += [pl.col("partition").first(), pl.col("first_offset").min(), pl.col("last_offset").max()]
    # the end follows from the start: grouping by it too would only slow the group-by down
    merged = frame.group_by(["key", "window"]).agg(aggs)
    end = window_end(pl.col("window"), metric).alias("end")
    return merged.select("key", "window", end, pl.exclude("key", "window"))


def windows_from_panes(
    panes: pl.DataFrame, metric: MetricSpec, grid: Grid, *, with_offsets: bool = False
) -> pl.DataFrame:
    """Partials per (key, window start, window end) for ``metric`` from the panes of ``grid`` (its pane group's)."""
    mine = grid_of(metric, grid.pane_ms) if metric.time_zone is None else grid
    keep = ["key", "pane", *partial_schema([metric])] + (list(OFFSETS) if with_offsets else [])
    has_floor = "floor" in panes.columns
    base = panes.select(keep + (["floor"] if has_floor else []))
    parts = []
    for k in range(-(-mine.size // mine.hop)):  # candidate starts: the latest, then one hop earlier each time
        start = mine.last_start(pl.col("pane")) - k * mine.hop
        cond = start > pl.col("pane") - mine.size
        if has_floor:
            cond = cond & (start >= pl.col("floor"))
        parts.append(base.filter(cond).with_columns(start.alias("window")))
    exploded = pl.concat(parts)
    s = pl.col("window")
    return _merge(exploded.with_columns(mine.start_ms(s).alias("window")), metric, with_offsets)


def merge_windows(frames: Sequence[pl.DataFrame], metric: MetricSpec, *, with_offsets: bool = False) -> pl.DataFrame:
    """Merge window partials of the same (key, window) from several frames (live state + a new batch)."""
    return _merge(pl.concat(frames), metric, with_offsets)


def window_results(windows: pl.DataFrame, metric: MetricSpec) -> pl.DataFrame:
    """RESULTS rows of finished windows, ordered by key and window start."""
    return windows.sort("key", "window").select(
        pl.col("key"),
        pl.lit(metric.name, dtype=pl.String).alias("metric"),
        pl.col("window"),
        pl.col("window").alias("time_ms"),
        value_expr(metric).alias("value"),
    )


def empty_windows(metric: MetricSpec, *, with_offsets: bool = False) -> pl.DataFrame:
    """An empty frame of window partials for ``metric``."""
    schema: dict[str, pl.DataType] = {"key": pl.String(), "window": pl.Int64(), "end": pl.Int64()}
    schema.update(partial_schema([metric]))
    if with_offsets:
        schema.update({"partition": pl.Int32(), "first_offset": pl.Int64(), "last_offset": pl.Int64()})
    return pl.DataFrame(schema=schema)
