"""Count windows (the legacy ``sma``): every aggregation over the last ``n`` events of a key, one result per event.

Rows of a key are contiguous and in processing order (the recompute: event time, then seq; the live worker:
arrival order); ``pos`` is a row's position in its key. A key's first ``n - 1`` events aggregate the events
so far. Up to ``SHIFT_MAX_N`` the window is built from shifted columns, oldest first, like a deque, so the
recompute and the live worker (which prepends its kept tail) give bit-identical values; above it polars'
rolling functions. The result's window id is the event's seq, or its event time when the pipeline has none.
With ``partial = false`` a key's first ``n - 1`` events have no result (the window fires once full, as Quix
Streams' ``sliding_count_window(n).final()`` and Flink's ``countWindow(n, 1)`` do).
"""

from __future__ import annotations

import polars as pl

from recovery.spec import MetricSpec

# Above this n the window uses polars' rolling functions instead of one shifted column per slot.
SHIFT_MAX_N = 64


def position_in_group(group: pl.Expr) -> pl.Expr:
    """0-based row number within runs of equal ``group`` values (rows of a group must be contiguous)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    start = pl.when((group != group.shift(1)).fill_null(True)).then(idx).forward_fill()
    return idx - start


def run_id(pos: pl.Expr) -> pl.Expr:
    """A run id per contiguous group, from the position column (a new run starts where pos is 0)."""
    return (pos == 0).cum_sum()


def window_id() -> pl.Expr:
    """The window id of a count-window result: the event's seq, else its event time."""
    return pl.coalesce(pl.col("seq"), pl.col("ts"))


def _shifted(metric: MetricSpec, pos: pl.Expr, short: pl.Expr | None) -> list[tuple[pl.Expr, int]]:
    """(in-window condition, shift) per slot of the window, oldest slot first."""
    assert metric.n is not None
    n = metric.n
    slots = []
    for j in reversed(range(n)):
        take = pos >= j if short is None or j < n - 1 else (pos >= j) & ~short
        slots.append((take, j))
    return slots


def _sum(x: pl.Expr, slots: list[tuple[pl.Expr, int]]) -> pl.Expr:
    total: pl.Expr = pl.lit(0.0)
    for take, j in slots:
        total = total + pl.when(take).then(x.shift(j)).otherwise(0.0)
    return total


def _rolling(x: pl.Expr, how: str, n: int, pos: pl.Expr, short: pl.Expr | None) -> pl.Expr:
    def over(size: int) -> pl.Expr:
        size = max(size, 1)
        if how == "std":
            return x.rolling_std(size, min_samples=1).over(run_id(pos))
        return getattr(x, f"rolling_{how}")(size, min_samples=1).over(run_id(pos))

    full = over(n)
    return full if short is None else pl.when(short).then(over(n - 1)).otherwise(full)


def count_window_exprs(metric: MetricSpec, pos: pl.Expr, short: pl.Expr | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(value, count) of a count-window metric per row; ``short`` (optional boolean) marks rows computed
    over ``n - 1`` events (the simulator's bad-deploy fault).
    """
    assert metric.n is not None
    n, agg = metric.n, metric.agg
    n_row: pl.Expr = pl.lit(n, dtype=pl.Int64)
    if short is not None:
        n_row = pl.when(short).then(pl.lit(max(n - 1, 1), dtype=pl.Int64)).otherwise(n_row)
    count = pl.min_horizontal(pos + 1, n_row)
    x = pl.col(metric.field) if metric.field else pl.lit(1.0)
    small = n <= SHIFT_MAX_N
    slots = _shifted(metric, pos, short) if small else []
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    value: pl.Expr
    if agg == "count":
        value = count
    elif agg in ("sum", "mean"):
        total = _sum(x, slots) if small else _rolling(x, "sum", n, pos, short)
        value = total if agg == "sum" else total / count
    elif agg == "weighted_mean":
        w = pl.col(str(metric.weight_field))
        xw, ws = (
            (_sum(x * w, slots), _sum(w, slots))
            if small
            else (
                _rolling(x * w, "sum", n, pos, short),
                _rolling(w, "sum", n, pos, short),
            )
        )
        value = pl.when(ws == 0).then(None).otherwise(xw / ws)
    elif agg in ("min", "max"):
        if small:
            parts = [pl.when(take).then(x.shift(j)) for take, j in slots]
            value = pl.min_horizontal(parts) if agg == "min" else pl.max_horizontal(parts)
        else:
            value = _rolling(x, agg, n, pos, short)
    elif agg == "first":
        value = x.gather(idx - count + 1)
    elif agg == "last":
        value = x
    else:  # stddev: two passes over the window (sample, n - 1; null below two events)
        if small:
            mean = _sum(x, slots) / count
            sq: pl.Expr = pl.lit(0.0)
            for take, j in slots:
                sq = sq + pl.when(take).then((x.shift(j) - mean) ** 2).otherwise(0.0)
            value = (sq / (count - 1)).sqrt()
        else:
            value = _rolling(x, "std", n, pos, short)
        value = pl.when(count < 2).then(None).otherwise(value)
    return value.cast(pl.Float64), count


def count_window_results(ordered: pl.DataFrame, metric: MetricSpec, *, group: str = "key") -> pl.DataFrame:
    """RESULTS of a count-window metric; ``ordered`` holds each key's events contiguously, in processing order."""
    pos = position_in_group(pl.col(group))
    value, _ = count_window_exprs(metric, pl.col("_pos"))
    framed = ordered.with_columns(_pos=pos)
    if not metric.emits_partial:
        assert metric.n is not None
        framed = framed.with_columns(_value=value).filter(pl.col("_pos") >= metric.n - 1)
        value = pl.col("_value")
    return framed.select(
        pl.col("key"),
        pl.lit(metric.name, dtype=pl.String).alias("metric"),
        window_id().alias("window"),
        pl.col("ts").alias("time_ms"),
        value.alias("value"),
    )
