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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from recovery.formats import EventsSpec
from recovery.frames import EVENT_BASE, QUARANTINE, concat_or_empty, conform, empty, events_like
from recovery.metrics.recompute import order_by_event_time
from recovery.pipeline.gaps import GAPS, Coverage, quarantined_seqs, seq_gaps
from recovery.records.validate import require_columns
from recovery.spec import FieldsSpec

CONTENT = ("key", "seq", "ts")  # plus the value columns: what two copies of one event must agree on

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
    measured: bool = True  # False: only the events and duplicates were counted (no gaps, no quality figures)

    def counts(self) -> dict[str, Any]:
        """Totals for summaries and manifests (gaps outside what was read apart: not lost); events and
        duplicates only when the quality was not ``measured``."""
        if not self.measured:
            return {
                "events": self.events.height if self.event_count is None else self.event_count,
                "duplicates": self.duplicates.height,
                "conflicting_duplicates": int(self.duplicates.get_column("conflicting").sum() or 0),
            }
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


def repeated_hashes(hashes: pl.Series) -> pl.Series:
    """The values that occur more than once in ``hashes`` (64-bit hashes of ids), each once: sorted so that
    repeats are neighbours, 8 bytes per row and no hash table."""
    ordered = hashes.sort()
    later = ordered.slice(1)
    return later.filter(later == ordered.slice(0, max(ordered.len() - 1, 0))).unique()


def _first_copies(ids: pl.Series) -> tuple[pl.Series, pl.Series] | None:
    """(per row, whether its id repeats a hash of another row's; per row, whether its id is the first of its
    copies); None when no id repeats.

    The ids' 64-bit hashes are sorted so that repeats are neighbours (several times cheaper than a hash table of
    the strings); only the rows whose hash repeats are then compared exactly (every copy of an id has its hash,
    so none is missed; a collision only costs an exact comparison)."""
    hashes = ids.hash()
    repeats = repeated_hashes(hashes)
    if repeats.len() == 0:
        return None
    suspect = hashes.is_in(repeats.implode())
    exact = ids.filter(suspect).is_first_distinct()
    return suspect, suspect.not_().scatter(suspect.arg_true(), exact)


