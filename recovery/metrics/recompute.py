"""Recompute truth: every metric of the spec over valid, deduplicated events, vectorised with polars.

Truth is what a fault-free live worker would publish: each key's events in event-time order (ties by seq),
every valid event included. Count windows (:mod:`~recovery.metrics.counts`), tumbling and hopping windows
(:mod:`~recovery.metrics.windows`), sessions (:mod:`~recovery.metrics.sessions`) and user functions
(:mod:`~recovery.metrics.functions`) all run over the same ordered frame. ``emulate_grace=True`` instead
applies the live worker's grace policy to tumbling and hopping windows (events whose windows were all closed
when they arrived, in offset order per partition, are dropped), which shows what the live worker published
for them when nothing else went wrong.
"""

from __future__ import annotations

import polars as pl

from recovery.errors import DataError
from recovery.frames import RESULTS, conform, empty, events_schema
from recovery.metrics.counts import count_window_results
from recovery.metrics.functions import function_results
from recovery.metrics.sessions import session_results
from recovery.metrics.windows import (
    grid_of,
    pane_groups,
    pane_sums,
    watermark_seen_before,
    window_end,
    window_results,
    windows_from_panes,
)
from recovery.spec import MetricSpec, PipelineSpec

_COMPOSITE_BITS = 62
KEY_RUN = "_key_run"  # integer id of each key's run of rows in event-time order


def is_event_time_ordered(events: pl.DataFrame) -> bool:
    """True when rows are sorted by key, then event time, then seq."""
    if events.height < 2:
        return True
    k, t, s = pl.col("key"), pl.col("ts"), pl.col("seq")
    ordered = (k > k.shift(1)) | ((k == k.shift(1)) & ((t > t.shift(1)) | ((t == t.shift(1)) & (s >= s.shift(1)))))
    return bool(events.select(ordered.fill_null(True).all()).item())


