"""What the Spark tasks of a recovery do: read and validate an offset chunk, recover a group of keys.

A chunk task reads its offsets with the toolkit's own reader (the client the recovery names), validates
raw records (or decodes outputs) batch by batch with the code of the per-partition engine, and returns
its events and outputs as frames bucketed by a hash of the key, plus what it noted (records, offsets,
quarantine, the count-window lookback). A group task gets every event and output of one key bucket of one
partition, from every chunk, and runs the per-partition engine's dedup, recompute and compare on them;
its big frames go to Arrow IPC parts under the work directory (or under ``--spark-parts``: a shared directory
or an object-storage URL, :mod:`recovery.spark.storage`), what is small comes back.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

import polars as pl

from recovery.frames import COMPARISON, OUTPUTS, QUARANTINE, RESULTS, empty, events_schema
from recovery.pipeline.dedup import DUPLICATES, GAPS, KEY_STATS, Coverage, KeyGroupDedup, quarantined_seqs
from recovery.pipeline.partitioned import EventSink, Originals, OutputSink, Spool, recover_key_groups
from recovery.pipeline.timebasis import StampSkew
from recovery.replay.bounded import LookbackNeed, ReadSpan
from recovery.replay.plan import KAFKA_TIME
from recovery.replay.pool import cached_reader
from recovery.source import Source
from recovery.spark.chunks import RAW, Chunk
from recovery.spark.payload import Row, frame_of, frame_rows, object_of, object_row
from recovery.spark.storage import RemoteParts
from recovery.spec import PipelineSpec

BATCH_RECORDS = 50_000  # records per batch read, validated as it arrives (as partition by partition)
BUCKET_SEED = 1_729  # key -> bucket: the same polars hash on every executor of one installation
EVENTS_KIND, OUTPUTS_KIND, READ_KIND, GROUP_KIND = "events", "outputs", "read", "group"
LATENESS = pl.Schema({"partition": pl.Int32, "_late": pl.Int64, "n": pl.UInt32, "ooo": pl.UInt32})


@dataclass(frozen=True)
class ReadJob:
    """What every chunk task of a recovery shares."""

    spec: PipelineSpec
    raw_source: Source
    outputs_source: Source
    from_ms: int
    to_ms: int
    slack_ms: int
    client: str
    buckets: Mapping[int, int]  # key buckets per partition
    time_basis: str = KAFKA_TIME


@dataclass
class ChunkRead:
    """What a chunk task noted; its events and outputs travel in their own rows."""

    chunk: Chunk
    records: int
    first_offset: int | None
    last_offset: int | None
    seconds: float
    in_range: int = 0
    quarantine: pl.DataFrame = field(default_factory=lambda: empty(QUARANTINE))
    skew: StampSkew | None = None
    need: LookbackNeed | None = None
    keys: list[str] = field(default_factory=list)  # outputs: the keys decoded
    metrics: list[str] = field(default_factory=list)  # outputs: the metric names decoded


class _Kept(Spool):
    """A spool that keeps its frames in memory (a chunk task returns them)."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema
        self.paths = []
        self.frames: list[pl.DataFrame] = []

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self.frames.append(frame)

    def remove(self) -> None:
        self.frames = []


def bucket_of(frame: pl.DataFrame, buckets: int) -> pl.Series:
    """The key bucket of each row (``key`` column): a partition's keys spread over ``buckets`` groups."""
    if buckets <= 1:
        return pl.Series("_bucket", [0] * frame.height, dtype=pl.Int32)
    return (frame.get_column("key").fill_null("").hash(seed=BUCKET_SEED) % buckets).cast(pl.Int32).alias("_bucket")


def _bucketed(kind: str, partition: int, frames: list[pl.DataFrame], buckets: int) -> Iterator[Row]:
    if not frames:
        return
    whole = pl.concat(frames)
    for (bucket,), part in whole.with_columns(bucket_of(whole, buckets)).partition_by("_bucket", as_dict=True).items():
        yield from frame_rows(kind, partition, int(bucket), part.drop("_bucket"))  # type: ignore[arg-type]


def read_chunk(job: ReadJob, chunk: Chunk) -> Iterator[Row]:
    """Read and validate (raw) or decode (outputs) one chunk: its frames by key bucket, then a ChunkRead row."""
    started = time.monotonic()
    spec, p = job.spec, chunk.partition
    raw = chunk.side == RAW
    source = job.raw_source if raw else job.outputs_source
    kept = _Kept(events_schema(spec.value_fields) if raw else OUTPUTS)
    sink: EventSink | OutputSink = (
        EventSink(spec, job.from_ms, job.to_ms, job.slack_ms, kept, job.time_basis) if raw else OutputSink(kept, spec)
    )
    need = (
        LookbackNeed(job.from_ms, job.to_ms, spec.lookback_events, spec.layout)
        if raw and spec.lookback_events
        else None
    )
    span = ReadSpan()
    span.feed(cached_reader(source, job.client).read(p, chunk.start, chunk.end, BATCH_RECORDS), sink, need)
    buckets = job.buckets.get(p, 1)
    yield from _bucketed(EVENTS_KIND if raw else OUTPUTS_KIND, p, kept.frames, buckets)
    read = ChunkRead(
        chunk, span.records, span.first, span.last, round(time.monotonic() - started, 3), quarantine=sink.bad()
    )
    if isinstance(sink, EventSink):
        read.in_range, read.skew, read.need = sink.in_range, sink.skew, need
    else:
        read.keys, read.metrics = sorted(sink.keys), sorted(sink.metrics)
    yield object_row(READ_KIND, p, read)


