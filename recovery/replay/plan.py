"""A replay's plan: the log's offsets snapshotted when it starts and, per partition, the ``[start, end)`` to
read for a time range (by Kafka time, with the lookback and the slack) or for explicit offsets. Kafka topics
and archive files are planned alike, so a replay of an export selects exactly the records the Kafka replay did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from recovery.errors import ConfigError, DataError
from recovery.kafka.client import DEFAULT_CLIENT, NATIVE, check_client, close_soon
from recovery.kafka.common import missing_topic
from recovery.kafka.native import NativeReader
from recovery.source import FileSource, KafkaSource, Source
from recovery.timerange import format_ms

DEFAULT_SLACK_MS = 5 * 60_000  # Kafka time read after `to`: events up to this late still count
# how a time range selects records: by Kafka timestamp (the default), or whole partitions by offset with events
# judged by their event time only (topics whose Kafka timestamps are not event times: backfills, producer stamps)
KAFKA_TIME, EVENT_TIME = "kafka", "event"
TIME_BASES: tuple[str, ...] = (KAFKA_TIME, EVENT_TIME)


def check_time_basis(time_basis: str) -> str:
    """``time_basis`` if it is one of :data:`TIME_BASES`; :class:`ConfigError` otherwise."""
    if time_basis not in TIME_BASES:
        raise ConfigError(f"unknown time basis {time_basis!r}", hint=f"use one of {', '.join(TIME_BASES)}")
    return time_basis


@dataclass(frozen=True)
class PartitionPlan:
    """What to read of one partition: ``[start, end)``, inside the log ``[log_start, log_end)`` seen at start."""

    partition: int
    log_start: int
    log_end: int
    start: int
    end: int
    floor_ms: int | None = None  # every record before ``start`` is stamped before this (None: unknown)

    @property
    def records(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Snapshot:
    """A replay's plan: the source, the range and the offsets per partition snapshotted when it started."""

    source: dict[str, Any]
    from_ms: int | None
    to_ms: int | None
    lookback_ms: int
    lookback_events: int
    slack_ms: int
    partitions: tuple[PartitionPlan, ...]
    time_basis: str = KAFKA_TIME

    @property
    def end_offsets(self) -> dict[int, int]:
        return {p.partition: p.log_end for p in self.partitions}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["partitions"] = [asdict(p) for p in self.partitions]
        return data


def plan(
    source: Source,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    offsets: Mapping[int, tuple[int | None, int | None]] | None = None,
    lookback_ms: int = 0,
    lookback_events: int = 0,
    slack_ms: int = DEFAULT_SLACK_MS,
    partitions: Sequence[int] | None = None,
    time_basis: str = KAFKA_TIME,
    client: str = DEFAULT_CLIENT,
) -> Snapshot:
    """Snapshot the log's offsets and choose each partition's ``[start, end)`` (before the sma lookback).

    ``time_basis="event"``: a time range reads whole partitions up to the snapshotted end offsets (by offset,
    whatever the Kafka timestamps), and the steps after judge events by their event time only. Offsets are
    looked up through ``client`` when it is the native reader (no kafka-python consumer to connect), through
    kafka-python otherwise.
    """
    if offsets is not None and (from_ms is not None or to_ms is not None):
        raise ConfigError("give either a time range or explicit offsets, not both")
    if lookback_ms < 0 or lookback_events < 0 or slack_ms < 0:
        raise ConfigError("lookback_ms, lookback_events and slack_ms must be >= 0")
    by_time = check_time_basis(time_basis) == KAFKA_TIME
    first_ms, last_ms = (from_ms, to_ms) if by_time else (None, None)
    if isinstance(source, KafkaSource):
        if check_client(client, source) == NATIVE:
            bounds = _native_bounds(source, first_ms, last_ms, lookback_ms, slack_ms, partitions)
        else:
            bounds = _kafka_bounds(source, first_ms, last_ms, lookback_ms, slack_ms, partitions)
    else:
        if offsets is None and by_time:
            check_archive_covers(source, from_ms, to_ms, lookback_ms, lookback_events, slack_ms)
        bounds = _file_bounds(source, first_ms, last_ms, lookback_ms, slack_ms, partitions)
    plans = []
    for p, (log_start, log_end, start, end) in sorted(bounds.items()):
        if offsets is not None:
            if p not in offsets:
                continue
            want_start, want_end = offsets[p]
            start = log_start if want_start is None else want_start
            end = log_end if want_end is None else want_end
            if start < 0 or end < start:
                raise ConfigError(f"offsets for partition {p} must satisfy 0 <= start <= end, got [{start}, {end})")
        end = min(max(end, log_start), log_end)
        start = min(max(start, log_start), end)
        floor = from_ms - lookback_ms if from_ms is not None and offsets is None and by_time else None
        plans.append(PartitionPlan(p, log_start, log_end, start, end, floor))
    if offsets is not None:
        unknown = sorted(set(offsets) - set(bounds))
        if unknown:
            raise ConfigError(f"partition(s) {unknown} not in {label(source)}", hint=f"partitions: {sorted(bounds)}")
    return Snapshot(source.to_dict(), from_ms, to_ms, lookback_ms, lookback_events, slack_ms, tuple(plans), time_basis)


