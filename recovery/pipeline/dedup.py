"""Deduplicate events, order them by event time, and measure data quality per key and partition.

Duplicates share an ``event_id``: the first copy by (partition, offset) is kept, later copies are dropped
and flagged ``conflicting`` when their content differs. Events are then ordered per key by event time,
ties by ``seq``: the order truth is computed in. The quality figures say what went wrong upstream:
seq gaps (events that never reached the topic: unrecoverable, reported as such; see :class:`Coverage` for
when a gap counts as lost rather than outside what was read), duplicates, the share
of events that arrived after a later event of their key (out of order), and lateness (Kafka timestamp
minus event time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from recovery.formats import KEY_SEPARATOR, EventsSpec, get_path, parse_path
from recovery.frames import EVENT_BASE, QUARANTINE, concat_or_empty, conform, empty, events_like
from recovery.metrics.recompute import order_by_event_time
from recovery.records.events import as_fields, decode_json
from recovery.records.validate import require_columns
from recovery.spec import FieldsSpec

CONTENT = ("key", "seq", "ts")  # plus the value columns: what two copies of one event must agree on

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


# A dropped copy of an event and the copy that was kept.
DUPLICATES = pl.Schema(
    {
        "event_id": pl.String,
        "key": pl.String,
        "partition": pl.Int32,
        "offset": pl.Int64,
        "kept_partition": pl.Int32,
        "kept_offset": pl.Int64,
        "conflicting": pl.Boolean,
    }
)

_STATS = {
    "events": pl.Int64,  # unique valid events
    "duplicates": pl.Int64,  # dropped copies
    "conflicting": pl.Int64,  # dropped copies whose content differs from the kept one
    "gaps": pl.Int64,  # runs of missing seqs
    "missing": pl.Int64,  # missing seqs in those runs
    "out_of_order": pl.Int64,  # events that arrived after a later event (by event time) of their key
    "out_of_order_share": pl.Float64,
    "lateness_p50_ms": pl.Float64,
    "lateness_p99_ms": pl.Float64,
    "lateness_max_ms": pl.Int64,
}
KEY_STATS = pl.Schema({"key": pl.String, **_STATS})
PARTITION_STATS = pl.Schema({"partition": pl.Int32, **_STATS})


@dataclass(frozen=True)
class DedupResult:
    """Unique events in event-time order per key, the dropped duplicates and the quality figures."""

    events: pl.DataFrame  # EVENTS, one row per event_id, sorted by key, ts, seq (no rows if event_count is set)
    duplicates: pl.DataFrame  # DUPLICATES
    gaps: pl.DataFrame  # GAPS
    by_key: pl.DataFrame  # KEY_STATS
    by_partition: pl.DataFrame  # PARTITION_STATS
    event_count: int | None = None  # set when ``events`` was not kept (a recovery partition by partition)

    def counts(self) -> dict[str, Any]:
        """Totals for summaries and manifests (gaps outside what was read apart: not lost)."""
        inside = self.gaps.filter(~pl.col("outside_range"))
        outside = self.gaps.filter(pl.col("outside_range"))
        return {
            "events": self.events.height if self.event_count is None else self.event_count,
            "duplicates": self.duplicates.height,
            "conflicting_duplicates": int(self.duplicates.get_column("conflicting").sum() or 0),
            "gaps": inside.height,
            "missing_events": int(inside.get_column("missing").sum() or 0),
            "lost_events": int((inside.get_column("missing") - inside.get_column("malformed_nearby")).sum() or 0),
            "outside_range_gaps": outside.height,
            "out_of_order": int(self.by_key.get_column("out_of_order").sum() or 0),
        }


def _in_arrival_order(frame: pl.DataFrame) -> pl.DataFrame:
    p, o = pl.col("partition"), pl.col("offset")
    arrived = (p > p.shift(1)) | ((p == p.shift(1)) & (o > o.shift(1)))
    if frame.height < 2 or frame.select(arrived.fill_null(True).all()).item():
        return frame
    return frame.sort("partition", "offset", maintain_order=True)


def _sorted_by_key_and(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` sorted by key, then ``column`` (an integer), stable; one integer sort when it fits 62 bits."""
    k, c = pl.col("key"), pl.col(column)
    ordered = (k > k.shift(1)) | ((k == k.shift(1)) & (c >= c.shift(1)))
    if frame.height < 2 or frame.select(ordered.fill_null(True).all()).item():
        return frame
    keys = frame.get_column("key").unique().sort()
    lo, hi = frame.select(c.min().alias("lo"), c.max().alias("hi")).row(0)
    key_bits, value_bits = max(1, (keys.len() - 1).bit_length()), max(1, (hi - lo).bit_length())
    if keys.null_count() or key_bits + value_bits > 62:
        return frame.sort("key", column, maintain_order=True)
    rank = k.replace_strict(keys, pl.int_range(keys.len(), dtype=pl.Int64, eager=True))
    return frame.sort(rank * (1 << value_bits) + (c - lo), maintain_order=True)


