"""Recovery partition by partition: bounded memory and the whole pipeline in parallel.

Work is partitioned by key: a key's raw events live in one partition of the raw topic, and the live worker
publishes its results to the same partition number of the output topic (same key, same partition count,
the default partitioner). So each partition is recovered on its own, on a worker thread: its raw records
(with lookback) are validated and its outputs decoded batch by batch as they are read, and spooled to
parts in a work directory; then dedup, recompute and compare run key group by key group, and only
what is small goes back (corrections, summary counts, quarantine, quality figures). The big frames
(comparison, truth, originals) stay in the parts and are read back only on demand. Peak memory is then
one partition's working set per worker, whatever the length of the range.

Every per-partition result adds up to the result of the whole range, provided keys really are partitioned:
:func:`misalignment` checks it from what the workers saw (no key in two raw partitions, no event id in two
partitions, outputs of a key in the partition of its raw events). When it does not hold, the caller
recovers the range in memory instead, which makes no such assumption.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recovery.errors import ConfigError
from recovery.fixes.fixset import corrections_from
from recovery.frames import (
    COMPARISON,
    CORRECTIONS,
    EVENTS,
    OUTPUTS,
    QUARANTINE,
    RESULTS,
    concat_or_empty,
    empty,
    events_schema,
)
from recovery.kafka.client import DEFAULT_CLIENT
from recovery.memory import trim_memory
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import compare, summary_counts
from recovery.pipeline.dedup import DUPLICATES, GAPS, KEY_STATS, PARTITION_STATS, Coverage, DedupResult, KeyGroupDedup
from recovery.pipeline.spool import EventSink, OutputSink, Part, Spool, scan_parts
from recovery.pipeline.timebasis import StampSkew
from recovery.replay.bounded import PartitionJob, PartitionRead, ReplayResult, run_partition
from recovery.replay.plan import KAFKA_TIME, PartitionPlan, Snapshot, plan
from recovery.replay.pool import cached_reader, decodes_in_python, run_tasks, stop_point
from recovery.replay.progress import NoProgress, PartitionProgress, ProgressSink, progress_enabled
from recovery.source import KafkaSource, Source
from recovery.spec import PipelineSpec

# Records per replayed batch: each is validated (or decoded) as it arrives and spooled (Arrow IPC); the
# transient memory of decoding JSON grows with the batch. Events per key group: dedup, recompute and
# compare hold a group's events, results and outputs, in several copies at once inside the joins.
# Measured on a 10M-event incident (1.2M raw + 1.2M output records per partition), worker processes: 50k / 400k
# peaked at 760 MB per worker, 20k / 150k at 526 MB for about the same CPU time. With partitions on threads and
# the allocators tuned, the 10m plain recover (two runs each, interleaved): batches of 20k 29.3-32.3 s, 10.6-11.4
# system CPU s (page faults), 476-480 MB; 50k 25.8-27.2 s, 8.1-9.1 s, 491-522 MB; 100k 27.1 s, 564 MB.
BATCH_RECORDS = 50_000
GROUP_ROWS = 150_000
# A partition with at most this many planned raw records keeps its validated events in memory, as one key
# group, and is read in batches of that size: spooling them to disk and reading them back (and splitting them by
# group) costs more than holding them, and every polars step has a fixed cost per batch (a pass of its threads).
# 1M plain recompute (partitions of 121k-263k records), 3 runs each: spooled, 20k batches 1.67-1.80 s (2.4 CPU
# s, 269-286 MB); held, 20k batches 1.41-1.65 s (2.1 CPU s, 309-375 MB); held, 65k batches 1.10-1.31 s; held,
# whole-partition batches 0.97-1.18 s (1.5 CPU s, 299-367 MB). The 10M incident's partitions (1.2M+) are spooled.
IN_MEMORY_RECORDS = 300_000
# Truth alone (nothing compared) of a range of at most this many planned raw records is kept in memory (about 45
# bytes a result) instead of spooled: 1M results are written to Parquet from memory in 0.05 s, from IPC parts in
# 0.064 s after 40 MB written and read back. Bounded by the whole range, so a topic of many small partitions spools;
# a recovery that also compares spools it (held, it put the 1M recover at 540-598 MB instead of about 400).
HELD_TRUTH_RECORDS = 2_000_000
# Where partitions run in worker processes (kafka-python reads: it decodes in Python), a process is started
# afresh for each partition above this many planned records (raw + outputs), so what one partition's frames
# left behind in the allocator is not carried into the next; below it, starting a process (about 0.9 CPU s of
# imports) costs more than it saves: workers then take several partitions.
FRESH_PROCESS_RECORDS = 1_000_000
# the steps whose wall time each partition measures (as the in-memory engine does for the whole range)
STEPS: tuple[str, ...] = ("truth", "originals", "compare")


@dataclass(frozen=True)
class PartitionTask:
    """Everything a worker needs to recover one partition."""

    spec: PipelineSpec
    partition: int
    raw_source: Source
    raw_plan: PartitionPlan
    outputs_source: Source | None  # None: truth only (no outputs read, nothing compared)
    outputs_plan: PartitionPlan | None
    from_ms: int
    to_ms: int
    slack_ms: int
    emulate_grace: bool
    abs_tol: float
    rel_tol: float
    client: str
    work_dir: str
    time_basis: str = KAFKA_TIME
    quality: bool = True  # measure gaps and quality figures (truth alone needs none)
    hold_truth: bool = False  # keep the truth in memory (a small range) instead of spooling it


@dataclass
class PartitionOutcome:
    """What one partition's recovery keeps in memory; the big frames are in ``parts``."""

    partition: int
    raw_read: PartitionRead
    outputs_read: PartitionRead | None
    records_in_range: int
    raw_keys: list[str]
    output_keys: list[str]
    event_ids: pl.Series  # 64-bit hashes of the unique event ids (cross-partition duplicates)
    quality: DedupResult  # without its events (event_count set)
    quarantine: pl.DataFrame
    outputs_quarantine: pl.DataFrame
    metrics_seen: list[str]
    corrections: pl.DataFrame
    counts: pl.DataFrame  # summary_counts of the partition's comparison
    parts: dict[str, list[Part]]  # comparison / truth / originals -> spooled parts (files, or frames held)
    skew: StampSkew | None = None  # valid events stamped far from their event time
    timings_s: dict[str, float] = field(default_factory=dict)  # truth / originals / compare, this partition


