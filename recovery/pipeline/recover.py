"""One-shot recovery of a range: replay, validate, dedup, recompute, compare, fix set.

:func:`recover` is what ``recovery recover`` and the incident notebooks call. Every input is checked
before anything is written, and the fix set is written atomically at the end, so a failing run leaves
nothing behind. The steps are also available one by one (:func:`truth_for_range`,
:func:`originals_for_range`) for ``recovery recompute`` / ``recovery compare`` and for notebooks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.fixes.fixset import FixSet, corrections_from, fixset_from, status_counts, write_fixset
from recovery.kafka.confluent import DEFAULT_CLIENT, check_client
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    ComparisonSummary,
    check_tolerances,
    compare,
    summarize,
    summarize_counts,
)
from recovery.pipeline.dedup import Coverage, DedupResult, dedup
from recovery.pipeline.partitioned import (
    PartitionedRecovery,
    Unpaired,
    can_partition,
    new_work_dir,
    recover_partitions,
    remove_when_unused,
)
from recovery.records.outputs import decode_outputs
from recovery.records.validate import quarantine_counts, validate
from recovery.replay.bounded import DEFAULT_SLACK_MS, ReplayResult, replay
from recovery.source import FileSource, KafkaSource, Source
from recovery.spec import PipelineSpec
from recovery.timerange import TimeRange, format_ms, now_ms, parse_time_ms

SourceLike = Source | str | Path | Sequence[str | Path] | None


def as_source(value: SourceLike, topic: str, settings: KafkaSettings | None) -> Source:
    """A source from files/globs (an archive), an explicit source, or else the Kafka ``topic``."""
    if isinstance(value, KafkaSource | FileSource):
        return value
    if value is None or (not isinstance(value, str | Path) and len(value) == 0):
        return KafkaSource(topic, settings or KafkaSettings.from_env())
    return FileSource(value)


def checked_range(from_ms: int, to_ms: int, *, now: int | None = None) -> TimeRange:
    """The range, refused when reversed, empty or starting in the future."""
    rng = TimeRange(from_ms, to_ms)
    current = now_ms() if now is None else now
    if rng.from_ms > current:
        raise ConfigError(
            f"the range {rng} starts in the future (now is {format_ms(current)})",
            hint="check the date and the time zone (times without a zone are UTC)",
        )
    return rng


def outputs_slack_ms(spec: PipelineSpec, slack_ms: int) -> int:
    """Kafka time to read of the output topic after the range: window results are published when the
    window closes (up to a window plus grace after its start), and late events arrive up to ``slack_ms`` late.
    """
    return slack_ms + max((m.window_ms or 0) + m.grace_ms for m in spec.metrics)


FrameOrLoader = pl.DataFrame | Callable[[], pl.DataFrame]


def _resolve(value: FrameOrLoader) -> pl.DataFrame:
    return value if isinstance(value, pl.DataFrame) else value()


class Truth:
    """Recomputed truth for a range and what it was computed from.

    ``results`` may be given as a loader (a recovery partition by partition keeps them in Parquet parts);
    it is called on first access.
    """

    def __init__(
        self, results: FrameOrLoader, events: DedupResult, quarantine: pl.DataFrame, replay: ReplayResult
    ) -> None:
        self._results = results
        self.events = events
        self.quarantine = quarantine  # QUARANTINE of the raw records
        self.replay = replay

    @property
    def results(self) -> pl.DataFrame:
        """RESULTS of every metric in the range."""
        self._results = _resolve(self._results)
        return self._results


def check_raw_found(records: int, in_range: int, rng: TimeRange, source: Source) -> None:
    """:class:`DataError` when the replay read nothing, or nothing with a Kafka time inside the range."""
    if records == 0 or in_range == 0:
        raise DataError(
            f"no raw events in {rng} on {source.describe()}",
            hint="check the range and its time zone (UTC), or `recovery kafka status` for what the topic holds",
        )


def truth_for_range(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    source: SourceLike = None,
    settings: KafkaSettings | None = None,
    workers: int = 1,
    slack_ms: int = DEFAULT_SLACK_MS,
    emulate_grace: bool = False,
    quiet: bool = True,
    client: str = DEFAULT_CLIENT,
) -> Truth:
    """Replay the raw events of the range (with lookback), validate, dedup and recompute every metric."""
    raw_source = as_source(source, spec.topics.raw, settings)
    raw = replay(
        raw_source,
        from_ms=from_ms,
        to_ms=to_ms,
        spec=spec,
        slack_ms=slack_ms,
        workers=workers,
        quiet=quiet,
        client=client,
    )
    records = raw.frame()
    in_range = records.filter(pl.col("timestamp_ms").is_between(from_ms, to_ms + slack_ms, closed="left")).height
    check_raw_found(records.height, in_range, TimeRange(from_ms, to_ms), raw_source)
    events, quarantine = validate(records, spec)
    coverage = Coverage({p: r.coverage for p, r in raw.reads.items()}, to_ms)
    quality = dedup(events, quarantine=quarantine, fields=spec.fields, coverage=coverage)
    results = recompute(quality.events, spec, from_ms=from_ms, to_ms=to_ms, emulate_grace=emulate_grace, presorted=True)
    return Truth(results, quality, quarantine, raw)


def originals_for_range(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    source: SourceLike = None,
    settings: KafkaSettings | None = None,
    workers: int = 1,
    slack_ms: int = DEFAULT_SLACK_MS,
    quiet: bool = True,
    client: str = DEFAULT_CLIENT,
) -> tuple[pl.DataFrame, pl.DataFrame, ReplayResult]:
    """(OUTPUTS, QUARANTINE, replay) of the results originally published for the range."""
    out_source = as_source(source, spec.topics.output, settings)
    outputs = replay(
        out_source,
        from_ms=from_ms,
        to_ms=to_ms,
        lookback_ms=0,
        lookback_events=0,
        slack_ms=outputs_slack_ms(spec, slack_ms),
        workers=workers,
        quiet=quiet,
        client=client,
    )
    originals, bad = decode_outputs(outputs.frame())
    check_metric_names(spec, originals, out_source.describe())
    return originals, bad, outputs


def check_metric_names(spec: PipelineSpec, originals: pl.DataFrame | set[str], where: str) -> None:
    """Refuse outputs whose metric names do not match the spec's: a spec metric without any output while the
    outputs hold metrics the spec does not know is a misnamed metric, and would turn into a fix set that
    re-publishes everything as missing. Outputs of other metrics next to a matching spec are fine (a subset).
    ``originals``: the OUTPUTS frame, or the set of metric names it holds.
    """
    if isinstance(originals, pl.DataFrame):
        found = set(originals.get_column("metric").unique().drop_nulls().to_list())
    else:
        found = set(originals)
    known = {m.name for m in spec.metrics}
    unknown, absent = sorted(found - known), sorted(known - found)
    if unknown and absent:
        raise ConfigError(
            f"the outputs in {where} hold metrics the spec does not define ({', '.join(unknown[:5])}) and none of "
            f"the spec's {', '.join(absent[:5])}",
            hint="make the metric names in the spec match the live pipeline's (spec [[metrics]] name = ...)",
        )


IN_MEMORY = "in-memory"
BY_PARTITION = "by-partition"
AUTO = "auto"
ENGINES: tuple[str, ...] = (AUTO, BY_PARTITION, IN_MEMORY)


class RecoveryReport:
    """Everything a recovery found, and the fix set it wrote.

    ``engine`` says how it ran: ``by-partition`` (each partition on its own, big frames in Parquet parts,
    loaded on first access of ``comparison`` / ``originals`` / ``truth.results``) or ``in-memory``.
    """

    def __init__(
        self,
        fixset: FixSet,
        path: Path | None,
        comparison: FrameOrLoader,
        summary: ComparisonSummary,
        truth: Truth,
        originals: FrameOrLoader,
        outputs_quarantine: pl.DataFrame,
        outputs_replay: ReplayResult,
        timings_s: dict[str, float] | None = None,
        *,
        engine: str = IN_MEMORY,
        originals_count: int | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.fixset = fixset
        self.path = path
        self._comparison = comparison
        self.summary = summary
        self.truth = truth
        self._originals = originals
        self.outputs_quarantine = outputs_quarantine
        self.outputs_replay = outputs_replay
        self.timings_s = timings_s or {}
        self.engine = engine
        self._originals_count = originals_count
        self.notes = notes or []
        self._owner: object | None = None  # what keeps the Parquet parts of a per-partition recovery alive

    @property
    def comparison(self) -> pl.DataFrame:
        """COMPARISON of every (key, metric, window) in the range."""
        self._comparison = _resolve(self._comparison)
        return self._comparison

    @property
    def originals(self) -> pl.DataFrame:
        """OUTPUTS: the results originally published for the range."""
        self._originals = _resolve(self._originals)
        return self._originals

    @property
    def originals_count(self) -> int:
        """Decoded original results (without loading them)."""
        if self._originals_count is not None:
            return self._originals_count
        return self.originals.height

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


@dataclass
class _Found:
    """What either engine found, before the fix set is built."""

    truth: Truth
    originals: FrameOrLoader
    originals_count: int
    outputs_bad: pl.DataFrame
    outputs: ReplayResult
    comparison: FrameOrLoader
    review_comparison: pl.DataFrame | pl.LazyFrame
    summary: ComparisonSummary
    corrections: pl.DataFrame
    counts: dict[str, int]
    engine: str
    notes: list[str] = field(default_factory=list)
    owner: PartitionedRecovery | None = None


def _in_memory(
    spec: PipelineSpec,
    rng: TimeRange,
    raw: Source,
    out: Source,
    options: dict[str, Any],
    abs_tol: float,
    rel_tol: float,
) -> _Found:
    timings = options.pop("timings")
    mark = time.monotonic()
    truth = truth_for_range(spec, rng.from_ms, rng.to_ms, source=raw, **options)
    timings["truth"] = time.monotonic() - mark
    mark = time.monotonic()
    options.pop("emulate_grace")
    originals, outputs_bad, outputs = originals_for_range(spec, rng.from_ms, rng.to_ms, source=out, **options)
    timings["originals"] = time.monotonic() - mark
    mark = time.monotonic()
    comparison = compare(
        originals, truth.results, spec, from_ms=rng.from_ms, to_ms=rng.to_ms, abs_tol=abs_tol, rel_tol=rel_tol
    )
    summary = summarize(comparison)
    timings["compare"] = time.monotonic() - mark
    return _Found(
        truth,
        originals,
        originals.height,
        outputs_bad,
        outputs,
        comparison,
        comparison,
        summary,
        corrections_from(comparison),
        status_counts(comparison),
        IN_MEMORY,
    )


def _by_partition(
    spec: PipelineSpec,
    rng: TimeRange,
    raw: Source,
    out: Source,
    options: dict[str, Any],
    abs_tol: float,
    rel_tol: float,
    work_dir: Path,
) -> tuple[_Found | None, str | None]:
    """The per-partition recovery, or (None, why) when the topics are not partitioned alike by key."""
    timings = options["timings"]
    mark = time.monotonic()
    try:
        found, why = recover_partitions(
            spec,
            rng.from_ms,
            rng.to_ms,
            raw_source=raw,
            outputs_source=out,
            outputs_slack_ms=outputs_slack_ms(spec, options["slack_ms"]),
            work_dir=work_dir,
            workers=options["workers"],
            slack_ms=options["slack_ms"],
            emulate_grace=options["emulate_grace"],
            abs_tol=abs_tol,
            rel_tol=rel_tol,
            quiet=options["quiet"],
            client=options["client"],
        )
    except Unpaired as exc:
        return None, str(exc)
    timings["partitions"] = time.monotonic() - mark
    if why is not None:
        return None, why
    check_raw_found(found.raw.count, found.records_in_range, rng, raw)
    check_metric_names(spec, found.metrics_seen, out.describe())
    mark = time.monotonic()
    summary = summarize_counts(found.counts)
    truth = Truth(found.loader("truth"), found.quality, found.quarantine, found.raw)
    counts = summary.counts
    timings["merge"] = time.monotonic() - mark
    originals_count = sum(r.records for r in found.outputs.reads.values()) - found.outputs_quarantine.height
    return (
        _Found(
            truth,
            found.loader("originals"),
            originals_count,
            found.outputs_quarantine,
            found.outputs,
            found.loader("comparison"),
            found.lazy("comparison"),
            summary,
            found.corrections,
            counts,
            BY_PARTITION,
            owner=found,
        ),
        None,
    )


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
) -> RecoveryReport:
    """Recover ``[from_ms, to_ms)``: truth vs the original outputs, classified, as a fix set in ``out_dir``.

    Times are epoch milliseconds or ISO-8601 strings (UTC when no zone is given). ``engine``: ``auto`` (the
    default) recovers partition by partition (:mod:`recovery.pipeline.partitioned`: bounded memory, every step in
    parallel) and falls back to ``in-memory`` when the topics are not partitioned alike by key;
    ``by-partition`` refuses that fallback. Both give the same fix set and digest.
    """
    rng = checked_range(parse_time_ms(from_ms, name="from"), parse_time_ms(to_ms, name="to"), now=now)
    check_tolerances(abs_tol, rel_tol)
    check_engine(engine)
    check_client(client)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if slack_ms < 0:
        raise ConfigError(f"slack_ms must be >= 0, got {slack_ms}")
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
    options: dict[str, Any] = {
        "settings": settings,
        "workers": workers,
        "slack_ms": slack_ms,
        "emulate_grace": emulate_grace,
        "quiet": quiet,
        "client": client,
        "timings": timings,
    }
    found: _Found | None = None
    notes: list[str] = []
    if engine != IN_MEMORY and can_partition(raw, out):
        work_dir = new_work_dir(Path(out_dir) if out_dir is not None else None)
        try:
            found, why = _by_partition(spec, rng, raw, out, options, abs_tol, rel_tol, work_dir)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        if found is None:
            shutil.rmtree(work_dir, ignore_errors=True)
            if engine == BY_PARTITION:
                raise ConfigError(
                    f"cannot recover partition by partition: {why}",
                    hint="use --engine in-memory (or auto), which makes no assumption about partitioning",
                )
            notes.append(f"recovered in memory: {why}")
        else:
            assert found.owner is not None
            remove_when_unused(found.owner, work_dir)
    elif engine == BY_PARTITION:
        raise ConfigError(
            "cannot recover partition by partition: one side is an archive and the other a topic",
            hint="export both (recovery export) or read both from Kafka, or use --engine in-memory",
        )
    if found is None:
        found = _in_memory(spec, rng, raw, out, dict(options), abs_tol, rel_tol)
    found.notes[:0] = notes
    truth, outputs = found.truth, found.outputs
    quality: dict[str, Any] = {
        **truth.events.counts(),
        "records": truth.replay.count,
        "quarantined": truth.quarantine.height,
        "quarantine_reasons": quarantine_counts(truth.quarantine),
        "outputs": outputs.count,
        "outputs_quarantined": found.outputs_bad.height,
    }
    parameters = {
        "abs_tol": abs_tol,
        "rel_tol": rel_tol,
        "slack_ms": slack_ms,
        "emulate_grace": emulate_grace,
        "lookback_ms": spec.lookback_ms,
        "lookback_events": spec.lookback_events,
    }
    provenance = {
        "sources": {
            "raw": truth.replay.snapshot.source,
            "outputs": outputs.snapshot.source,
        },
        "snapshots": {
            "raw_end_offsets": {str(p): o for p, o in truth.replay.snapshot.end_offsets.items()},
            "outputs_end_offsets": {str(p): o for p, o in outputs.snapshot.end_offsets.items()},
        },
        "engine": found.engine,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    fixset = fixset_from(
        found.corrections,
        found.counts,
        spec=spec,
        incident=incident,
        from_ms=rng.from_ms,
        to_ms=rng.to_ms,
        parameters=parameters,
        sources={"raw": truth.replay.offsets(), "outputs": outputs.offsets()},
        quality=quality,
        provenance=provenance,
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
    report = RecoveryReport(
        fixset,
        path,
        found.comparison,
        found.summary,
        truth,
        found.originals,
        found.outputs_bad,
        outputs,
        timings,
        engine=found.engine,
        originals_count=found.originals_count,
        notes=found.notes,
    )
    if found.owner is not None:
        report._owner = found.owner  # keeps the parts (and their work dir) alive as long as the report
    return report
