"""Session windows: a key's events separated by no more than ``gap_ms`` of inactivity form one session.

Events are taken in event-time order per key; an event starts a new session when it comes more than
``gap_ms`` after the previous event of its key (exactly ``gap_ms`` later still joins). A session's result
has ``window`` = its first event time and ``time_ms`` = its last event time; it is final once no event can
join it any more: the watermark passes ``last + gap_ms``.
"""

from __future__ import annotations

import polars as pl

from recovery.metrics.aggregations import event_aggs, value_expr
from recovery.spec import MetricSpec


def session_ids(metric: MetricSpec, group: str = "key") -> pl.Expr:
    """A session number per row of rows ordered by key then event time (``group`` changes with the key)."""
    assert metric.gap_ms is not None
    k, t = pl.col(group), pl.col("ts")
    starts = (k != k.shift(1)) | ((t - t.shift(1)) > metric.gap_ms)
    return starts.fill_null(True).cum_sum()


def session_results(ordered: pl.DataFrame, metric: MetricSpec, *, group: str = "key") -> pl.DataFrame:
    """RESULTS of a session-window metric; ``ordered`` holds each key's events in event-time order."""
    framed = ordered.with_columns(session_ids(metric, group).alias("_session"))
    sessions = framed.group_by("_session", maintain_order=True).agg(
        pl.col("key").first(),
        pl.col("ts").min().alias("window"),
        pl.col("ts").max().alias("time_ms"),
        *event_aggs([metric]),
    )
    return sessions.select(
        pl.col("key"),
        pl.lit(metric.name, dtype=pl.String).alias("metric"),
        pl.col("window"),
        pl.col("time_ms"),
        value_expr(metric).alias("value"),
    )