# what planning asks of the cluster, per chosen partition: (log start, log end), and the first offsets at the
# range's start and end times (None: no record that late; the start is None when no time is given)
Lookups = tuple[dict[int, tuple[int, int]], dict[int, int | None], dict[int, int | None]]


def _bounds(found: Lookups, by_start_time: bool) -> dict[int, tuple[int, int, int, int]]:
    """``(log_start, log_end, start, end)`` per partition from what either client looked up."""
    marks, starts, ends = found
    bounds = {}
    for p, (log_start, log_end) in marks.items():
        start, end = starts[p], ends[p]
        first = (log_end if start is None else start) if by_start_time else log_start
        bounds[p] = (log_start, log_end, first, log_end if end is None else end)
    return bounds


def _kafka_bounds(
    source: KafkaSource,
    from_ms: int | None,
    to_ms: int | None,
    lookback_ms: int,
    slack_ms: int,
    partitions: Sequence[int] | None,
) -> dict[int, tuple[int, int, int, int]]:
    # kafka-python only when it plans: a command reading through librdkafka starts 0.1 s sooner without it
    from kafka import TopicPartition

    from recovery.kafka.clients import consumer, guarded
    from recovery.kafka.topics import partitions_for

    settings, topic = source.settings, source.topic
    chosen = _choose(partitions_for(settings, topic), partitions, topic)
    tps = [TopicPartition(topic, p) for p in chosen]
    with consumer(settings, isolation_level=source.isolation_level) as c:
        action = f"reading offsets of {topic}"
        log_start = guarded(settings, action, lambda: c.beginning_offsets(tps))
        log_end = guarded(settings, action, lambda: c.end_offsets(tps))

        def first_at(ts_ms: int | None) -> dict[int, int | None]:
            if ts_ms is None:
                return dict.fromkeys(chosen)
            found = guarded(settings, action, lambda: c.offsets_for_times({tp: max(0, ts_ms) for tp in tps}))
            return {tp.partition: (None if found.get(tp) is None else found[tp].offset) for tp in tps}

        marks = {tp.partition: (log_start[tp], log_end[tp]) for tp in tps}
        found = (marks, first_at(_minus(from_ms, lookback_ms)), first_at(_plus(to_ms, slack_ms)))
    return _bounds(found, from_ms is not None)


def _native_bounds(
    source: KafkaSource,
    from_ms: int | None,
    to_ms: int | None,
    lookback_ms: int,
    slack_ms: int,
    partitions: Sequence[int] | None,
) -> dict[int, tuple[int, int, int, int]]:
    """:func:`_kafka_bounds` through the native reader's librdkafka consumer."""
    reader = NativeReader(source)
    try:
        existing = reader.partitions()
        if existing is None:
            raise missing_topic(source.settings, source.topic)
        chosen = _choose(existing, partitions, source.topic)

        def first_at(ts_ms: int | None) -> dict[int, int | None]:
            return dict.fromkeys(chosen) if ts_ms is None else reader.offsets_at(chosen, ts_ms)

        marks = {p: reader.watermarks(p) for p in chosen}
        found = (marks, first_at(_minus(from_ms, lookback_ms)), first_at(_plus(to_ms, slack_ms)))
    finally:
        close_soon(reader)
    return _bounds(found, from_ms is not None)