def recover_partition(task: PartitionTask, progress: ProgressSink) -> PartitionOutcome:
    """Recover one partition: replay + validate, replay + decode the outputs, then key group by key group
    dedup, recompute and compare; what is big goes to spooled parts. Without outputs: truth only."""
    spec, p = task.spec, task.partition
    timings = dict.fromkeys(STEPS, 0.0)
    mark = time.monotonic()
    # both clients first: a connected client rides out a broker restart, a new one may time out meanwhile
    raw_reader = cached_reader(task.raw_source, task.client)
    out_reader = cached_reader(task.outputs_source, task.client) if task.outputs_source is not None else None
    small = held_in_memory(task.raw_plan)
    raw_job = PartitionJob(
        task.raw_source,
        task.from_ms,
        spec.lookback_events,
        spec.layout,
        None,
        _batch_records(task.raw_plan),
        "raw",
        task.client,
        task.to_ms,
    )
    events = Spool(task.work_dir, "events", p, events_schema(spec.value_fields), in_memory=small)
    events_sink = EventSink(spec, task.from_ms, task.to_ms, task.slack_ms, events, task.time_basis)
    raw_read = run_partition(raw_reader, task.raw_plan, raw_job, events_sink, progress)
    quarantine = events_sink.bad()
    # the read's batches (the compiled reader's buffers are glibc's) are spooled or held as events: give their pages
    # back before the next step's peak (without it the 1m recover peaked at 540-600 MB instead of about 400)
    trim_memory()
    timings["truth"] += time.monotonic() - mark
    mark = time.monotonic()
    originals = Spool(task.work_dir, "originals", p, OUTPUTS)
    out_sink = OutputSink(originals, spec)
    outputs_read = None
    if out_reader is not None and task.outputs_source is not None and task.outputs_plan is not None:
        out_batch = _batch_records(task.outputs_plan)
        out_job = PartitionJob(task.outputs_source, None, 0, None, None, out_batch, "outputs", task.client)
        outputs_read = run_partition(out_reader, task.outputs_plan, out_job, out_sink, NoProgress())
        trim_memory()
    timings["originals"] += time.monotonic() - mark
    # key group by key group: only one group's events, truth and outputs are in memory at a time. Emulating
    # the grace policy needs the partition's watermark, which every key moves: then the partition is one group.
    # The spooled events and outputs are split by group in one pass each (a scan per group read them all).
    split: list[Spool] = []

    def events_by_group(key_groups: pl.DataFrame) -> dict[int, pl.LazyFrame]:
        spools = events.split_by(key_groups)
        split.extend(spools.values())
        events.remove()
        return by_group(spools, key_groups, events.schema)

    grouped = KeyGroupDedup(
        events.lazy(),
        quarantine=quarantine,
        fields=spec.layout,
        max_rows=None if task.emulate_grace or small else GROUP_ROWS,
        coverage=Coverage({p: raw_read.coverage}, task.to_ms),
        split=events_by_group,
        quality=task.quality,
    )
    published: Originals | GroupedOriginals | None = None
    if outputs_read is not None:
        published = Originals(originals.lazy())
        if grouped.key_groups is not None:
            spools = originals.split_by(grouped.key_groups)
            split.extend(spools.values())
            published = GroupedOriginals(grouped.key_groups, by_group(spools, grouped.key_groups, OUTPUTS))
    truths = Spool(task.work_dir, "truth", p, RESULTS, in_memory=task.hold_truth)
    comparisons = Spool(task.work_dir, "comparison", p, COMPARISON)
    groups = recover_key_groups(
        grouped,
        published,
        spec,
        task.from_ms,
        task.to_ms,
        abs_tol=task.abs_tol,
        rel_tol=task.rel_tol,
        emulate_grace=task.emulate_grace,
        truths=truths,
        comparisons=comparisons,
        timings=timings,
    )
    events.remove()
    for spool in split:
        spool.remove()
    return PartitionOutcome(
        partition=p,
        raw_read=raw_read,
        outputs_read=outputs_read,
        records_in_range=events_sink.in_range,
        raw_keys=groups.raw_keys,
        output_keys=sorted(out_sink.keys),
        event_ids=groups.event_ids(),
        quality=grouped.result(),
        quarantine=quarantine,
        outputs_quarantine=out_sink.bad(),
        metrics_seen=sorted(out_sink.metrics),
        corrections=groups.corrections(),
        counts=groups.counts(),
        parts={"comparison": comparisons.held(), "truth": truths.held(), "originals": originals.held()},
        skew=events_sink.skew,
        timings_s=timings,
    )