def drop_duplicates(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(unique EVENTS in arrival order, DUPLICATES): the first copy of each event_id by (partition, offset) wins."""
    schema = events_like(events.columns)
    arrived = _in_arrival_order(conform(events, schema))
    content = [*CONTENT, *(c for c in schema.names() if c not in EVENT_BASE)]
    first = pl.col("event_id").is_first_distinct()
    if arrived.select(first.all()).item() if arrived.height else True:
        return arrived, empty(DUPLICATES)
    marked = arrived.with_columns(first.alias("_first"))
    kept = marked.filter("_first").drop("_first")
    dropped = marked.filter(~pl.col("_first")).drop("_first")
    originals = kept.filter(pl.col("event_id").is_in(dropped.get_column("event_id").implode())).select(
        "event_id",
        pl.col("partition").alias("kept_partition"),
        pl.col("offset").alias("kept_offset"),
        *[pl.col(c).alias(f"_kept_{c}") for c in content],
    )
    joined = dropped.join(originals, on="event_id", how="left")
    differs = pl.any_horizontal(*[pl.col(c).ne_missing(pl.col(f"_kept_{c}")) for c in content])
    duplicates = joined.with_columns(differs.alias("conflicting")).sort("partition", "offset")
    return kept, conform(duplicates, DUPLICATES)


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
    schema = {
        "key": pl.String,
        "seq": pl.Int64,
        "ts": pl.Int64,
        "partition": pl.Int32,
        "offset": pl.Int64,
        "timestamp_ms": pl.Int64,
    }
    if quarantine.height == 0:
        return pl.DataFrame(schema=schema)
    key_name = re.escape(json.dumps(fields.key))

    def number(name: str) -> pl.Expr:
        pattern = rf"{re.escape(json.dumps(name))}\s*:\s*(\d{{1,18}})\s*[,}}]"
        return pl.col("value").str.extract(pattern).cast(pl.Int64, strict=False)

    seq = number(fields.seq)
    key = pl.coalesce(pl.col("value").str.extract(rf'{key_name}\s*:\s*"([^"\\]*)"'), pl.col("key"))
    found = conform(quarantine, QUARANTINE).select(
        key.alias("key"), seq.alias("seq"), number(fields.time).alias("ts"), "partition", "offset", "timestamp_ms"
    )
    return found.filter(pl.col("key").is_not_null()).cast(schema)  # type: ignore[arg-type]


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
    ordered = _sorted_by_key_and(seen, "seq")
    if ordered.select(pl.struct("key", "seq").is_duplicated().any()).item():
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


def _marks(unique: pl.DataFrame) -> pl.DataFrame:
    """Per unique event (arrival order): key, partition, out of order (``_ooo``) and lateness (``_late``)."""
    seen_max = pl.col("ts").cum_max().shift(1).over("key")
    return unique.select(
        "key",
        "partition",
        (pl.col("ts") < seen_max).fill_null(False).alias("_ooo"),
        (pl.col("timestamp_ms") - pl.col("ts")).alias("_late"),
    )


def _quality(unique: pl.DataFrame, duplicates: pl.DataFrame, gaps: pl.DataFrame, by: str) -> pl.DataFrame:
    """Quality figures grouped by ``key`` or ``partition`` (``unique`` is in arrival order)."""
    if unique.height == 0:
        return empty(KEY_STATS if by == "key" else PARTITION_STATS)
    home = unique.group_by("key").agg(pl.col("partition").first()) if by == "partition" else None
    return _stats(_marks(unique), duplicates, gaps, by, home)


def _stats(
    marked: pl.DataFrame, duplicates: pl.DataFrame, gaps: pl.DataFrame, by: str, home: pl.DataFrame | None
) -> pl.DataFrame:
    """Quality figures from :func:`_marks` rows; ``home`` (key -> partition) places gaps by partition."""
    schema = KEY_STATS if by == "key" else PARTITION_STATS
    if marked.height == 0:
        return empty(schema)
    stats = marked.group_by(by).agg(
        pl.len().alias("events"),
        pl.col("_ooo").sum().alias("out_of_order"),
        pl.col("_late").quantile(0.5, "nearest").alias("lateness_p50_ms"),
        pl.col("_late").quantile(0.99, "nearest").alias("lateness_p99_ms"),
        pl.col("_late").max().alias("lateness_max_ms"),
    )
    dups = duplicates.group_by(by).agg(pl.len().alias("duplicates"), pl.col("conflicting").sum().alias("conflicting"))
    if by == "key":
        gap_stats = gaps.group_by("key").agg(pl.len().alias("gaps"), pl.col("missing").sum().alias("missing"))
    else:
        assert home is not None
        gap_stats = (
            gaps.join(home, on="key", how="inner")
            .group_by("partition")
            .agg(pl.len().alias("gaps"), pl.col("missing").sum().alias("missing"))
        )
    combined = (
        stats.join(dups, on=by, how="left")
        .join(gap_stats, on=by, how="left")
        .with_columns(pl.col("duplicates", "conflicting", "gaps", "missing").fill_null(0))
        .with_columns((pl.col("out_of_order") / pl.col("events")).alias("out_of_order_share"))
        .sort(by)
    )
    return conform(combined, schema)


def dedup(
    events: pl.DataFrame,
    *,
    quarantine: pl.DataFrame | None = None,
    fields: FieldsSpec | EventsSpec | None = None,
    coverage: Coverage | None = None,
) -> DedupResult:
    """Unique events ordered per key by (ts, seq), with duplicates, seq gaps and quality figures.

    Seqs that a quarantined record still shows (``quarantine``) are malformed, not lost, so they do not
    count as gaps; quarantined records whose seq is unreadable are noted next to the gaps they may fill.
    """
    grouped = KeyGroupDedup(events, quarantine=quarantine, fields=fields, coverage=coverage)
    ordered = [group for group in grouped.groups()]
    return grouped.result(events=ordered[0] if ordered else order_by_event_time(empty(events_like(events.columns))))


class KeyGroupDedup:
    """:func:`dedup` in groups of whole keys, so only one group's unique events are held at a time.

    ``groups()`` yields each group's unique events in event-time order; ``result()`` then gives duplicates,
    gaps and quality figures of all groups together, as :func:`dedup` of all events would. Keys are grouped
    into about ``max_rows`` events each (one group when None), unless some event id has copies under two
    keys of different groups: then one group, since the first copy of an event decides which key it has.
    """

    def __init__(
        self,
        events: pl.DataFrame | pl.LazyFrame,
        *,
        quarantine: pl.DataFrame | None = None,
        fields: FieldsSpec | EventsSpec | None = None,
        max_rows: int | None = None,
        coverage: Coverage | None = None,
    ) -> None:
        if quarantine is not None:
            require_columns(quarantine, QUARANTINE, "QUARANTINE")
        schema = events_like(events.collect_schema() if isinstance(events, pl.LazyFrame) else events.schema)
        if isinstance(events, pl.DataFrame):
            require_columns(events, schema, "EVENTS")
        lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
        lazy = lazy.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
        self.schema = schema
        seqs = quarantined_seqs(quarantine, fields) if quarantine is not None else None
        group = _key_groups(lazy, max_rows)
        self._pending: list[tuple[pl.DataFrame | pl.LazyFrame, pl.DataFrame | None]]
        if group is None:
            self._pending = [(lazy, seqs)]
        else:
            labelled = seqs.join(group, on="key", how="left") if seqs is not None else None
            self._pending = []
            for g, keys in group.group_by("_group").agg("key").sort("_group").iter_rows():
                mine = pl.Series(keys, dtype=pl.String).implode()
                group_seqs = None
                if labelled is not None:  # seqs of keys without a valid event go with the first group
                    in_group = pl.col("_group") == g if g else pl.col("_group").fill_null(0) == 0
                    group_seqs = labelled.filter(in_group).drop("_group")
                self._pending.append((lazy.filter(pl.col("key").is_in(mine)), group_seqs))
        self.coverage = coverage
        self.event_count = 0
        self._duplicates: list[pl.DataFrame] = []
        self._gaps: list[pl.DataFrame] = []
        self._by_key: list[pl.DataFrame] = []
        self._marks: list[pl.DataFrame] = []
        self._homes: list[pl.DataFrame] = []

    def groups(self) -> Iterator[pl.DataFrame]:
        """Each group's unique EVENTS in event-time order (a group is released once the next is asked for)."""
        while self._pending:
            source, seqs = self._pending.pop(0)
            unique, duplicates = drop_duplicates(source if isinstance(source, pl.DataFrame) else source.collect())
            del source
            gaps = seq_gaps(unique, seqs, self.coverage)
            self._duplicates.append(duplicates)
            self._gaps.append(gaps)
            self._by_key.append(_quality(unique, duplicates, gaps, "key"))
            self._marks.append(_marks(unique).select("partition", "_ooo", "_late"))
            self._homes.append(unique.group_by("key").agg(pl.col("partition").first()))
            self.event_count += unique.height
            yield order_by_event_time(unique)

    def marks(self) -> pl.DataFrame:
        """Per unique event so far: partition, out of order (``_ooo``), lateness (``_late``); for
        :func:`partition_stats` over groups that ran apart (on Spark, a partition's key buckets)."""
        return concat_or_empty(self._marks, _MARKS)

    def result(self, *, events: pl.DataFrame | None = None) -> DedupResult:
        """Duplicates, gaps and quality of every group; ``events`` to keep, or None (event_count tells)."""
        duplicates = concat_or_empty(self._duplicates, DUPLICATES)
        gaps = concat_or_empty(self._gaps, GAPS)
        if len(self._duplicates) > 1:
            duplicates = duplicates.sort("partition", "offset")
            gaps = gaps.sort("key", "from_seq")
        by_key = concat_or_empty(self._by_key, KEY_STATS).sort("key")
        marks = self.marks()
        homes = concat_or_empty(self._homes, pl.Schema({"key": pl.String, "partition": pl.Int32}))
        by_partition = _stats(marks, duplicates, gaps, "partition", homes)
        if events is not None:
            return DedupResult(events, duplicates, gaps, by_key, by_partition)
        return DedupResult(empty(self.schema), duplicates, gaps, by_key, by_partition, self.event_count)


_MARKS = pl.Schema({"partition": pl.Int32, "_ooo": pl.Boolean, "_late": pl.Int64})


def partition_stats(
    marks: pl.DataFrame, duplicates: pl.DataFrame, gaps: pl.DataFrame, homes: pl.DataFrame
) -> pl.DataFrame:
    """PARTITION_STATS from the :meth:`KeyGroupDedup.marks` of groups that ran apart; ``homes``: (key, partition)."""
    return _stats(marks, duplicates, gaps, "partition", homes)


def _key_groups(events: pl.LazyFrame, max_rows: int | None) -> pl.DataFrame | None:
    """(key, _group) with about ``max_rows`` events per group; None for a single group."""
    if max_rows is None:
        return None
    sizes = events.group_by("key").len().sort("key").collect()
    if sizes.get_column("len").sum() <= max_rows:
        return None
    group = (pl.col("len").cum_sum() - pl.col("len")) // max_rows
    groups = sizes.select("key", group.cast(pl.Int64).alias("_group"))
    if groups.get_column("_group").n_unique() < 2:
        return None
    repeated = events.select("event_id", "key").filter(pl.col("event_id").is_duplicated()).collect()
    if repeated.height:
        spread = repeated.join(groups, on="key").group_by("event_id").agg(pl.col("_group").n_unique())
        if spread.height and spread.get_column("_group").max() > 1:  # type: ignore[operator]
            return None
    return groups


def lateness(events: pl.DataFrame) -> pl.DataFrame:
    """Per event: partition, key, event time and lateness (Kafka timestamp - event time), for histograms."""
    frame = conform(events, events_like(events.columns))
    return frame.select("partition", "key", "ts", (pl.col("timestamp_ms") - pl.col("ts")).alias("lateness_ms"))
