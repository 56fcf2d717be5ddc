"""One-shot recovery of a range: replay, validate, dedup, recompute, compare, fix set.

:func:`recover` is what ``recovery recover`` and the incident notebooks call. Every input is checked
before anything is written, and the fix set is written atomically at the end, so a failing run leaves
nothing behind. The steps one by one are in :mod:`recovery.pipeline.steps`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.fixes.fixset import FixSet, corrections_from, fixset_from, status_counts, write_fixset
from recovery.fixes.manifest import RunFacts, parameters, provenance, quality
from recovery.frames import STATUSES
from recovery.kafka.client import DEFAULT_CLIENT, check_client
from recovery.pipeline.compare import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    ComparisonSummary,
    check_tolerances,
    compare,
    summarize,
    summarize_counts,
)
from recovery.pipeline.on_spark import SPARK, recover_on_spark
from recovery.pipeline.partitioned import (
    PartitionedRecovery,
    Unpaired,
    can_partition,
    new_work_dir,
    recover_partitions,
    remove_when_unused,
)
from recovery.pipeline.steps import (
    FrameOrLoader,
    SourceLike,
    Truth,
    as_source,
    check_metric_names,
    check_raw_found,
    checked_range,
    originals_for_range,
    outputs_slack_ms,
    resolve,
    truth_for_range,
)
from recovery.pipeline.timebasis import check_compared
from recovery.replay.bounded import DEFAULT_SLACK_MS, ReplayResult
from recovery.replay.plan import KAFKA_TIME, check_time_basis
from recovery.replay.pool import check_workers
from recovery.source import Source
from recovery.spark.session import SparkOptions
from recovery.spec import PipelineSpec
from recovery.timerange import TimeRange, format_ms, parse_time_ms

IN_MEMORY = "in-memory"
BY_PARTITION = "by-partition"
AUTO = "auto"
ENGINES: tuple[str, ...] = (AUTO, BY_PARTITION, IN_MEMORY, SPARK)
BY_KEY_ENGINES = (BY_PARTITION, SPARK)  # they need keys partitioned alike in both topics, and refuse otherwise


@dataclass(frozen=True)
class RecoverOptions:
    """How a recovery runs, checked when built (the keyword arguments of :func:`recover`)."""

    workers: int = 1
    slack_ms: int = DEFAULT_SLACK_MS
    abs_tol: float = DEFAULT_ABS_TOL
    rel_tol: float = DEFAULT_REL_TOL
    emulate_grace: bool = False
    quiet: bool = True
    client: str = DEFAULT_CLIENT
    engine: str = AUTO
    time_basis: str = KAFKA_TIME  # "event": whole partitions by offset, events judged by event time
    spark: SparkOptions | None = None  # engine "spark": the master and the chunk size (defaults when None)

    def __post_init__(self) -> None:
        check_tolerances(self.abs_tol, self.rel_tol)
        check_engine(self.engine)
        check_time_basis(self.time_basis)
        check_client(self.client)
        check_workers(self.workers)
        if self.slack_ms < 0:
            raise ConfigError(f"slack_ms must be >= 0, got {self.slack_ms}")

    def replay_options(self, settings: KafkaSettings | None) -> dict[str, Any]:
        """The keyword arguments of :func:`truth_for_range` / :func:`originals_for_range`."""
        return {
            "settings": settings,
            "workers": self.workers,
            "slack_ms": self.slack_ms,
            "quiet": self.quiet,
            "client": self.client,
            "time_basis": self.time_basis,
        }


@dataclass
class EngineResult:
    """What an engine (in memory, or partition by partition) found, before the fix set is built."""

    truth: Truth
    originals: FrameOrLoader
    originals_count: int
    outputs_bad: pl.DataFrame  # QUARANTINE of the output records
    outputs: ReplayResult
    comparison: FrameOrLoader
    review_comparison: pl.DataFrame | pl.LazyFrame
    summary: ComparisonSummary
    corrections: pl.DataFrame
    counts: dict[str, int]
    engine: str
    notes: list[str] = field(default_factory=list)
    owner: PartitionedRecovery | None = None  # keeps the spooled parts of a per-partition recovery alive


@dataclass
class RecoveryReport:
    """Everything a recovery found, and the fix set it wrote.

    ``engine`` says how it ran: ``by-partition`` (each partition on its own, big frames in spooled parts,
    loaded on first access of ``comparison`` / ``originals`` / ``truth.results``) or ``in-memory``.
    """

    fixset: FixSet
    path: Path | None
    found: EngineResult
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def truth(self) -> Truth:
        return self.found.truth

    @property
    def summary(self) -> ComparisonSummary:
        return self.found.summary

    @property
    def engine(self) -> str:
        return self.found.engine

    @property
    def notes(self) -> list[str]:
        return self.found.notes

    @property
    def outputs_quarantine(self) -> pl.DataFrame:
        """QUARANTINE of the output records that could not be decoded."""
        return self.found.outputs_bad

    @property
    def outputs_replay(self) -> ReplayResult:
        return self.found.outputs

    @property
    def comparison(self) -> pl.DataFrame:
        """COMPARISON of every (key, metric, window) in the range."""
        self.found.comparison = resolve(self.found.comparison)
        return self.found.comparison

    @property
    def originals(self) -> pl.DataFrame:
        """OUTPUTS: the results originally published for the range."""
        self.found.originals = resolve(self.found.originals)
        return self.found.originals

    @property
    def originals_count(self) -> int:
        """Decoded original results (without loading them)."""
        return self.found.originals_count

    def lines(self) -> list[str]:
        """The short summary ``recovery recover`` prints."""
        q = self.fixset.content["quality"]
        c = self.fixset.content["corrections"]
        out = [
            f"range {format_ms(self.fixset.content['range']['from_ms'])} .. "
            f"{format_ms(self.fixset.content['range']['to_ms'])} (incident {self.fixset.incident})",
            f"raw: {self.truth.replay.count:,} records, {q['events']:,} valid events, "
            f"{q['quarantined']:,} quarantined, {q['duplicates']:,} duplicates "
            f"({q['conflicting_duplicates']:,} conflicting; the first copy by partition and offset is kept), "
            f"{q['gaps']:,} seq gaps: {q['lost_events']:,} events "
            f"lost upstream (unrecoverable), {q['missing_events'] - q['lost_events']:,} more possibly malformed"
            + (
                f", {q['outside_range_gaps']:,} more gaps reach outside what was read (not counted as lost)"
                if q.get("outside_range_gaps")
                else ""
            ),
            f"outputs: {self.outputs_replay.count:,} records, {self.originals_count:,} results",
            *self.summary.lines(),
            f"fix set: {c['upsert']:,} upserts, {c['retract']:,} retractions, digest {self.fixset.digest}",
        ]
        out.extend(self.notes)
        if self.path is not None:
            out.append(f"written to {self.path}; next: recovery approve {self.path} --reviewer NAME")
        return out


def default_incident(from_ms: int, to_ms: int) -> str:
    """An incident id derived from the range (deterministic, so digests are too)."""

    def compact(ms: int) -> str:
        return format_ms(ms).replace("-", "").replace(":", "").replace(".000", "")

    return f"range-{compact(from_ms)}-{compact(to_ms)}"


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`; :class:`ConfigError` otherwise."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    return engine


def _in_memory(
    spec: PipelineSpec,
    rng: TimeRange,
    raw: Source,
    out: Source,
    settings: KafkaSettings | None,
    opts: RecoverOptions,
    timings: dict[str, float],
) -> EngineResult:
    mark = time.monotonic()
    replaying = opts.replay_options(settings)
    truth = truth_for_range(spec, rng.from_ms, rng.to_ms, source=raw, emulate_grace=opts.emulate_grace, **replaying)
    timings["truth"] = time.monotonic() - mark
    mark = time.monotonic()
    originals, outputs_bad, outputs = originals_for_range(spec, rng.from_ms, rng.to_ms, source=out, **replaying)
    timings["originals"] = time.monotonic() - mark
    mark = time.monotonic()
    comparison = compare(
        originals, truth.results, spec, from_ms=rng.from_ms, to_ms=rng.to_ms, abs_tol=opts.abs_tol, rel_tol=opts.rel_tol
    )
    summary = summarize(comparison)
    timings["compare"] = time.monotonic() - mark
    notes = _check_time_basis(truth, comparison.height, opts, raw)
    return EngineResult(
        truth=truth,
        originals=originals,
        originals_count=originals.height,
        outputs_bad=outputs_bad,
        outputs=outputs,
        comparison=comparison,
        review_comparison=comparison,
        summary=summary,
        corrections=corrections_from(comparison),
        counts=status_counts(comparison),
        engine=IN_MEMORY,
        notes=notes,
    )


def _by_partition(
    spec: PipelineSpec,
    rng: TimeRange,
    raw: Source,
    out: Source,
    opts: RecoverOptions,
    timings: dict[str, float],
    work_dir: Path,
) -> tuple[EngineResult | None, str | None]:
    """The per-partition recovery (here, or on Spark), or (None, why) when the topics are not partitioned alike."""
    mark = time.monotonic()
    shared: dict[str, Any] = {
        "raw_source": raw,
        "outputs_source": out,
        "outputs_slack_ms": outputs_slack_ms(spec, opts.slack_ms),
        "work_dir": work_dir,
        "slack_ms": opts.slack_ms,
        "emulate_grace": opts.emulate_grace,
        "abs_tol": opts.abs_tol,
        "rel_tol": opts.rel_tol,
        "client": opts.client,
        "time_basis": opts.time_basis,
    }
    try:
        if opts.engine == SPARK:
            found, why = recover_on_spark(spec, rng.from_ms, rng.to_ms, options=opts.spark, **shared)
        else:
            found, why = recover_partitions(
                spec, rng.from_ms, rng.to_ms, workers=opts.workers, quiet=opts.quiet, **shared
            )
    except Unpaired as exc:
        return None, str(exc)
    timings["partitions"] = time.monotonic() - mark
    timings.update(found.timings_s)  # each step's time summed over the partitions (workers run in parallel)
    if why is not None:
        return None, why
    check_raw_found(found.raw.count, found.records_in_range, rng, raw, opts.time_basis)
    check_metric_names(spec, found.metrics_seen, out.describe())
    mark = time.monotonic()
    summary = summarize_counts(found.counts)
    truth = Truth(found.loader("truth"), found.quality, found.quarantine, found.raw, found.skew)
    notes = _check_time_basis(truth, sum(summary.counts[s] for s in STATUSES), opts, raw)
    counts = summary.counts
    timings["merge"] = time.monotonic() - mark
    assert found.outputs is not None  # the outputs were given
    outputs = found.outputs
    originals_count = sum(r.records for r in outputs.reads.values()) - found.outputs_quarantine.height
    return (
        EngineResult(
            truth=truth,
            originals=found.loader("originals"),
            originals_count=originals_count,
            outputs_bad=found.outputs_quarantine,
            outputs=outputs,
            comparison=found.loader("comparison"),
            review_comparison=found.lazy("comparison"),
            summary=summary,
            corrections=found.corrections,
            counts=counts,
            engine=SPARK if opts.engine == SPARK else BY_PARTITION,
            notes=notes,
            owner=found,
        ),
        None,
    )


def _check_time_basis(truth: Truth, compared: int, opts: RecoverOptions, raw: Source) -> list[str]:
    """Refuse events read but nothing compared when Kafka and event time disagree; the lines to print."""
    skew = truth.skew
    notes = check_compared(truth.events.counts()["events"], compared, skew, opts.time_basis, raw.describe())
    disagree = skew is not None and skew.disagrees and opts.time_basis == KAFKA_TIME
    return notes + ([skew.line()] if disagree and skew is not None else [])


def recover(
    spec: PipelineSpec,
    from_ms: int | str,
    to_ms: int | str,
    *,
    out_dir: str | Path | None = None,
    incident: str | None = None,
    settings: KafkaSettings | None = None,
    raw_source: SourceLike = None,
    outputs_source: SourceLike = None,
    workers: int = 1,
    slack_ms: int = DEFAULT_SLACK_MS,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
    emulate_grace: bool = False,
    quiet: bool = True,
    overwrite: bool = False,
    now: int | None = None,
    client: str = DEFAULT_CLIENT,
    engine: str = AUTO,
    time_basis: str = KAFKA_TIME,
    spark: SparkOptions | None = None,
) -> RecoveryReport:
    """Recover ``[from_ms, to_ms)``: truth vs the original outputs, classified, as a fix set in ``out_dir``.

    Times are epoch milliseconds or ISO-8601 strings (UTC when no zone is given). ``engine``: ``auto`` (the
    default) recovers partition by partition (:mod:`recovery.pipeline.partitioned`: bounded memory, every step in
    parallel) and falls back to ``in-memory`` when the topics are not partitioned alike by key;
    ``by-partition`` refuses that fallback; ``spark`` runs the per-partition steps as Spark tasks in offset
    chunks (:mod:`recovery.pipeline.on_spark`; ``spark``: master and chunk size) and refuses it too. All give
    the same fix set and digest. ``time_basis``: ``kafka``
    (the default) finds the range by Kafka timestamp; ``event`` reads whole partitions by offset (bounded by the
    end offsets snapshotted at the start) and judges events by their event time only.
    """
    rng = checked_range(parse_time_ms(from_ms, name="from"), parse_time_ms(to_ms, name="to"), now=now)
    opts = RecoverOptions(workers, slack_ms, abs_tol, rel_tol, emulate_grace, quiet, client, engine, time_basis, spark)
    if out_dir is not None and Path(out_dir).exists() and any(Path(out_dir).iterdir()) and not overwrite:
        raise DataError(
            f"{str(out_dir)!r} already exists and is not empty",
            path=str(out_dir),
            hint="choose another --out directory (a fix set is never overwritten silently)",
        )
    incident = incident or default_incident(rng.from_ms, rng.to_ms)
    timings: dict[str, float] = {}
    started = time.monotonic()
    raw = as_source(raw_source, spec.topics.raw, settings)
    out = as_source(outputs_source, spec.topics.output, settings)
    found: EngineResult | None = None
    notes: list[str] = []
    if engine != IN_MEMORY and can_partition(raw, out):
        work_dir = new_work_dir(Path(out_dir) if out_dir is not None else None)
        try:
            found, why = _by_partition(spec, rng, raw, out, opts, timings, work_dir)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        if found is None:
            shutil.rmtree(work_dir, ignore_errors=True)
            if engine in BY_KEY_ENGINES:
                raise ConfigError(
                    f"cannot recover partition by partition{' on Spark' if engine == SPARK else ''}: {why}",
                    hint="use --engine in-memory (or auto), which makes no assumption about partitioning",
                )
            notes.append(f"recovered in memory: {why}")
        else:
            assert found.owner is not None
            remove_when_unused(found.owner, work_dir)
    elif engine in BY_KEY_ENGINES:
        raise ConfigError(
            "cannot recover partition by partition: one side is an archive and the other a topic",
            hint="export both (recovery export) or read both from Kafka, or use --engine in-memory",
        )
    if found is None:
        found = _in_memory(spec, rng, raw, out, settings, opts, timings)
    if spec.layout.seq is None:
        notes.append("the events carry no seq ([events] seq): events lost upstream cannot be detected as gaps")
    found.notes[:0] = notes
    truth, outputs = found.truth, found.outputs
    facts = RunFacts(
        event_counts=truth.events.counts(),
        records=truth.replay.count,
        quarantine=truth.quarantine,
        outputs=outputs.count,
        outputs_quarantined=found.outputs_bad.height,
        raw_source=truth.replay.snapshot.source,
        outputs_source=outputs.snapshot.source,
        raw_end_offsets=dict(truth.replay.snapshot.end_offsets),
        outputs_end_offsets=dict(outputs.snapshot.end_offsets),
        engine=found.engine,
        timings_s=timings,
        time_basis=opts.time_basis,
    )
    fixset = fixset_from(
        found.corrections,
        found.counts,
        spec=spec,
        incident=incident,
        from_ms=rng.from_ms,
        to_ms=rng.to_ms,
        parameters=parameters(spec, abs_tol=abs_tol, rel_tol=rel_tol, slack_ms=slack_ms, emulate_grace=emulate_grace),
        sources={"raw": truth.replay.offsets(), "outputs": outputs.offsets()},
        quality=quality(facts),
        provenance=provenance(facts),
    )
    path = None
    if out_dir is not None:
        mark = time.monotonic()
        review = {
            "comparison": found.review_comparison,
            "quarantine": truth.quarantine,
            "outputs_quarantine": found.outputs_bad,
            "gaps": truth.events.gaps,
            "duplicates": truth.events.duplicates,
            "quality_by_key": truth.events.by_key,
            "quality_by_partition": truth.events.by_partition,
        }
        path = write_fixset(fixset, out_dir, review=review, overwrite=overwrite)
        fixset = FixSet(fixset.corrections, fixset.content, fixset.digest, fixset.provenance, path)
        timings["write"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    return RecoveryReport(fixset=fixset, path=path, found=found, timings_s=timings)
