"""Seq gaps: runs of a key's seqs that no valid event and no quarantined record carries, lost upstream unless
they may lie outside what was read (:class:`Coverage`); quarantined records whose seq is unreadable are noted
next to the gaps they may fill."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from recovery.formats import KEY_SEPARATOR, EventsSpec, get_path, parse_path
from recovery.frames import QUARANTINE, conform, empty
from recovery.records.events import as_fields, decode_json
from recovery.spec import FieldsSpec

# A run of seqs of one key that no valid or quarantined record carries: lost upstream. ``malformed_nearby``
# counts quarantined records of the key whose seq is unreadable and which sit between the gap's neighbours
# in the partition (at most ``missing``): they may be the gap's events, malformed rather than lost.
GAPS = pl.Schema(
    {
        "key": pl.String,
        "from_seq": pl.Int64,
        "to_seq": pl.Int64,
        "missing": pl.Int64,
        "malformed_nearby": pl.Int64,
        "outside_range": pl.Boolean,  # the missing seqs may be in the log outside what was read: not lost
    }
)


@dataclass(frozen=True)
class Coverage:
    """What a replay can vouch for when it calls a run of missing seqs lost upstream.

    ``partitions`` maps a partition to ``(floor_ms, from_origin)``: every record before the read's start is
    stamped before ``floor_ms`` (None: unknown), and ``from_origin`` when the read started at offset 0.
    ``until_ms`` is the range end. A run between a key's seqs ``a`` and ``b`` is lost only when no record
    of it can lie outside what was read: ``a``'s event time is at or after the floor (or the read started
    at offset 0), since a key's later seqs happen later and are stamped no earlier than they happen; and
    ``b``'s event time is before ``until_ms``, since records later than the read's slack are out of reach.
    Missing first seqs (1 .. first seen - 1) are reported only when the read started at offset 0.
    Other runs are reported with ``outside_range`` set, never counted as lost.
    """

    partitions: Mapping[int, tuple[int | None, bool]] = field(default_factory=dict)
    until_ms: int | None = None


def _grouped_by_key_and(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` with each key's rows together (keys in no particular order), sorted by ``column`` (an integer)
    within a key, stable; one integer sort when it fits 62 bits."""
    k, c = pl.col("key"), pl.col(column)
    ordered = (k > k.shift(1)) | ((k == k.shift(1)) & (c >= c.shift(1)))
    if frame.height < 2 or frame.select(ordered.fill_null(True).all()).item():
        return frame
    keys = frame.get_column("key").unique()  # a number per key: grouping needs no lexical order
    lo, hi = frame.select(c.min().alias("lo"), c.max().alias("hi")).row(0)
    key_bits, value_bits = max(1, (keys.len() - 1).bit_length()), max(1, (hi - lo).bit_length())
    if keys.null_count() or key_bits + value_bits > 62:
        return frame.sort("key", column, maintain_order=True)
    number = k.replace_strict(keys, pl.int_range(keys.len(), dtype=pl.Int64, eager=True))
    return frame.sort(number * (1 << value_bits) + (c - lo), maintain_order=True)


def quarantined_seqs(quarantine: pl.DataFrame, fields: FieldsSpec | EventsSpec | None = None) -> pl.DataFrame:
    """(key, seq, ts, partition, offset, timestamp_ms) of quarantined records; seq and ts (the event time) are
    null where the raw value does not show them (no rows when the events carry no seq)."""
    if isinstance(fields, EventsSpec):
        if fields.seq is None:
            return pl.DataFrame(schema=_SEEN_SCHEMA)
        if not fields.is_flat_legacy:
            return _quarantined_seqs_nested(quarantine, fields)
        fields = as_fields(fields)
    fields = fields or FieldsSpec()
    if quarantine.height == 0:
        return pl.DataFrame(schema=_SEEN_SCHEMA)
    key_name = re.escape(json.dumps(fields.key))

    def number(name: str) -> pl.Expr:
        pattern = rf"{re.escape(json.dumps(name))}\s*:\s*(\d{{1,18}})\s*[,}}]"
        return pl.col("value").str.extract(pattern).cast(pl.Int64, strict=False)

    seq = number(fields.seq)
    key = pl.coalesce(pl.col("value").str.extract(rf'{key_name}\s*:\s*"([^"\\]*)"'), pl.col("key"))
    found = conform(quarantine, QUARANTINE).select(
        key.alias("key"), seq.alias("seq"), number(fields.time).alias("ts"), "partition", "offset", "timestamp_ms"
    )
    return found.filter(pl.col("key").is_not_null()).cast(_SEEN_SCHEMA)  # type: ignore[arg-type]