def order_by_event_time(events: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by key, event time, seq (stable); returned as is when already in that order."""
    n = events.height
    if n < 2:
        return events
    # Sorting on one integer is several times faster than on (string, int, int): encode (key rank, ts) into one
    # Int64 when it fits (and the checks compare integers, not strings), and break the remaining ties by seq
    keys = events.get_column("key").unique().sort()
    ts_min, ts_max = events.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
    key_bits = max(1, (keys.len() - 1).bit_length())
    ts_bits = max(1, (ts_max - ts_min).bit_length())
    if keys.null_count() or key_bits + ts_bits > _COMPOSITE_BITS:
        if is_event_time_ordered(events):
            return events
        return events.sort("key", "ts", "seq", maintain_order=True)
    rank = pl.col("key").cast(pl.Enum(keys)).to_physical().cast(pl.Int64)
    composite = rank * (1 << ts_bits) + (pl.col("ts") - ts_min)
    c, s = pl.col("_c"), pl.col("seq")
    in_order = ((c > c.shift(1)) | ((c == c.shift(1)) & (s >= s.shift(1)))).fill_null(True).all()
    marked = events.select(composite.alias("_c"), "seq")
    if marked.select(in_order).item():
        return events
    row_bits = (n - 1).bit_length()
    if key_bits + ts_bits + row_bits <= _COMPOSITE_BITS:
        # with the row number in the low bits every value is distinct: an unstable sort keeps arrival order
        packed = marked.select((c * (1 << row_bits) + pl.int_range(pl.len(), dtype=pl.Int64)).sort()).to_series()
        rows = packed & ((1 << row_bits) - 1)
        if marked[rows].select(in_order).item():  # ties in (key, ts) usually arrive in seq order already
            return events[rows]
    return events.with_columns(composite.alias("_c")).sort("_c", "seq", maintain_order=True).drop("_c")


def order_by_arrival(events: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by partition, then offset: the order the live worker received them."""
    p, o = pl.col("partition"), pl.col("offset")
    arrived = (p > p.shift(1)) | ((p == p.shift(1)) & (o >= o.shift(1)))
    if events.height < 2 or events.select(arrived.fill_null(True).all()).item():
        return events
    return events.sort(p.cast(pl.Int64) * (1 << 40) + o, maintain_order=True)


def _check_range(from_ms: int | None, to_ms: int | None) -> None:
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise DataError(f"empty range [{from_ms}, {to_ms})", hint="from must be before to (epoch ms, to exclusive)")


def trim(results: pl.DataFrame, metric: MetricSpec, from_ms: int | None, to_ms: int | None) -> pl.DataFrame:
    """Keep the results inside [from_ms, to_ms): count windows and per-key functions by event time, time
    windows when fully inside, sessions when they start at or after ``from_ms`` and can take no event at or
    after ``to_ms`` (last event + gap before it).
    """
    kind = metric.window_kind
    lo, hi = pl.col("time_ms"), pl.col("time_ms")
    if kind in ("tumbling", "hopping"):
        lo, hi = pl.col("window"), window_end(pl.col("window"), metric) - 1
    elif kind == "session":
        assert metric.gap_ms is not None
        lo, hi = pl.col("window"), pl.col("time_ms") + metric.gap_ms
    cond = pl.lit(True)
    if from_ms is not None:
        cond = cond & (lo >= from_ms)
    if to_ms is not None:
        cond = cond & (hi < to_ms)
    return results.filter(cond)


def _windows_with_grace(arrival: pl.DataFrame, metric: MetricSpec) -> pl.DataFrame:
    grid = grid_of(metric)
    with_floor = arrival.with_columns(grid.first_open(pl.col("_seen") - metric.grace_ms).alias("_floor"))
    kept = with_floor.filter(~grid.is_late(pl.col("ts"), pl.col("_floor")))
    panes = pane_sums(kept, grid, [metric], floor="_floor")
    return windows_from_panes(panes, metric, grid)


def recompute(
    events: pl.DataFrame,
    spec: PipelineSpec,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    emulate_grace: bool = False,
    presorted: bool = False,
) -> pl.DataFrame:
    """RESULTS of every metric of ``spec`` over ``events`` (EVENTS frame: valid, deduplicated).

    ``presorted``: the caller guarantees ``events`` are in event-time order per key (as :func:`dedup` returns
    them), which skips checking it.

    Results are trimmed to [from_ms, to_ms) when given (see :func:`trim`); pass events from earlier (the
    lookback) so the first results in range are complete. Rows come per metric in spec order, then by key,
    then by event time.
    """
    _check_range(from_ms, to_ms)
    schema = events_schema(spec.value_fields)
    missing = [name for name in schema if name not in events.columns]
    if missing:
        raise DataError(f"events frame lacks column(s) {', '.join(missing)}", hint="pass an EVENTS frame")
    frame = conform(events, schema)
    if frame.height == 0:
        return empty(RESULTS)
    functions = any(m.agg == "function" for m in spec.metrics)
    values = sorted({c for m in spec.metrics for c in m.value_columns})
    used = frame if functions else frame.select("key", "seq", "ts", *values)  # sort only what is used
    ordered = used if presorted else order_by_event_time(used)
    # one integer run id per key: every later "same key as the row before?" compares integers, not strings
    key = pl.col("key")
    ordered = ordered.with_columns((key != key.shift(1)).fill_null(True).cum_sum().alias(KEY_RUN))
    by_metric: dict[str, pl.DataFrame] = {}
    for m in spec.metrics:
        if m.agg == "function":
            by_metric[m.name] = function_results(ordered, m)
        elif m.window_kind == "count":
            by_metric[m.name] = count_window_results(ordered, m, group=KEY_RUN)
        elif m.window_kind == "session":
            by_metric[m.name] = session_results(ordered, m, group=KEY_RUN)
    windowed = [m for m in spec.metrics if m.is_windowed and m.agg != "function"]
    if windowed and emulate_grace:
        arrival = order_by_arrival(frame)
        arrival = arrival.with_columns(watermark_seen_before(arrival).alias("_seen"))
        for m in windowed:
            by_metric[m.name] = window_results(_windows_with_grace(arrival, m), m)
    elif windowed:
        for grid, group in pane_groups(windowed):
            panes = pane_sums(ordered, grid, group, ordered=True, group=KEY_RUN)
            for m in group:
                by_metric[m.name] = window_results(windows_from_panes(panes, m, grid), m)
    parts = [trim(by_metric[m.name], m, from_ms, to_ms) for m in spec.metrics]
    return conform(pl.concat(parts), RESULTS)