def drop_duplicates(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(unique EVENTS in arrival order, DUPLICATES): the first copy of each event_id by (partition, offset) wins."""
    schema = events_like(events.columns)
    arrived = _in_arrival_order(conform(events, schema))
    content = [*CONTENT, *(c for c in schema.names() if c not in EVENT_BASE)]
    found = _first_copies(arrived.get_column("event_id")) if arrived.height else None
    if found is None or found[1].all():
        return arrived, empty(DUPLICATES)
    suspect, first = found
    kept = arrived.filter(first)
    # every copy, first or not, is among the rows whose hash repeats: the rest of the work is on those alone
    copies = arrived.filter(suspect).with_columns(first.filter(suspect).alias("_first"))
    dropped = copies.filter(~pl.col("_first")).drop("_first")
    originals = copies.filter(pl.col("_first") & pl.col("event_id").is_in(dropped.get_column("event_id").implode()))
    originals = originals.select(
        "event_id",
        pl.col("partition").alias("kept_partition"),
        pl.col("offset").alias("kept_offset"),
        *[pl.col(c).alias(f"_kept_{c}") for c in content],
    )
    joined = dropped.join(originals, on="event_id", how="left")
    differs = pl.any_horizontal(*[pl.col(c).ne_missing(pl.col(f"_kept_{c}")) for c in content])
    duplicates = joined.with_columns(differs.alias("conflicting")).sort("partition", "offset")
    return kept, conform(duplicates, DUPLICATES)


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
    ``quality=False`` drops the duplicates and orders the events without measuring gaps and quality figures
    (truth alone needs none of them): ``result()`` then says ``measured=False``.
    """

    def __init__(
        self,
        events: pl.DataFrame | pl.LazyFrame,
        *,
        quarantine: pl.DataFrame | None = None,
        fields: FieldsSpec | EventsSpec | None = None,
        max_rows: int | None = None,
        coverage: Coverage | None = None,
        split: Callable[[pl.DataFrame], Mapping[int, pl.LazyFrame]] | None = None,
        quality: bool = True,
    ) -> None:
        """``split``: given the (key, _group) of every key, each group's events (instead of a filter of ``events``
        per group, which reads all of them each time)."""
        if quarantine is not None:
            require_columns(quarantine, QUARANTINE, "QUARANTINE")
        schema = events_like(events.collect_schema() if isinstance(events, pl.LazyFrame) else events.schema)
        if isinstance(events, pl.DataFrame):
            require_columns(events, schema, "EVENTS")
        lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
        columns = [pl.col(name).cast(dtype) for name, dtype in schema.items()]
        lazy = lazy.select(columns)
        self.schema = schema
        self.quality = quality
        seqs = quarantined_seqs(quarantine, fields) if quarantine is not None and quality else None
        group = _key_groups(lazy, max_rows)
        self.key_groups = group  # (key, _group), None for one group
        self._pending: list[tuple[pl.DataFrame | pl.LazyFrame, pl.DataFrame | None]]
        if group is None:
            self._pending = [(lazy, seqs)]
        else:
            labelled = seqs.join(group, on="key", how="left") if seqs is not None else None
            parts = split(group) if split is not None else None
            self._pending = []
            for g, keys in group.group_by("_group").agg("key").sort("_group").iter_rows():
                mine = pl.Series(keys, dtype=pl.String).implode()
                group_seqs = None
                if labelled is not None:  # seqs of keys without a valid event go with the first group
                    in_group = pl.col("_group") == g if g else pl.col("_group").fill_null(0) == 0
                    group_seqs = labelled.filter(in_group).drop("_group")
                source = parts[g].select(columns) if parts is not None else lazy.filter(pl.col("key").is_in(mine))
                self._pending.append((source, group_seqs))
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
            # streamed: the spool's parts are filtered as they are read, not loaded whole first
            events = source if isinstance(source, pl.DataFrame) else source.collect(engine="streaming")
            unique, duplicates = drop_duplicates(events)
            del events
            del source
            self._duplicates.append(duplicates)
            self.event_count += unique.height
            if not self.quality:
                yield order_by_event_time(unique)
                continue
            gaps = seq_gaps(unique, seqs, self.coverage)
            self._gaps.append(gaps)
            self._by_key.append(_quality(unique, duplicates, gaps, "key"))
            self._marks.append(_marks(unique).select("partition", "_ooo", "_late"))
            self._homes.append(unique.group_by("key").agg(pl.col("partition").first()))
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
        if not self.quality:
            kept = events if events is not None else empty(self.schema)
            count = None if events is not None else self.event_count
            return DedupResult(kept, duplicates, gaps, empty(KEY_STATS), empty(PARTITION_STATS), count, measured=False)
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
    # ids with copies: their 64-bit hashes first, sorted so that repeats are neighbours (8 bytes per event, no
    # hash table: 2.6M events peaked 80 MB higher with is_duplicated), then the exact check on the few rows whose
    # hash repeats (every copy of an id has its hash, so none is missed)
    hashed = pl.col("event_id").hash()
    hashes = events.select(hashed.alias("_h")).collect(engine="streaming").get_column("_h")
    repeats = repeated_hashes(hashes).to_frame()
    del hashes
    candidates = events.select("event_id", "key").filter(hashed.is_in(repeats.get_column("_h").implode()))
    copies = candidates.filter(pl.col("event_id").is_duplicated()).collect()
    if copies.height:
        spread = copies.join(groups, on="key").group_by("event_id").agg(pl.col("_group").n_unique())
        if spread.height and spread.get_column("_group").max() > 1:  # type: ignore[operator]
            return None
    return groups


def lateness(events: pl.DataFrame) -> pl.DataFrame:
    """Per event: partition, key, event time and lateness (Kafka timestamp - event time), for histograms."""
    frame = conform(events, events_like(events.columns))
    return frame.select("partition", "key", "ts", (pl.col("timestamp_ms") - pl.col("ts")).alias("lateness_ms"))