_SEEN_SCHEMA = pl.Schema(
    {
        "key": pl.String,
        "seq": pl.Int64,
        "ts": pl.Int64,
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,
    }
)


def _quarantined_seqs_nested(quarantine: pl.DataFrame, layout: EventsSpec) -> pl.DataFrame:
    """:func:`quarantined_seqs` for layouts other than flat JSON: each (rare) quarantined value parsed alone."""
    assert layout.seq is not None
    seq_path = parse_path(layout.seq, "")
    time_path = parse_path(layout.time, "") if layout.time is not None and layout.time_unit == "ms" else None
    key_paths = [parse_path(p, "") for p in layout.key]
    rows = []
    for key, value, partition, offset, ts in (
        conform(quarantine, QUARANTINE).select("key", "value", "partition", "offset", "timestamp_ms").iter_rows()
    ):
        data = decode_json(value.encode() if value else None)
        seq = get_path(data, seq_path) if isinstance(data, dict) else None
        parts = [get_path(data, p) for p in key_paths] if isinstance(data, dict) else []
        if parts and all(isinstance(p, str) and p or isinstance(p, int) and not isinstance(p, bool) for p in parts):
            key = KEY_SEPARATOR.join(str(p) for p in parts)
        when = get_path(data, time_path) if isinstance(data, dict) and time_path is not None else None
        ok_seq = isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**62
        ok_time = isinstance(when, int) and not isinstance(when, bool) and 0 <= when < 2**62
        if key is not None:
            rows.append((key, seq if ok_seq else None, when if ok_time else None, partition, offset, ts))
    return pl.DataFrame(rows, schema=_SEEN_SCHEMA, orient="row")


