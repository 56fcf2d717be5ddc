"""User-defined metrics: ``function = "module:name"``, a Python function called with a key's events.

The contract (docs/semantics.md):

- it gets a polars DataFrame of one key's events in event-time order (ties by seq, then arrival): the
  EVENTS columns ``partition, offset, timestamp_ms, event_id, key, seq, ts`` and the value columns;
- without a ``window`` it gets all of the key's events and returns a DataFrame with one row per result:
  ``window`` (Int64, the result's id) and ``value`` (Float64, null allowed), optionally ``time_ms`` (the
  result's event time, ``window`` when absent); a result belongs to a range when its ``time_ms`` is in it;
- with ``window = "tumbling" | "hopping" | "session"`` it gets the events of one window of the key and
  returns the window's value: a number or None.

It must be deterministic: the recompute may call it on any split of the work. Whatever it raises stops
the run with a DataError naming the metric, the key and the window.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import polars as pl

from recovery.errors import DataError, SpecError
from recovery.frames import EVENTS, RESULTS, empty
from recovery.metrics.sessions import session_ids
from recovery.metrics.windows import grid_of
from recovery.spec import MetricSpec


def resolve(metric: MetricSpec) -> Callable[[pl.DataFrame], Any]:
    """The callable named by ``metric.function`` (``module:name``, importable from the Python path)."""
    assert metric.function is not None
    module_name, _, attr = metric.function.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(
            f"metric {metric.name!r}: cannot import {module_name!r} ({exc})",
            hint="put the module on PYTHONPATH or install its package",
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError(f"metric {metric.name!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def _call(metric: MetricSpec, fn: Callable[[pl.DataFrame], Any], events: pl.DataFrame, where: str) -> Any:
    try:
        return fn(events)
    except Exception as exc:  # the user's code: any failure stops the run, named
        raise DataError(
            f"metric {metric.name!r}: {metric.function} raised {type(exc).__name__}: {exc} ({where})",
            hint="fix the function or the events it was given; nothing was published",
        ) from exc


def _columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c in EVENTS or not c.startswith("_")]


def _per_key(ordered: pl.DataFrame, metric: MetricSpec, fn: Callable[[pl.DataFrame], Any]) -> pl.DataFrame:
    parts = []
    cols = _columns(ordered)
    for (key,), events in ordered.group_by("key", maintain_order=True):
        out = _call(metric, fn, events.select(cols), f"key {key!r}")
        if not isinstance(out, pl.DataFrame) or not {"window", "value"} <= set(out.columns):
            raise DataError(
                f"metric {metric.name!r}: {metric.function} returned {type(out).__name__} for key {key!r}",
                hint="without a window it must return a polars DataFrame with columns window and value",
            )
        time = pl.col("time_ms") if "time_ms" in out.columns else pl.col("window")
        parts.append(
            out.select(
                pl.lit(key, dtype=pl.String).alias("key"),
                pl.lit(metric.name, dtype=pl.String).alias("metric"),
                pl.col("window").cast(pl.Int64),
                time.cast(pl.Int64).alias("time_ms"),
                pl.col("value").cast(pl.Float64),
            )
        )
    return pl.concat(parts) if parts else empty(RESULTS)


def _assign(ordered: pl.DataFrame, metric: MetricSpec) -> pl.DataFrame:
    """Events with ``_window`` (start ms) and ``_time`` (result time), one row per window they belong to."""
    if metric.window_kind == "session":
        framed = ordered.with_columns(session_ids(metric).alias("_session"))
        return framed.with_columns(
            pl.col("ts").min().over("_session").alias("_window"), pl.col("ts").max().over("_session").alias("_time")
        )
    grid = grid_of(metric)
    pane = grid.pane_of(pl.col("ts"))
    parts = []
    for k in range(-(-grid.size // grid.hop)):
        start = grid.last_start(pane) - k * grid.hop
        parts.append(ordered.filter(start > pane - grid.size).with_columns(grid.start_ms(start).alias("_window")))
    framed = pl.concat(parts).sort("_window", maintain_order=True).sort("key", maintain_order=True)
    return framed.with_columns(pl.col("_window").alias("_time"))


def function_results(ordered: pl.DataFrame, metric: MetricSpec) -> pl.DataFrame:
    """RESULTS of a user-defined metric; ``ordered`` holds each key's events in event-time order."""
    fn = resolve(metric)
    if metric.window_kind is None:
        return _per_key(ordered, metric, fn)
    framed = _assign(ordered, metric)
    cols = _columns(ordered)
    rows: list[tuple[Any, ...]] = []
    for (key, window, time), events in framed.group_by("key", "_window", "_time", maintain_order=True):
        value = _call(metric, fn, events.select(cols), f"key {key!r}, window {window}")
        if value is not None and not isinstance(value, int | float):
            raise DataError(
                f"metric {metric.name!r}: {metric.function} returned {type(value).__name__} for key {key!r}, "
                f"window {window}",
                hint="per window it must return a number or None",
            )
        rows.append((key, metric.name, window, time, None if value is None else float(value)))
    return pl.DataFrame(rows, schema=RESULTS, orient="row") if rows else empty(RESULTS)