def held_in_memory(plan: PartitionPlan) -> bool:
    """Whether a partition of ``plan`` is small enough to be read in one batch and held in memory."""
    return plan.records <= IN_MEMORY_RECORDS


def _batch_records(plan: PartitionPlan) -> int:
    """Records per replayed batch: a small partition's whole range at once, else ``BATCH_RECORDS``."""
    return IN_MEMORY_RECORDS if held_in_memory(plan) else BATCH_RECORDS


def by_group(spools: dict[int, Spool], key_groups: pl.DataFrame, schema: pl.Schema) -> dict[int, pl.LazyFrame]:
    """Each group's rows (an empty frame for a group without any), and group -1: keys in no group."""
    ids = {*key_groups.get_column("_group").unique().to_list(), -1}
    return {g: spools[g].lazy() if g in spools else empty(schema).lazy() for g in ids}


@dataclass
class Originals:
    """The published outputs of a partition (or a Spark group task) as one frame, read for a set of keys at a time
    (:class:`GroupedOriginals` reads them by key group)."""

    frame: pl.LazyFrame

    def of(self, keys: pl.Series) -> pl.LazyFrame:
        """The outputs of ``keys``."""
        return self.frame.filter(pl.col("key").is_in(keys.implode()))

    def others(self, known: pl.Series) -> pl.LazyFrame:
        """The outputs of keys not in ``known`` (keys without a valid raw event)."""
        return self.frame.filter(~pl.col("key").is_in(known.implode()))


@dataclass
class GroupedOriginals:
    """The published outputs spooled by key group: a group's outputs are read without the others'."""

    key_groups: pl.DataFrame  # (key, _group)
    parts: dict[int, pl.LazyFrame]  # by group; -1: outputs of keys without a valid raw event

    def of(self, keys: pl.Series) -> pl.LazyFrame:
        wanted = self.key_groups.filter(pl.col("key").is_in(keys.implode())).get_column("_group").unique()
        frames = [self.parts[g] for g in sorted(wanted.to_list())]
        whole = pl.concat(frames) if frames else empty(OUTPUTS).lazy()
        return whole.filter(pl.col("key").is_in(keys.implode()))

    def others(self, known: pl.Series) -> pl.LazyFrame:
        return self.parts[-1].filter(~pl.col("key").is_in(known.implode()))