def seq_gaps(
    events: pl.DataFrame, quarantined: pl.DataFrame | None = None, coverage: Coverage | None = None
) -> pl.DataFrame:
    """GAPS: runs of seqs missing between the seqs a key's events (and quarantined records) carry.

    Without ``coverage`` every run between two seen seqs counts as lost; with it, runs that may lie outside
    what was read are marked ``outside_range`` and missing first seqs are reported when the read started
    at offset 0 (:class:`Coverage`).
    """
    # _lo: the event time a run after this seq starts at or after (unknown for a quarantined record);
    # _hi: a time this seq's event happened at or before (a quarantined record's Kafka timestamp)
    events = events.filter(pl.col("seq").is_not_null())  # events without a seq (the layout has none) have no gaps
    seen = events.select("key", "seq", "partition", "offset", pl.col("ts").alias("_lo"), pl.col("ts").alias("_hi"))
    unreadable = None
    if quarantined is not None and quarantined.height:
        known = quarantined.filter(pl.col("seq").is_not_null()).select(
            "key",
            "seq",
            "partition",
            "offset",
            pl.col("ts").alias("_lo"),  # the event time the record still shows, if any
            pl.min_horizontal("ts", "timestamp_ms").alias("_hi"),
        )
        seen = pl.concat([seen, known.cast(dict(seen.schema))])  # type: ignore[arg-type]
        unreadable = quarantined.filter(pl.col("seq").is_null()).select("key", "partition", "offset")
    if seen.height == 0:
        return empty(GAPS)
    ordered = _grouped_by_key_and(seen, "seq")
    same_seq = (pl.col("key") == pl.col("key").shift(1)) & (pl.col("seq") == pl.col("seq").shift(1))
    if ordered.select(same_seq.any()).item():
        # one row per seq (a valid event and a quarantined record may both show it): the valid copy's place,
        # the tightest bounds any copy gives
        ordered = (
            ordered.with_columns(pl.col("_lo").is_null().alias("_q"))
            .sort("key", "seq", "_q", maintain_order=True)
            .group_by("key", "seq", maintain_order=True)
            .agg(pl.col("partition").first(), pl.col("offset").first(), pl.col("_lo").max(), pl.col("_hi").min())
        )
    if coverage is not None:
        # a key's later seqs happen no earlier: the latest known event time bounds a malformed seq's from below
        ordered = ordered.with_columns(pl.col("_lo").forward_fill().over("key"))
    same_key = pl.col("key") == pl.col("key").shift(-1)
    runs = ordered.with_columns(
        pl.when(same_key).then(pl.col("seq").shift(-1)).alias("_next_seq"),
        pl.when(same_key).then(pl.col("offset").shift(-1)).alias("_next_offset"),
        pl.when(same_key).then(pl.col("_hi").shift(-1)).alias("_next_hi"),
    )
    gaps = runs.filter(pl.col("_next_seq") - pl.col("seq") > 1).with_columns(
        (pl.col("seq") + 1).alias("from_seq"),
        (pl.col("_next_seq") - 1).alias("to_seq"),
        (pl.col("_next_seq") - pl.col("seq") - 1).alias("missing"),
        pl.min_horizontal("offset", "_next_offset").alias("_lo_offset"),
        pl.max_horizontal("offset", "_next_offset").alias("_hi_offset"),
    )
    if coverage is None:
        gaps = gaps.with_columns(pl.lit(False).alias("outside_range"))
    else:
        floors = pl.DataFrame(
            {
                "partition": list(coverage.partitions),
                "_floor": [f for f, _ in coverage.partitions.values()],
                "_origin": [o for _, o in coverage.partitions.values()],
            },
            schema={"partition": pl.Int32, "_floor": pl.Int64, "_origin": pl.Boolean},
        )
        until = pl.lit(coverage.until_ms, dtype=pl.Int64)
        before_end = (pl.col("_next_hi") < until).fill_null(False) if coverage.until_ms is not None else pl.lit(True)
        after_floor = pl.col("_origin").fill_null(False) | (pl.col("_lo") >= pl.col("_floor")).fill_null(False)
        gaps = gaps.join(floors, on="partition", how="left").with_columns(
            (~(after_floor & before_end)).alias("outside_range")
        )
        # a key whose first seen seq is not 1, in a partition read from offset 0: its first seqs never arrived
        firsts = ordered.filter(pl.col("key").is_first_distinct()).join(
            floors.filter("_origin"), on="partition", how="inner"
        )
        first_hi = (pl.col("_hi") < until).fill_null(False) if coverage.until_ms is not None else pl.lit(True)
        leading = firsts.filter((pl.col("seq") > 1) & first_hi).select(
            "key",
            "partition",
            pl.lit(1, dtype=pl.Int64).alias("from_seq"),
            (pl.col("seq") - 1).alias("to_seq"),
            (pl.col("seq") - 1).alias("missing"),
            pl.lit(-1, dtype=pl.Int64).alias("_lo_offset"),
            pl.col("offset").alias("_hi_offset"),
            pl.lit(False).alias("outside_range"),
        )
        cols = leading.columns
        gaps = pl.concat([leading, gaps.select(cols).cast(dict(leading.schema))])  # type: ignore[arg-type]
    if unreadable is not None and unreadable.height and gaps.height:
        nearby = (
            gaps.select("key", "from_seq", "partition", "_lo_offset", "_hi_offset")
            .join(unreadable.rename({"offset": "_q"}), on=["key", "partition"], how="inner")
            .filter(pl.col("_q").is_between(pl.col("_lo_offset"), pl.col("_hi_offset"), closed="none"))
            .group_by("key", "from_seq")
            .agg(pl.len().cast(pl.Int64).alias("_near"))
        )
        gaps = gaps.join(nearby, on=["key", "from_seq"], how="left")
    else:
        gaps = gaps.with_columns(pl.lit(None, dtype=pl.Int64).alias("_near"))
    gaps = gaps.with_columns(pl.min_horizontal(pl.col("_near").fill_null(0), "missing").alias("malformed_nearby"))
    return conform(gaps.sort("key", "from_seq"), GAPS)