@dataclass(frozen=True)
class GroupJob:
    """What every group task of a recovery shares: the range, the settings, each partition's quarantine and coverage."""

    spec: PipelineSpec
    from_ms: int
    to_ms: int
    emulate_grace: bool
    abs_tol: float
    rel_tol: float
    work_dir: str
    quarantine: Mapping[int, pl.DataFrame]
    coverage: Mapping[int, tuple[int | None, bool]]
    buckets: Mapping[int, int]
    remote: RemoteParts | None = None  # set: parts go to the task's scratch disk, then under this prefix


def quarantine_of(job: GroupJob, partition: int, bucket: int) -> pl.DataFrame:
    """The partition's quarantined records whose key (read from the record, as the seq-gap rule reads it) falls
    in ``bucket``: each one then counts in exactly one group, as in the partition's single pass."""
    quarantine = job.quarantine.get(partition, empty(QUARANTINE))
    if bucket < 0 or quarantine.height == 0:
        return quarantine
    seqs = quarantined_seqs(quarantine, job.spec.layout)
    mine = seqs.filter(bucket_of(seqs, job.buckets.get(partition, 1)) == bucket).get_column("offset")
    return quarantine.filter(pl.col("offset").is_in(mine.implode()))


@dataclass
class GroupOutcome:
    """What one key group's recovery keeps in memory; its comparison, truth and originals are in ``parts``."""

    partition: int
    bucket: int
    raw_keys: list[str]
    event_ids: pl.Series  # 64-bit hashes of the unique event ids
    event_count: int
    duplicates: pl.DataFrame
    gaps: pl.DataFrame
    by_key: pl.DataFrame
    lateness: pl.DataFrame  # LATENESS: unique events per (partition, lateness), out of order among them
    corrections: pl.DataFrame
    counts: pl.DataFrame
    parts: dict[str, list[str]]


def recover_group(job: GroupJob, partition: int, bucket: int, rows: list[Row]) -> Iterator[Row]:
    """Dedup, recompute and compare one key group from the rows of every chunk; one GroupOutcome row."""
    spec, p = job.spec, partition
    events = frame_of([r[3] for r in rows if r[0] == EVENTS_KIND], events_schema(spec.value_fields))
    originals = frame_of([r[3] for r in rows if r[0] == OUTPUTS_KIND], OUTPUTS)
    grouped = KeyGroupDedup(
        events,
        quarantine=quarantine_of(job, p, bucket),
        fields=spec.layout,
        coverage=Coverage({p: job.coverage.get(p, (None, False))}, job.to_ms),
    )
    del events
    name = "all" if bucket < 0 else f"b{bucket:05d}"
    # with --spark-parts the parts go to this task's scratch disk first, then under the run's prefix
    scratch = (
        tempfile.TemporaryDirectory(prefix=".recover-group-", ignore_cleanup_errors=True)
        if job.remote is not None
        else nullcontext(job.work_dir)
    )
    with scratch as work_dir:
        originals_spool = Spool(work_dir, f"originals-{name}", p, OUTPUTS)
        originals_spool.write(originals)
        truths = Spool(work_dir, f"truth-{name}", p, RESULTS)
        comparisons = Spool(work_dir, f"comparison-{name}", p, COMPARISON)
        groups = recover_key_groups(
            grouped,
            Originals(originals.lazy()),
            spec,
            job.from_ms,
            job.to_ms,
            abs_tol=job.abs_tol,
            rel_tol=job.rel_tol,
            emulate_grace=job.emulate_grace,
            truths=truths,
            comparisons=comparisons,
        )
        quality = grouped.result()
        lateness = (
            grouped.marks()
            .group_by("partition", "_late")
            .agg(pl.len().alias("n"), pl.col("_ooo").sum().cast(pl.UInt32).alias("ooo"))
        )
        parts = {"comparison": comparisons.paths, "truth": truths.paths, "originals": originals_spool.paths}
        if job.remote is not None:
            parts = {kind: job.remote.upload(paths) for kind, paths in parts.items()}
        outcome = GroupOutcome(
            partition=p,
            bucket=bucket,
            raw_keys=groups.raw_keys,
            event_ids=groups.event_ids(),
            event_count=grouped.event_count,
            duplicates=quality.duplicates if quality.duplicates.height else empty(DUPLICATES),
            gaps=quality.gaps if quality.gaps.height else empty(GAPS),
            by_key=quality.by_key if quality.by_key.height else empty(KEY_STATS),
            lateness=lateness.cast(dict(LATENESS)),  # type: ignore[arg-type]
            corrections=groups.corrections(),
            counts=groups.counts(),
            parts=parts,
        )
        yield object_row(GROUP_KIND, p, outcome)


def outcome_of(row: Row) -> GroupOutcome:
    """The GroupOutcome a group task returned."""
    value = object_of(row[3])
    assert isinstance(value, GroupOutcome)
    return value


def read_of(row: Row) -> ChunkRead:
    """The ChunkRead a chunk task returned."""
    value = object_of(row[3])
    assert isinstance(value, ChunkRead)
    return value