@dataclass
class KeyGroupResults:
    """What the key groups of a partition (or of a Spark group task) give besides their spooled parts."""

    raw_keys: list[str] = field(default_factory=list)
    hashes: list[pl.Series] = field(default_factory=list)  # 64-bit hashes of the unique event ids, per group
    correction_parts: list[pl.DataFrame] = field(default_factory=list)
    count_parts: list[pl.DataFrame] = field(default_factory=list)

    def event_ids(self) -> pl.Series:
        return pl.concat(self.hashes) if self.hashes else pl.Series(dtype=pl.UInt64)

    def corrections(self) -> pl.DataFrame:
        return concat_or_empty(self.correction_parts, CORRECTIONS)

    def counts(self) -> pl.DataFrame:
        return pl.concat(self.count_parts) if self.count_parts else summary_counts(empty(COMPARISON))


def recover_key_groups(
    grouped: KeyGroupDedup,
    originals: Originals | GroupedOriginals | None,
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    abs_tol: float,
    rel_tol: float,
    emulate_grace: bool,
    truths: Spool,
    comparisons: Spool,
    timings: dict[str, float] | None = None,
) -> KeyGroupResults:
    """Recompute each key group's truth (to ``truths``) and compare it with the originals of its keys (to
    ``comparisons``); outputs of keys without a valid raw event are all extra (or published to the wrong
    partition). Without originals: truth only. ``timings`` adds up the seconds of "truth" and "compare"."""
    timings = timings if timings is not None else dict.fromkeys(STEPS, 0.0)
    window = {"from_ms": from_ms, "to_ms": to_ms}
    results = KeyGroupResults()

    def compare_part(published: pl.DataFrame, truth: pl.DataFrame) -> None:
        started = time.monotonic()
        comparison = compare(published, truth, spec, **window, abs_tol=abs_tol, rel_tol=rel_tol)
        results.correction_parts.append(corrections_from(comparison))
        results.count_parts.append(summary_counts(comparison))
        comparisons.write(comparison)
        timings["compare"] += time.monotonic() - started

    mark = time.monotonic()
    for unique in grouped.groups():
        stop_point()
        keys = unique.get_column("key").unique()
        results.raw_keys.extend(keys.to_list())
        results.hashes.append(unique.get_column("event_id").hash())
        truth = recompute(unique, spec, **window, emulate_grace=emulate_grace, presorted=True)
        del unique
        truths.write(truth)
        timings["truth"] += time.monotonic() - mark
        if originals is not None:
            # streamed: the parts filtered as they are read
            compare_part(originals.of(keys).collect(engine="streaming"), truth)
        del truth
        mark = time.monotonic()
    if originals is not None:
        known = pl.Series(results.raw_keys, dtype=pl.String)
        orphans = originals.others(known).collect(engine="streaming")
        if orphans.height:
            compare_part(orphans, empty(RESULTS))
    return results


def can_partition(raw_source: Source, outputs_source: Source) -> bool:
    """Both sides are of one kind (Kafka topics, or archives) so partitions can be paired."""
    return isinstance(raw_source, KafkaSource) == isinstance(outputs_source, KafkaSource)


def misalignment(
    raw_keys: dict[int, list[str]], output_keys: dict[int, list[str]], event_ids: list[pl.Series]
) -> str | None:
    """Why per-partition results would not add up to the whole range's (None when they do).

    ``raw_keys`` / ``output_keys``: the keys each partition's raw events / outputs hold; ``event_ids``: per
    partition, hashes of its unique event ids. A hash collision can only report a misalignment that is not
    there (the safe direction: the range is then recovered in memory).
    """
    owner: dict[str, int] = {}
    for partition, keys in sorted(raw_keys.items()):
        for key in keys:
            if owner.setdefault(key, partition) != partition:
                return f"key {key!r} has raw events in partitions {owner[key]} and {partition}"
    unowned: dict[str, int] = {}
    for partition, keys in sorted(output_keys.items()):
        for key in keys:
            home = owner.get(key)
            if home is None:
                home = unowned.setdefault(key, partition)
            if home != partition:
                return f"key {key!r} has outputs in partition {partition} but its raw events or outputs in {home}"
    ids = pl.concat(event_ids) if event_ids else pl.Series(dtype=pl.UInt64)
    if ids.n_unique() != ids.len():
        return "an event id appears in more than one partition"
    return None


