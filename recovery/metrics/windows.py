"""The window maths of every metric kind, shared by the live worker and the recompute so they cannot drift.

One set of polars functions defines which windows an event belongs to and how a window's value is computed:

- ``sma``: the mean of the last ``n`` events of a key in processing order (the recompute orders by event
  time then seq; the live worker takes arrival order); a key's first ``n - 1`` events get the mean so far.
  The sum runs oldest to newest, so both paths give bit-identical values.
- ``mean`` / ``vwap``: epoch-aligned windows ``[start, start + window_ms)`` with ``start`` a multiple of
  ``hop_ms``. Events are first summed per pane (``gcd(window_ms, hop_ms)`` wide, each event in exactly one
  pane), then panes are added up into the windows that contain them. VWAP over zero volume is null.
- Grace: the watermark of a partition is the max event time seen there minus ``grace_ms``; a window is closed
  once the watermark reaches its end. An event only feeds windows that are still open when it arrives; an
  event whose windows are all closed is late (dropped and counted by the live worker).

The recompute runs these functions once over all events; :class:`LiveState` runs the same functions on
each polled batch and keeps what must survive between batches: the last ``n - 1`` events per key (the
deque of the sma) and the sums of the open windows per (key, window start).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import polars as pl

from recovery.frames import EVENTS, RESULTS
from recovery.spec import MetricSpec

# Optional boolean column of a live batch: rows where it is true compute their sma over n - 1 events
# (the "window one event short" bug of the simulator's bad-deploy fault).
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

# The sma state kept per key between batches (the deque), in processing order.
TAIL = pl.Schema([(name, EVENTS[name]) for name in ("key", "partition", "offset", "ts", "seq", "price", "volume")])

# A fill value below every window start: "no window is closed yet".
NO_FLOOR = -(2**62)

# Above this n the sma uses polars' rolling sum instead of one shifted column per window slot.
SHIFT_SUM_MAX_N = 64


# ----------------------------------------------------------------------------------------------------------
# Window assignment (time windows)


def pane_ms(metric: MetricSpec) -> int:
    """Width of the panes a time-window metric is summed over: every window is a whole number of panes."""
    assert metric.window_ms is not None and metric.hop_ms is not None
    return math.gcd(metric.window_ms, metric.hop_ms)


def common_pane_ms(metrics: Iterable[MetricSpec]) -> int:
    """A pane width that serves every given time-window metric at once."""
    return math.gcd(*(pane_ms(m) for m in metrics))


def last_window_start(ts: pl.Expr, hop_ms: int) -> pl.Expr:
    """Start of the latest window containing ``ts``: the largest multiple of ``hop_ms`` not after it."""
    return (ts // hop_ms) * hop_ms


def first_open_start(watermark: pl.Expr, metric: MetricSpec) -> pl.Expr:
    """Start of the oldest window still open at ``watermark`` (end > watermark); NO_FLOOR for a null watermark."""
    assert metric.window_ms is not None and metric.hop_ms is not None
    hop = metric.hop_ms
    return (((watermark - metric.window_ms) // hop) * hop + hop).fill_null(NO_FLOOR)


def is_late(ts: pl.Expr, floor: pl.Expr, metric: MetricSpec) -> pl.Expr:
    """True when every window of an event at ``ts`` starts before ``floor`` (all closed when it arrived)."""
    assert metric.hop_ms is not None
    return floor > last_window_start(ts, metric.hop_ms)


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
# sma


def position_in_group(group: pl.Expr) -> pl.Expr:
    """0-based row number within runs of equal ``group`` values (rows of a group must be contiguous)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    start = pl.when((group != group.shift(1)).fill_null(True)).then(idx).forward_fill()
    return idx - start


