"""Recovery on Apache Spark: the per-partition engine's steps as Spark tasks, for ranges beyond one machine.

The driver snapshots both topics' offsets and plans each partition's ``[start, end)`` exactly as the
per-partition engine does (:func:`recovery.replay.plan.plan`), then cuts every range into offset chunks of
at most ``chunk_records``. One Spark task per chunk reads and validates it
(:func:`~recovery.pipeline.spark_tasks.read_chunk`) and returns its events and outputs bucketed by a hash
of the key. Count windows need each key's N-1 earlier events: the chunks note what their keys still lack,
the driver merges those notes per partition and reads further back in more chunks until the lookback's
fixed point, the same rule and the same offsets as :func:`recovery.replay.bounded.run_partition`. Spark then
shuffles by (partition, key bucket), so every event and output of a key meets in one task whatever chunk it
was read in: dedup (the first copy by partition and offset), recompute and compare run there with the
per-partition engine's code (:func:`~recovery.pipeline.spark_tasks.recover_group`). Nothing needs a warm-up
per chunk, and duplicates or keys across chunk borders come out as on one machine.

The result is a :class:`~recovery.pipeline.partitioned.PartitionedRecovery`, merged on the driver as the
per-partition engine merges its partitions; the fix set is built from it, and published, by the toolkit.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recovery.frames import COMPARISON, CORRECTIONS, EVENTS, QUARANTINE, concat_or_empty, empty
from recovery.pipeline.compare import summary_counts
from recovery.pipeline.dedup import DUPLICATES, GAPS, KEY_STATS, DedupResult, partition_stats
from recovery.pipeline.partitioned import PartitionedRecovery, misalignment, plan_topics, plans_by_partition
from recovery.pipeline.spark_tasks import (
    LATENESS,
    READ_KIND,
    ChunkRead,
    GroupJob,
    GroupOutcome,
    ReadJob,
    outcome_of,
    read_chunk,
    read_of,
    recover_group,
)
from recovery.pipeline.timebasis import StampSkew
from recovery.replay.bounded import LookbackNeed, PartitionRead, ReplayResult
from recovery.replay.plan import KAFKA_TIME, PartitionPlan, Snapshot
from recovery.replay.readers import Reader, reader_for
from recovery.source import Source
from recovery.spark.chunks import OUTPUTS, RAW, Chunk, buckets_for, split, split_all
from recovery.spark.jobs import apply_groups, collect, map_tasks
from recovery.spark.session import SparkOptions, open_session
from recovery.spark.storage import RemoteParts
from recovery.spec import PipelineSpec

SPARK = "spark"


def recover_on_spark(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    raw_source: Source,
    outputs_source: Source,
    outputs_slack_ms: int,
    work_dir: Path,
    slack_ms: int,
    emulate_grace: bool = False,
    abs_tol: float,
    rel_tol: float,
    client: str,
    time_basis: str = KAFKA_TIME,
    options: SparkOptions | None = None,
) -> tuple[PartitionedRecovery, str | None]:
    """Recover every partition of ``[from_ms, to_ms)`` on Spark; the merged results and the misalignment, if any."""
    options = options or SparkOptions()
    started = time.monotonic()
    raw_snap, out_snap = plan_topics(
        spec, raw_source, outputs_source, from_ms, to_ms, slack_ms, outputs_slack_ms, time_basis, client
    )
    assert out_snap is not None  # planned: an outputs source was given
    raw_plans, out_plans = plans_by_partition(raw_snap), plans_by_partition(out_snap)
    remote = RemoteParts.under(options.parts) if options.parts is not None else None
    if remote is not None:
        remote.check()  # before Spark starts: a missing bucket or credentials fail in a second, not after the reads
    session = open_session(options)
    chunk = options.chunk_records
    buckets = {p: 1 if emulate_grace else buckets_for(raw_plans[p].records, chunk) for p in raw_plans}
    job = ReadJob(spec, raw_source, outputs_source, from_ms, to_ms, slack_ms, client, buckets, time_basis)
    chunks = split_all(RAW, [(p, q.start, q.end) for p, q in sorted(raw_plans.items())], chunk) + split_all(
        OUTPUTS, [(p, q.start, q.end) for p, q in sorted(out_plans.items())], chunk
    )
    frames: list[Any] = []
    try:
        reads = _read(session, job, chunks, frames)
        raw_reads = _lookback(session, job, raw_plans, reads, frames, raw_source, client, chunk)
        out_reads = {p: _partition_read(q, _side(reads, OUTPUTS, p), q.start, q.floor_ms) for p, q in out_plans.items()}
        quarantine = _quarantine(reads, RAW)
        group_job = GroupJob(
            spec,
            from_ms,
            to_ms,
            emulate_grace,
            abs_tol,
            rel_tol,
            str(work_dir),
            {p: quarantine.filter(pl.col("partition") == p) for p in raw_plans},
            {p: r.coverage for p, r in raw_reads.items()},
            buckets,
            remote,
        )
        outcomes = _recover_groups(frames, group_job, buckets, emulate_grace)
        if remote is not None:
            for o in outcomes:
                o.parts = {kind: remote.download(urls, work_dir) for kind, urls in o.parts.items()}
    finally:
        for frame in frames:
            frame.unpersist()
        if remote is not None:
            remote.remove()
    elapsed = time.monotonic() - started
    merged = _merge(outcomes, reads, raw_snap, out_snap, raw_reads, out_reads, quarantine, work_dir, elapsed, slack_ms)
    by_partition: dict[int, list[GroupOutcome]] = defaultdict(list)
    for o in outcomes:
        by_partition[o.partition].append(o)
    output_keys: dict[int, set[str]] = defaultdict(set)
    for r in reads:
        if r.chunk.side == OUTPUTS:
            output_keys[r.chunk.partition].update(r.keys)
    why = misalignment(
        {p: [k for o in by_partition.get(p, []) for k in o.raw_keys] for p in raw_plans},
        {p: sorted(output_keys.get(p, set())) for p in raw_plans},
        [pl.concat([o.event_ids for o in by_partition[p]]) for p in sorted(by_partition)],
    )
    return merged, why


def _read(session: Any, job: ReadJob, chunks: Sequence[Chunk], frames: list[Any]) -> list[ChunkRead]:
    """Run one task per chunk; keep its rows (persisted, for the group tasks) and return what each noted."""
    if not chunks:
        return []
    from pyspark import StorageLevel

    tasks = list(chunks)
    frame = map_tasks(session, len(tasks), lambda i: read_chunk(job, tasks[i])).persist(StorageLevel.MEMORY_AND_DISK)
    frames.append(frame)
    found = [read_of(row) for row in collect(frame.where(f"kind = '{READ_KIND}'"))]
    return sorted(found, key=lambda r: (r.chunk.side, r.chunk.partition, r.chunk.start))


def _side(reads: Sequence[ChunkRead], side: str, partition: int) -> list[ChunkRead]:
    return [r for r in reads if r.chunk.side == side and r.chunk.partition == partition]


def _lookback(
    session: Any,
    job: ReadJob,
    plans: dict[int, PartitionPlan],
    reads: list[ChunkRead],
    frames: list[Any],
    source: Source,
    client: str,
    chunk_records: int,
) -> dict[int, PartitionRead]:
    """Read back per partition until the count-window lookback is complete: ``run_partition``'s fixed point.

    Each round reads, for every partition still short, the offsets the rule asks for next, in chunks; the
    chunks' notes merge into the partition's need (in offset order, as one reader would have noted them).
    """
    spec = job.spec
    needs: dict[int, LookbackNeed | None] = {}
    for p in plans:
        if spec.lookback_events and job.from_ms is not None:
            merged = LookbackNeed(job.from_ms, job.to_ms, spec.lookback_events, spec.layout)
            for r in _side(reads, RAW, p):
                if r.need is not None:
                    merged.merge(r.need)
            needs[p] = merged
        else:
            needs[p] = None
    start = {p: q.start for p, q in plans.items()}
    floor = {p: q.floor_ms for p, q in plans.items()}
    steps = dict.fromkeys(plans, 0)
    pending = [p for p in sorted(plans) if needs[p] is not None and start[p] > plans[p].log_start]
    reader: Reader | None = None
    try:
        while pending:
            more: list[Chunk] = []
            for p in list(pending):
                need, log_start = needs[p], plans[p].log_start
                assert need is not None
                short, needed_from = need.shortfall()
                earlier = start[p]
                if needed_from is not None and (floor[p] is None or needed_from < floor[p]):  # type: ignore[operator]
                    reader = reader or reader_for(source, client)
                    at = reader.first_at(p, needed_from)
                    if at is not None and at < start[p]:
                        earlier = max(log_start, at)
                    floor[p] = needed_from if floor[p] is None else min(floor[p], needed_from)  # type: ignore[type-var]
                if short:
                    earlier = min(earlier, max(log_start, start[p] - need.chunk(steps[p])))
                    steps[p] += 1
                if earlier >= start[p]:
                    pending.remove(p)
                    continue
                more.extend(split(RAW, p, earlier, start[p], chunk_records))
                start[p] = earlier
                if earlier <= log_start:
                    pending.remove(p)
            added = _read(session, job, more, frames)
            reads.extend(added)
            for r in sorted(added, key=lambda r: (r.chunk.partition, r.chunk.start)):
                noted = needs[r.chunk.partition]
                if noted is not None and r.need is not None:
                    noted.merge(r.need)
            # a partition that reached its log start is done once its last chunks are noted
            pending = [p for p in pending if start[p] > plans[p].log_start]
    finally:
        if reader is not None:
            reader.close()
    return {p: _partition_read(q, _side(reads, RAW, p), start[p], floor[p]) for p, q in plans.items()}


def _partition_read(plan_: PartitionPlan, reads: Sequence[ChunkRead], start: int, floor: int | None) -> PartitionRead:
    """What one partition's chunks read, as the per-partition engine's PartitionRead of the whole range."""
    firsts = [r.first_offset for r in reads if r.first_offset is not None]
    lasts = [r.last_offset for r in reads if r.last_offset is not None]
    return PartitionRead(
        plan_.partition,
        start,
        plan_.end,
        sum(r.records for r in reads),
        min(firsts) if firsts else None,
        max(lasts) if lasts else None,
        round(sum(r.seconds for r in reads), 3),
        floor_ms=floor,
        from_origin=start == plan_.log_start == 0,
    )


def _quarantine(reads: Sequence[ChunkRead], side: str) -> pl.DataFrame:
    return concat_or_empty([r.quarantine for r in reads if r.chunk.side == side], QUARANTINE).sort(
        "partition", "offset"
    )


def _recover_groups(frames: list[Any], job: GroupJob, buckets: dict[int, int], whole: bool) -> list[GroupOutcome]:
    """Group tasks by (partition, key bucket); partitions where an event id has copies under keys of two
    buckets are recovered again as one group each (the first copy decides which key an event has)."""
    from functools import reduce

    rows = reduce(lambda a, b: a.union(b), frames).where(f"kind != '{READ_KIND}'")
    task = functools.partial(recover_group, job)
    keys = ["partition"] if whole else ["partition", "bucket"]
    outcomes = [outcome_of(r) for r in collect(apply_groups(rows, keys, sum(buckets.values()), task))]
    spread = sorted(
        p
        for p in {o.partition for o in outcomes}
        if (ids := pl.concat([o.event_ids for o in outcomes if o.partition == p])).n_unique() != ids.len()
    )
    if spread and not whole:
        for o in outcomes:
            if o.partition in spread:
                for paths in o.parts.values():
                    if job.remote is not None:
                        job.remote.delete(paths)
                        continue
                    for path in paths:
                        Path(path).unlink(missing_ok=True)
        subset = rows.where(rows.partition.isin(spread))
        again = [outcome_of(r) for r in collect(apply_groups(subset, ["partition"], len(spread), task))]
        outcomes = [o for o in outcomes if o.partition not in spread] + again
    return sorted((o for o in outcomes if o is not None), key=lambda o: (o.partition, o.bucket))


def _merge(
    outcomes: list[GroupOutcome],
    reads: list[ChunkRead],
    raw_snap: Snapshot,
    out_snap: Snapshot,
    raw_reads: dict[int, PartitionRead],
    out_reads: dict[int, PartitionRead],
    quarantine: pl.DataFrame,
    work_dir: Path,
    elapsed: float,
    slack_ms: int,
) -> PartitionedRecovery:
    """The groups' and chunks' results merged as the per-partition engine merges its partitions'."""
    duplicates = concat_or_empty([o.duplicates for o in outcomes], DUPLICATES).sort("partition", "offset")
    gaps = concat_or_empty([o.gaps for o in outcomes], GAPS).sort("key", "from_seq")
    lateness = concat_or_empty([o.lateness for o in outcomes], LATENESS)
    homes = pl.DataFrame(
        [(k, o.partition) for o in outcomes for k in o.raw_keys],
        schema={"key": pl.String, "partition": pl.Int32},
        orient="row",
    )
    quality = DedupResult(
        empty(EVENTS),
        duplicates,
        gaps,
        concat_or_empty([o.by_key for o in outcomes], KEY_STATS).sort("key"),
        partition_stats(_marks_of(lateness), duplicates, gaps, homes),
        sum(o.event_count for o in outcomes),
    )
    skew = StampSkew(slack_ms)
    for r in reads:
        if r.skew is not None:
            skew.merge(r.skew)
    raw = ReplayResult(raw_snap, dict(sorted(raw_reads.items())), None, None, elapsed, kept=False)
    outputs = ReplayResult(out_snap, dict(sorted(out_reads.items())), None, None, elapsed, kept=False)
    counts = [o.counts for o in outcomes if o.counts.height]
    return PartitionedRecovery(
        raw=raw,
        outputs=outputs,
        quality=quality,
        quarantine=quarantine,
        outputs_quarantine=_quarantine(reads, OUTPUTS),
        records_in_range=sum(r.in_range for r in reads if r.chunk.side == RAW),
        metrics_seen={m for r in reads for m in r.metrics},
        corrections=concat_or_empty([o.corrections for o in outcomes], CORRECTIONS),
        counts=pl.concat(counts) if counts else summary_counts(empty(COMPARISON)),
        parts={name: [x for o in outcomes for x in o.parts[name]] for name in ("comparison", "truth", "originals")},
        work_dir=work_dir,
        skew=skew,
    )


def _marks_of(lateness: pl.DataFrame) -> pl.DataFrame:
    """Per-event marks (partition, _ooo, _late) rebuilt from counts: what partition stats aggregate."""
    if lateness.height == 0:
        return pl.DataFrame(schema={"partition": pl.Int32, "_ooo": pl.Boolean, "_late": pl.Int64})
    summed = lateness.group_by("partition", "_late").agg(pl.col("n").sum(), pl.col("ooo").sum())
    rows = summed.select(
        pl.col("partition").repeat_by("n").explode(),
        pl.col("_late").repeat_by("n").explode(),
        pl.int_ranges(0, pl.col("n")).explode().alias("_i"),
        pl.col("ooo").repeat_by("n").explode().alias("_ooo_n"),
    )
    return rows.select("partition", (pl.col("_i") < pl.col("_ooo_n")).alias("_ooo"), "_late")