@dataclass
class PartitionedRecovery:
    """The per-partition results of a range, merged; big frames stay in spooled parts under ``work_dir``."""

    raw: ReplayResult
    outputs: ReplayResult | None  # None: truth only
    quality: DedupResult
    quarantine: pl.DataFrame
    outputs_quarantine: pl.DataFrame
    records_in_range: int
    metrics_seen: set[str]
    corrections: pl.DataFrame
    counts: pl.DataFrame  # summary_counts, all partitions
    parts: dict[str, list[Part]]  # files, or frames held in memory
    work_dir: Path
    skew: StampSkew | None = None
    timings_s: dict[str, float] = field(default_factory=dict)  # per step, summed over the partitions

    def lazy(self, name: str) -> pl.LazyFrame:
        """The ``comparison``, ``truth`` or ``originals`` parts as one lazy frame (partition order)."""
        schema = {"comparison": COMPARISON, "truth": RESULTS, "originals": OUTPUTS}[name]
        return scan_parts(self.parts.get(name, []), schema)

    def loader(self, name: str) -> Callable[[], pl.DataFrame]:
        return lambda: self.lazy(name).collect()


def new_work_dir(near: Path | None) -> Path:
    """A scratch directory for the parts, next to the fix set when there is one (same file system)."""
    base = near.parent if near is not None else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".recover-parts-", dir=base))


def remove_when_unused(owner: object, work_dir: Path) -> None:
    """Delete ``work_dir`` once ``owner`` is garbage (or at exit): the parts are only read through it."""
    weakref.finalize(owner, shutil.rmtree, str(work_dir), True)


def outputs_from_ms(spec: PipelineSpec, from_ms: int | None) -> int | None:
    """Kafka time from which to read the output topic: the range start, earlier by ``[outputs] lookback_ms``
    when the job stamps results before their range (Quix Streams: a count window's oldest event)."""
    return None if from_ms is None else from_ms - spec.outputs.lookback_ms


def plan_topics(
    spec: PipelineSpec,
    raw_source: Source,
    outputs_source: Source | None,
    from_ms: int,
    to_ms: int,
    slack_ms: int,
    outputs_slack_ms: int,
    time_basis: str,
    client: str = DEFAULT_CLIENT,
) -> tuple[Snapshot, Snapshot | None]:
    """Both topics' offsets snapshotted for a range (the raw events earlier by the metrics' lookback, the outputs
    by ``[outputs] lookback_ms``); :class:`Unpaired` when their partitions differ. No outputs: None for them."""
    raw_snap = plan(
        raw_source,
        from_ms=from_ms,
        to_ms=to_ms,
        lookback_ms=spec.lookback_ms,
        lookback_events=spec.lookback_events,
        slack_ms=slack_ms,
        time_basis=time_basis,
        client=client,
    )
    if outputs_source is None:
        return raw_snap, None
    out_snap = plan(
        outputs_source,
        from_ms=outputs_from_ms(spec, from_ms),
        to_ms=to_ms,
        slack_ms=outputs_slack_ms,
        time_basis=time_basis,
        client=client,
    )
    raw, out = sorted(plans_by_partition(raw_snap)), sorted(plans_by_partition(out_snap))
    if raw != out:
        raise Unpaired(f"the raw topic has partitions {raw} and the output topic {out}")
    return raw_snap, out_snap


def plans_by_partition(snapshot: Snapshot) -> dict[int, PartitionPlan]:
    """A snapshot's plans by partition number."""
    return {p.partition: p for p in snapshot.partitions}