def sma_exprs(metric: MetricSpec, pos: pl.Expr, short: pl.Expr | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(value, count) of an sma over rows contiguous per key, ``pos`` the row's position in its key.

    ``short`` (optional boolean expression) marks rows computed over ``n - 1`` events.
    """
    assert metric.n is not None
    n = metric.n
    x = pl.col(metric.field)
    n_row: pl.Expr = pl.lit(n, dtype=pl.Int64)
    if short is not None:
        n_row = pl.when(short).then(pl.lit(max(n - 1, 1), dtype=pl.Int64)).otherwise(n_row)
    count = pl.min_horizontal(pos + 1, n_row)
    if n <= SHIFT_SUM_MAX_N:
        total: pl.Expr = pl.lit(0.0)
        for j in reversed(range(n)):  # oldest first, like summing a deque
            take = pos >= j if short is None or j < n - 1 else (pos >= j) & ~short
            total = total + pl.when(take).then(x.shift(j)).otherwise(0.0)
    else:
        run = position_in_group_id(pos)
        total = x.rolling_sum(n, min_samples=1).over(run)
        if short is not None:
            total = pl.when(short).then(x.rolling_sum(max(n - 1, 1), min_samples=1).over(run)).otherwise(total)
    return total / count, count


def position_in_group_id(pos: pl.Expr) -> pl.Expr:
    """A run id per contiguous group, from the position column (a new run starts where pos is 0)."""
    return (pos == 0).cum_sum()


def sma_results(ordered: pl.DataFrame, metric: MetricSpec, *, group: str = "key") -> pl.DataFrame:
    """RESULTS of an sma metric; ``ordered`` holds each key's events contiguously, in processing order."""
    pos = position_in_group(pl.col(group))
    value, _ = sma_exprs(metric, pl.col("_pos"))
    return ordered.with_columns(_pos=pos).select(
        pl.col("key"),
        pl.lit(metric.name, dtype=pl.String).alias("metric"),
        pl.col("seq").alias("window"),
        pl.col("ts").alias("time_ms"),
        value.alias("value"),
    )


# ----------------------------------------------------------------------------------------------------------
# mean and vwap


def _sum_columns(metrics: Iterable[MetricSpec]) -> dict[str, pl.Expr]:
    """Column name -> per-event summand, for every sum the given time-window metrics need."""
    sums: dict[str, pl.Expr] = {}
    for m in metrics:
        if m.kind == "mean":
            sums[f"sum_{m.field}"] = pl.col(m.field)
        else:  # vwap: volume-weighted mean of the field
            sums[f"sum_{m.field}_x_volume"] = pl.col(m.field) * pl.col("volume")
            sums["sum_volume"] = pl.col("volume")
    return sums


def _combine(frame: pl.DataFrame, by: Sequence[str], sums: Iterable[str], with_offsets: bool) -> pl.DataFrame:
    aggs = [pl.col("count").sum(), *(pl.col(s).sum() for s in sums)]
    if with_offsets:
        aggs += [pl.col("partition").first(), pl.col("first_offset").min(), pl.col("last_offset").max()]
    return frame.group_by(list(by)).agg(aggs)


def pane_sums(
    events: pl.DataFrame,
    width_ms: int,
    metrics: Sequence[MetricSpec],
    *,
    floor: str | None = None,
    with_offsets: bool = False,
    ordered: bool = False,
    group: str = "key",
) -> pl.DataFrame:
    """Count and sums per (key, pane[, floor]); ``floor`` names a column with each event's oldest open window.

    ``ordered``: rows are sorted by key then event time, so each pane is one run of rows (faster grouping);
    ``group`` then names a column that changes exactly where the key does (an integer run id is fastest).
    """
    pane = ((pl.col("ts") // width_ms) * width_ms).alias("pane")
    aggs = [pl.len().cast(pl.Int64).alias("count"), *(e.sum().alias(n) for n, e in _sum_columns(metrics).items())]
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


def windows_from_panes(panes: pl.DataFrame, metric: MetricSpec, *, with_offsets: bool = False) -> pl.DataFrame:
    """Sums per (key, window start) for ``metric`` from pane sums (panes no wider than its pane_ms)."""
    assert metric.window_ms is not None and metric.hop_ms is not None
    window, hop = metric.window_ms, metric.hop_ms
    sums = list(_sum_columns([metric]))
    keep = ["key", "pane", "count", *sums] + (["partition", "first_offset", "last_offset"] if with_offsets else [])
    has_floor = "floor" in panes.columns
    base = panes.select(keep + (["floor"] if has_floor else []))
    parts = []
    for k in range(-(-window // hop)):  # candidate starts: the latest, then one hop earlier each time
        start = last_window_start(pl.col("pane"), hop) - k * hop
        cond = start > pl.col("pane") - window
        if has_floor:
            cond = cond & (start >= pl.col("floor"))
        parts.append(base.filter(cond).with_columns(start.alias("window")))
    exploded = pl.concat(parts) if parts else base.with_columns(pl.lit(0).alias("window"))
    return _combine(exploded, ["key", "window"], sums, with_offsets)


def merge_windows(frames: Sequence[pl.DataFrame], metric: MetricSpec, *, with_offsets: bool = False) -> pl.DataFrame:
    """Add up window sums of the same (key, window) from several frames (live state + a new batch)."""
    return _combine(pl.concat(frames), ["key", "window"], _sum_columns([metric]), with_offsets)


def window_value(metric: MetricSpec) -> pl.Expr:
    """The value of a window from its sums: mean = sum / count; vwap = sum(x * volume) / sum(volume), or null."""
    if metric.kind == "mean":
        return pl.col(f"sum_{metric.field}") / pl.col("count")
    volume = pl.col("sum_volume")
    return pl.when(volume == 0).then(None).otherwise(pl.col(f"sum_{metric.field}_x_volume") / volume)


def window_results(windows: pl.DataFrame, metric: MetricSpec) -> pl.DataFrame:
    """RESULTS rows of finished windows, ordered by key and window start."""
    return windows.sort("key", "window").select(
        pl.col("key"),
        pl.lit(metric.name, dtype=pl.String).alias("metric"),
        pl.col("window"),
        pl.col("window").alias("time_ms"),
        window_value(metric).cast(pl.Float64).alias("value"),
    )


def empty_windows(metric: MetricSpec, *, with_offsets: bool = False) -> pl.DataFrame:
    """An empty frame of window sums for ``metric``."""
    schema: dict[str, pl.DataType] = {"key": pl.String(), "window": pl.Int64(), "count": pl.Int64()}
    schema.update({name: pl.Float64() for name in _sum_columns([metric])})
    if with_offsets:
        schema.update({"partition": pl.Int32(), "first_offset": pl.Int64(), "last_offset": pl.Int64()})
    return pl.DataFrame(schema=schema)
