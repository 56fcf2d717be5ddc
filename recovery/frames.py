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

# The columns every valid raw event has, before its value columns.
EVENT_BASE = pl.Schema(
    {
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,
        "event_id": pl.String,  # the spec's id field, or a hash of the record value when the events have none
        "key": pl.String,  # a composite key's parts joined by "|"
        "seq": pl.Int64,  # null when the events carry no seq
        "ts": pl.Int64,  # event time, epoch ms
    }
)


def events_schema(values: tuple[str, ...] | list[str]) -> pl.Schema:
    """The EVENTS schema of events with the given value columns (each Float64), in that order."""
    return pl.Schema([*EVENT_BASE.items(), *((name, pl.Float64()) for name in values)])


# A valid raw event of the toolkit's own tick pipeline (value columns price and volume); other pipelines'
# events have the value columns their spec's [events] values name (``events_schema(spec.value_fields)``).
EVENTS = events_schema(("price", "volume"))

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


def events_like(columns: list[str] | pl.Schema) -> pl.Schema:
    """The EVENTS schema whose value columns are those of ``columns`` beyond the base columns, in their order."""
    names = list(columns.names()) if isinstance(columns, pl.Schema) else list(columns)
    return events_schema([name for name in names if name not in EVENT_BASE and not name.startswith("_")])
