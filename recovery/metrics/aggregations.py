"""Aggregations as mergeable partial aggregates, shared by every window kind, the recompute and the live worker.

A window's events are first reduced to partial columns per pane (or per batch), which then merge into the
window's: ``count``; ``sum_<f>`` (sum, mean); ``sum_<f>_x_<w>`` and ``sum_<w>`` (weighted mean); ``min_<f>``,
``max_<f>``; ``first_<f>`` / ``last_<f>`` with the event time and seq of that event (``first_ts``,
``first_seq``, ``last_ts``, ``last_seq``), so merging keeps the earliest / latest event in (ts, seq) order;
``mean_<f>`` and ``m2_<f>`` (sum of squared deviations, merged with Chan's parallel formula) for stddev,
which stays accurate where a sum of squares would cancel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from recovery.spec import MetricSpec

ORDER = ("ts", "seq")  # a key's event order; ties on both keep the arrival order


def partials(metrics: Iterable[MetricSpec]) -> dict[str, tuple[str, pl.Expr]]:
    """Partial column name -> (merge rule, per-event input) for ``metrics``; rules: sum, min, max, first,
    last, mean, m2.
    """
    cols: dict[str, tuple[str, pl.Expr]] = {}
    for m in metrics:
        f, w, agg = m.field, m.weight_field, m.agg
        if agg in ("sum", "mean"):
            cols[f"sum_{f}"] = ("sum", pl.col(str(f)))
        elif agg == "weighted_mean":
            cols[f"sum_{f}_x_{w}"] = ("sum", pl.col(str(f)) * pl.col(str(w)))
            cols[f"sum_{w}"] = ("sum", pl.col(str(w)))
        elif agg in ("min", "max"):
            cols[f"{agg}_{f}"] = (agg, pl.col(str(f)))
        elif agg in ("first", "last"):
            cols.update({f"{agg}_{c}": (agg, pl.col(c)) for c in (*ORDER, str(f))})
        elif agg == "stddev":
            cols.update({f"mean_{f}": ("mean", pl.col(str(f))), f"m2_{f}": ("m2", pl.col(str(f)))})
    return cols


def partial_columns(metrics: Iterable[MetricSpec]) -> dict[str, str]:
    """Partial column name -> merge rule for ``metrics``."""
    return {name: rule for name, (rule, _) in partials(metrics).items()}


def _event_expr(name: str, rule: str, x: pl.Expr) -> pl.Expr:
    """The partial ``name`` over a group of event rows, ``x`` its per-event input."""
    if rule in ("sum", "min", "max", "mean"):
        return getattr(x, rule)().alias(name)
    if rule in ("first", "last"):
        ordered = x.sort_by(list(ORDER), maintain_order=True, nulls_last=True)
        return (ordered.first() if rule == "first" else ordered.last()).alias(name)
    return ((x - x.mean()) ** 2).sum().alias(name)  # m2


def event_aggs(metrics: Iterable[MetricSpec]) -> list[pl.Expr]:
    """Aggregations reducing a group of events to ``count`` and the partials of ``metrics``."""
    return [pl.len().cast(pl.Int64).alias("count"), *(_event_expr(n, r, x) for n, (r, x) in partials(metrics).items())]


def merge_aggs(metrics: Iterable[MetricSpec]) -> list[pl.Expr]:
    """Aggregations merging groups of partial rows (``count`` included) into one partial row each."""
    out = [pl.col("count").sum()]
    n = pl.col("count")
    for name, rule in partial_columns(metrics).items():
        col = pl.col(name)
        if rule == "sum":
            out.append(col.sum())
        elif rule in ("min", "max"):
            out.append(getattr(col, rule)())
        elif rule in ("first", "last"):
            prefix = rule
            ordered = col.sort_by([f"{prefix}_ts", f"{prefix}_seq"], maintain_order=True, nulls_last=True)
            out.append(ordered.first() if rule == "first" else ordered.last())
        elif rule == "mean":
            out.append(((n * col).sum() / n.sum()).alias(name))
        else:  # m2: sum of the parts' m2 plus their spread around the merged mean
            mean = pl.col(f"mean_{name.removeprefix('m2_')}")
            merged = (n * mean).sum() / n.sum()
            out.append((col.sum() + (n * (mean - merged) ** 2).sum()).alias(name))
    return out


def value_expr(metric: MetricSpec) -> pl.Expr:
    """A window's value from its merged partials (Float64; null where the aggregation has none)."""
    f, w, agg = metric.field, metric.weight_field, metric.agg
    count = pl.col("count")
    if agg == "count":
        value = count
    elif agg == "sum":
        value = pl.col(f"sum_{f}")
    elif agg == "mean":
        value = pl.col(f"sum_{f}") / count
    elif agg in ("min", "max", "first", "last"):
        value = pl.col(f"{agg}_{f}")
    elif agg == "stddev":  # sample standard deviation (n - 1), null below two events
        value = pl.when(count < 2).then(None).otherwise((pl.col(f"m2_{f}") / (count - 1)).sqrt())
    else:  # weighted_mean: null over zero total weight
        total = pl.col(f"sum_{w}")
        value = pl.when(total == 0).then(None).otherwise(pl.col(f"sum_{f}_x_{w}") / total)
    return value.cast(pl.Float64)


def partial_schema(metrics: Sequence[MetricSpec]) -> dict[str, pl.DataType]:
    """dtypes of ``count`` and the partial columns of ``metrics``."""
    schema: dict[str, pl.DataType] = {"count": pl.Int64()}
    for name in partial_columns(metrics):
        schema[name] = pl.Int64() if name.endswith(("_ts", "_seq")) else pl.Float64()
    return schema