def recover_partitions(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    raw_source: Source,
    outputs_source: Source | None,
    outputs_slack_ms: int,
    work_dir: Path,
    workers: int = 1,
    slack_ms: int,
    emulate_grace: bool = False,
    abs_tol: float,
    rel_tol: float,
    quiet: bool = True,
    client: str,
    time_basis: str = KAFKA_TIME,
    quality: bool = True,
) -> tuple[PartitionedRecovery, str | None]:
    """Recover every partition of ``[from_ms, to_ms)``; returns the merged results and the misalignment, if any.

    Both topics' offsets are snapshotted first; each worker then reads exactly its partitions' planned ranges.
    Without ``outputs_source``, truth only: nothing is compared (no corrections, no comparison parts).
    ``quality=False``: events and duplicates are counted, gaps and quality figures not measured.
    """
    started = time.monotonic()
    raw_snap, out_snap = plan_topics(
        spec, raw_source, outputs_source, from_ms, to_ms, slack_ms, outputs_slack_ms, time_basis, client
    )
    raw_plans = plans_by_partition(raw_snap)
    out_plans = plans_by_partition(out_snap) if out_snap is not None else {}
    tasks = [
        PartitionTask(
            spec,
            p,
            raw_source,
            raw_plans[p],
            outputs_source,
            out_plans.get(p),
            from_ms,
            to_ms,
            slack_ms,
            emulate_grace,
            abs_tol,
            rel_tol,
            client,
            str(work_dir),
            time_basis,
            quality,
            outputs_source is None and sum(q.records for q in raw_plans.values()) <= HELD_TRUTH_RECORDS,
        )
        for p in sorted(raw_plans, key=lambda q: -(raw_plans[q].records + (out_plans[q].records if out_plans else 0)))
    ]
    outcomes = _run(tasks, workers, progress_enabled(quiet), _label(raw_source))
    outcomes.sort(key=lambda o: o.partition)
    elapsed = time.monotonic() - started
    merged = _merge(outcomes, raw_snap, out_snap, work_dir, elapsed)
    why = misalignment(
        {o.partition: o.raw_keys for o in outcomes},
        {o.partition: o.output_keys for o in outcomes},
        [o.event_ids for o in outcomes],
    )
    return merged, why


class Unpaired(ConfigError):
    """The two topics' partitions cannot be paired."""


def _label(source: Source) -> str:
    return source.topic if isinstance(source, KafkaSource) else "archive"


def _planned(task: PartitionTask) -> int:
    return task.raw_plan.records + (task.outputs_plan.records if task.outputs_plan is not None else 0)


def _run(tasks: list[PartitionTask], workers: int, show: bool, label: str) -> list[PartitionOutcome]:
    first = tasks[0].raw_source if tasks else None
    with PartitionProgress(label, enabled=show) as progress:
        return run_tasks(
            recover_partition,
            tasks,
            workers=workers,
            progress=progress,
            in_process=not isinstance(first, KafkaSource),
            processes=first is not None and decodes_in_python(first, tasks[0].client),
            fresh_process_per_task=any(_planned(task) > FRESH_PROCESS_RECORDS for task in tasks),
            held=all(held_in_memory(task.raw_plan) for task in tasks),
        )


def _merge(
    outcomes: list[PartitionOutcome], raw_snap: Snapshot, out_snap: Snapshot | None, work_dir: Path, elapsed: float
) -> PartitionedRecovery:
    quality = DedupResult(
        empty(EVENTS),  # the merged result keeps no events (they stay in the partitions' parts)
        concat_or_empty([o.quality.duplicates for o in outcomes], DUPLICATES).sort("partition", "offset"),
        concat_or_empty([o.quality.gaps for o in outcomes], GAPS),
        concat_or_empty([o.quality.by_key for o in outcomes], KEY_STATS).sort("key"),
        concat_or_empty([o.quality.by_partition for o in outcomes], PARTITION_STATS).sort("partition"),
        sum(o.quality.counts()["events"] for o in outcomes),
        measured=all(o.quality.measured for o in outcomes),
    )
    raw = ReplayResult(raw_snap, {o.partition: o.raw_read for o in outcomes}, None, None, elapsed, kept=False)
    outputs = None
    if out_snap is not None:
        reads = {o.partition: o.outputs_read for o in outcomes if o.outputs_read is not None}
        outputs = ReplayResult(out_snap, reads, None, None, elapsed, kept=False)
    counts = [o.counts for o in outcomes if o.counts.height]
    skew = StampSkew(outcomes[0].skew.slack_ms if outcomes and outcomes[0].skew else 0)
    for o in outcomes:
        if o.skew is not None:
            skew.merge(o.skew)
    return PartitionedRecovery(
        raw=raw,
        outputs=outputs,
        quality=quality,
        quarantine=concat_or_empty([o.quarantine for o in outcomes], QUARANTINE),
        outputs_quarantine=concat_or_empty([o.outputs_quarantine for o in outcomes], QUARANTINE),
        records_in_range=sum(o.records_in_range for o in outcomes),
        metrics_seen={m for o in outcomes for m in o.metrics_seen},
        corrections=concat_or_empty([o.corrections for o in outcomes], CORRECTIONS),
        counts=pl.concat(counts) if counts else summary_counts(empty(COMPARISON)),
        parts={name: [x for o in outcomes for x in o.parts[name]] for name in ("comparison", "truth", "originals")},
        work_dir=work_dir,
        skew=skew,
        timings_s={step: sum(o.timings_s.get(step, 0.0) for o in outcomes) for step in STEPS},
    )
