"""Column schemas of the frames passed between steps (replay -> validate -> dedup -> recompute -> compare).

Every step returns frames with exactly these columns and dtypes, also when empty, so steps compose and
tests can use ``polars.testing.assert_frame_equal`` against an explicit schema.
"""

from __future__ import annotations

import polars as pl

# A record as read from a topic (replay output; also what an archive file holds).
RECORDS = pl.Schema(
    {
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,  # the Kafka record timestamp
        "key": pl.Binary,
        "value": pl.Binary,
    }
)

# A valid raw event, canonical column names (spec [fields] maps JSON names onto these).
EVENTS = pl.Schema(
    {
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,
        "event_id": pl.String,
        "key": pl.String,
        "seq": pl.Int64,
        "ts": pl.Int64,  # event time, epoch ms
        "price": pl.Float64,
        "volume": pl.Float64,
    }
)

# A record that failed validation: never dropped silently.
QUARANTINE = pl.Schema(
    {
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,
        "key": pl.String,
        "value": pl.String,  # raw value, lossily decoded and truncated for display
        "reason": pl.String,
    }
)

# One metric result (recomputed truth, or a decoded original output).
# window: seq for sma, window start (epoch ms) for time windows.
# time_ms: event time of the result (sma: the event's ts; time windows: the window start).
RESULTS = pl.Schema(
    {
        "key": pl.String,
        "metric": pl.String,
        "window": pl.Int64,
        "time_ms": pl.Int64,
        "value": pl.Float64,  # null: no value (VWAP over zero volume)
    }
)

# An original output as read back from the output topic: a result plus where it was published.
OUTPUTS = pl.Schema([*RESULTS.items(), ("partition", pl.Int32), ("offset", pl.Int64), ("timestamp_ms", pl.Int64)])

# The join of originals with truth, one row per (key, metric, window).
COMPARISON = pl.Schema(
    {
        "key": pl.String,
        "metric": pl.String,
        "window": pl.Int64,
        "time_ms": pl.Int64,
        "original": pl.Float64,  # the last published value (null when missing)
        "corrected": pl.Float64,  # truth (null when extra, or a null truth value)
        "copies": pl.Int64,  # how many times the result was published
        "conflicting": pl.Boolean,  # published copies disagree with each other
        "status": pl.String,  # ok | missing | wrong | duplicate | extra
    }
)

STATUSES: tuple[str, ...] = ("ok", "missing", "wrong", "duplicate", "extra")

# A correction to publish: an upsert (missing, wrong, conflicting duplicate) or a retraction (extra).
CORRECTIONS = pl.Schema(
    {
        "key": pl.String,
        "metric": pl.String,
        "window": pl.Int64,
        "time_ms": pl.Int64,
        "action": pl.String,  # upsert | retract
        "value": pl.Float64,
        "reason": pl.String,  # the comparison status that caused it
    }
)


def empty(schema: pl.Schema) -> pl.DataFrame:
    """An empty frame with ``schema``."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema`` (column order included)."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def concat_or_empty(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    """The non-empty ``frames`` concatenated, or an empty frame with ``schema`` when there are none."""
    kept = [f for f in frames if f.height]
    return pl.concat(kept) if kept else empty(schema)