def _minus(ms: int | None, delta: int) -> int | None:
    return None if ms is None else ms - delta


def _plus(ms: int | None, delta: int) -> int | None:
    return None if ms is None else ms + delta


def check_archive_covers(
    source: FileSource,
    from_ms: int | None,
    to_ms: int | None,
    lookback_ms: int,
    lookback_events: int,
    slack_ms: int,
) -> None:
    """:class:`DataError` when an export (its sidecar says what it read) stops short of what this replay reads.

    An archive exported with narrower bounds than the replay's (no spec, so no lookback or no window slack)
    would be read without complaint and give other records, hence another fix set digest, than Kafka did.
    """
    for sidecar in source.sidecars():
        snap = sidecar.get("snapshot") or {}
        reads = {int(p): r for p, r in (sidecar.get("reads") or {}).items()}
        logs = {int(p["partition"]): p for p in snap.get("partitions") or []}
        topic = (snap.get("source") or {}).get("topic", "the topic")
        cut_before = any(r["start"] > logs[p]["log_start"] for p, r in reads.items() if p in logs)
        cut_after = any(r["end"] < logs[p]["log_end"] for p, r in reads.items() if p in logs)
        short = None
        if to_ms is not None and snap.get("to_ms") is not None and cut_after:
            exported, needed = snap["to_ms"] + snap.get("slack_ms", 0), to_ms + slack_ms
            if exported < needed:
                short = f"up to Kafka time {format_ms(exported)}, and this replay reads up to {format_ms(needed)}"
        if from_ms is not None and snap.get("from_ms") is not None and cut_before and short is None:
            exported, needed = snap["from_ms"] - snap.get("lookback_ms", 0), from_ms - lookback_ms
            if exported > needed:
                short = f"from Kafka time {format_ms(exported)}, and this replay reads from {format_ms(needed)}"
            elif lookback_events > snap.get("lookback_events", 0):
                short = f"without the {lookback_events} earlier events per key this replay reads"
        if short is not None:
            raise DataError(
                f"the archive of {topic} ({source.describe()}) holds its records {short}",
                hint="export it again with the spec (recovery export --spec SPEC [--topic T] ...), which reads "
                "the bounds a recovery reads",
            )


def _file_bounds(
    source: FileSource,
    from_ms: int | None,
    to_ms: int | None,
    lookback_ms: int,
    slack_ms: int,
    partitions: Sequence[int] | None,
) -> dict[int, tuple[int, int, int, int]]:
    ts, offset = pl.col("timestamp_ms"), pl.col("offset")
    start = offset.filter(ts >= from_ms - lookback_ms).min() if from_ms is not None else offset.min()
    end = offset.filter(ts >= to_ms + slack_ms).min() if to_ms is not None else pl.lit(None, dtype=pl.Int64)
    stats = (
        source.scan()
        .group_by("partition")
        .agg(
            offset.min().alias("log_start"),
            (offset.max() + 1).alias("log_end"),
            start.alias("start"),
            end.alias("end"),
        )
        .collect()
    )
    chosen = set(_choose(stats.get_column("partition").to_list(), partitions, source.describe()))
    bounds = {}
    for p, log_start, log_end, first, stop in stats.iter_rows():
        if p in chosen:
            bounds[p] = (log_start, log_end, log_end if first is None else first, log_end if stop is None else stop)
    return bounds


def _choose(existing: Sequence[int], wanted: Sequence[int] | None, where: str) -> list[int]:
    if wanted is None:
        return sorted(existing)
    unknown = sorted(set(wanted) - set(existing))
    if unknown:
        raise ConfigError(f"partition(s) {unknown} not in {where}", hint=f"partitions: {sorted(existing)}")
    return sorted(set(wanted))


def label(source: Source) -> str:
    return source.topic if isinstance(source, KafkaSource) else "archive"
