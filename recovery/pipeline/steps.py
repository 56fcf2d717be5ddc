"""The steps of a recovery one range at a time: truth for a range, the originals published for it, and their
comparison. ``recovery recompute`` and ``recovery compare`` call these; :func:`recovery.pipeline.recover.recover`
runs them all (or their per-partition form) and writes the fix set.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.kafka.client import DEFAULT_CLIENT
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import (
    DEFAULT_ABS_TOL,
    DEFAULT_REL_TOL,
    check_tolerances,
    compare,
)
from recovery.pipeline.dedup import Coverage, DedupResult, dedup
from recovery.pipeline.partitioned import new_work_dir, outputs_from_ms, recover_partitions, remove_when_unused
from recovery.pipeline.timebasis import StampSkew
from recovery.records.outputs import decode_outputs
from recovery.records.validate import validate
from recovery.replay.bounded import DEFAULT_SLACK_MS, ReplayResult, replay
from recovery.replay.plan import EVENT_TIME, KAFKA_TIME
from recovery.source import FileSource, KafkaSource, Source
from recovery.spec import PipelineSpec
from recovery.timerange import TimeRange, format_ms, now_ms

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
    return slack_ms + max(m.lookback_ms for m in spec.metrics)


FrameOrLoader = pl.DataFrame | pl.LazyFrame | Callable[[], pl.DataFrame]


def resolve(value: FrameOrLoader) -> pl.DataFrame:
    if isinstance(value, pl.LazyFrame):
        return value.collect()
    return value if isinstance(value, pl.DataFrame) else value()


class Truth:
    """Recomputed truth for a range and what it was computed from.

    ``results`` may be given as a loader or a lazy frame (a recovery partition by partition keeps them in
    spooled parts); it is collected on first access. ``owner`` keeps those parts alive.
    """

    def __init__(
        self,
        results: FrameOrLoader,
        events: DedupResult,
        quarantine: pl.DataFrame,
        replay: ReplayResult,
        skew: StampSkew | None = None,
        owner: object | None = None,
    ) -> None:
        self._results = results
        self.owner = owner
        self.events = events
        self.quarantine = quarantine  # QUARANTINE of the raw records
        self.replay = replay
        self.skew = skew  # valid events stamped far from their event time (None: not counted)

    @property
    def results(self) -> pl.DataFrame:
        """RESULTS of every metric in the range."""
        self._results = resolve(self._results)
        return self._results

    def lazy_results(self) -> pl.LazyFrame:
        """RESULTS as a lazy frame, without loading spooled parts (to stream them to a file)."""
        if isinstance(self._results, pl.LazyFrame):
            return self._results
        return self.results.lazy()


def check_raw_found(records: int, in_range: int, rng: TimeRange, source: Source, time_basis: str = KAFKA_TIME) -> None:
    """:class:`DataError` when the replay read nothing, or nothing inside the range (by Kafka time, or by event
    time with ``time_basis="event"``)."""
    if records == 0 or in_range == 0:
        by = "event time" if time_basis == EVENT_TIME else "Kafka time"
        other = (
            f"; if the topic was backfilled (Kafka timestamps are the write time), --time-basis {EVENT_TIME}"
            if time_basis == KAFKA_TIME
            else ""
        )
        raise DataError(
            f"no raw events in {rng} (by {by}) on {source.describe()}",
            hint="check the range and its time zone (UTC), or `recovery kafka status` for what the topic holds" + other,
        )


def in_range_expr(from_ms: int, to_ms: int, slack_ms: int, time_basis: str) -> pl.Expr:
    """Which records count as inside the range: Kafka time in ``[from, to + slack)``, or for the event basis
    (on EVENTS) event time in ``[from, to)``."""
    if time_basis == EVENT_TIME:
        return pl.col("ts").is_between(from_ms, to_ms, closed="left")
    return pl.col("timestamp_ms").is_between(from_ms, to_ms + slack_ms, closed="left")


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
    time_basis: str = KAFKA_TIME,
    by_partition: bool = False,
    work_near: Path | None = None,
    quality: bool = True,
) -> Truth:
    """Replay the raw events of the range (with lookback), validate, dedup and recompute every metric.

    ``by_partition``: partition by partition in bounded memory (:mod:`recovery.pipeline.partitioned`), the
    results spooled next to ``work_near`` and loaded on first access; in memory when keys are not partitioned
    (a key or an event id in two partitions). The events themselves are then not kept (``events.event_count``).
    ``quality=False``: partition by partition, only events and duplicates are counted (no gaps or quality
    figures in ``events``: ``events.measured`` is False), which truth alone does not need.
    """
    raw_source = as_source(source, spec.topics.raw, settings)
    if by_partition:
        options = {"workers": workers, "slack_ms": slack_ms, "quiet": quiet, "client": client, "quality": quality}
        found = _truth_by_partition(spec, from_ms, to_ms, raw_source, emulate_grace, time_basis, work_near, options)
        if found is not None:
            return found
    raw = replay(
        raw_source,
        from_ms=from_ms,
        to_ms=to_ms,
        spec=spec,
        slack_ms=slack_ms,
        workers=workers,
        quiet=quiet,
        client=client,
        time_basis=time_basis,
    )
    records = raw.frame()
    events, quarantine = validate(records, spec)
    counted = events if time_basis == EVENT_TIME else records
    in_range = counted.filter(in_range_expr(from_ms, to_ms, slack_ms, time_basis)).height
    check_raw_found(records.height, in_range, TimeRange(from_ms, to_ms), raw_source, time_basis)
    skew = StampSkew(slack_ms)
    skew.add(events)
    coverage = Coverage({p: r.coverage for p, r in raw.reads.items()}, to_ms)
    unique = dedup(events, quarantine=quarantine, fields=spec.layout, coverage=coverage)
    results = recompute(unique.events, spec, from_ms=from_ms, to_ms=to_ms, emulate_grace=emulate_grace, presorted=True)
    return Truth(results, unique, quarantine, raw, skew)


def _truth_by_partition(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    raw_source: Source,
    emulate_grace: bool,
    time_basis: str,
    work_near: Path | None,
    options: dict[str, Any],
) -> Truth | None:
    """Truth recovered partition by partition; None when the keys are not partitioned."""
    work_dir = new_work_dir(work_near)
    try:
        found, why = recover_partitions(
            spec,
            from_ms,
            to_ms,
            raw_source=raw_source,
            outputs_source=None,
            outputs_slack_ms=0,
            work_dir=work_dir,
            emulate_grace=emulate_grace,
            abs_tol=DEFAULT_ABS_TOL,
            rel_tol=DEFAULT_REL_TOL,
            time_basis=time_basis,
            **options,
        )
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    if why is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
        return None
    remove_when_unused(found, work_dir)
    check_raw_found(found.raw.count, found.records_in_range, TimeRange(from_ms, to_ms), raw_source, time_basis)
    return Truth(found.lazy("truth"), found.quality, found.quarantine, found.raw, found.skew, owner=found)


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
    time_basis: str = KAFKA_TIME,
) -> tuple[pl.DataFrame, pl.DataFrame, ReplayResult]:
    """(OUTPUTS, QUARANTINE, replay) of the results originally published for the range."""
    out_source = as_source(source, spec.topics.output, settings)
    outputs = replay(
        out_source,
        from_ms=outputs_from_ms(spec, from_ms),
        to_ms=to_ms,
        lookback_ms=0,
        lookback_events=0,
        slack_ms=outputs_slack_ms(spec, slack_ms),
        workers=workers,
        quiet=quiet,
        client=client,
        time_basis=time_basis,
    )
    originals, bad = decode_outputs(outputs.frame(), spec)
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


def compare_range(
    spec: PipelineSpec,
    from_ms: int,
    to_ms: int,
    *,
    truth: pl.DataFrame | None = None,
    raw_source: SourceLike = None,
    outputs_source: SourceLike = None,
    settings: KafkaSettings | None = None,
    workers: int = 1,
    slack_ms: int = DEFAULT_SLACK_MS,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
    quiet: bool = True,
    client: str = DEFAULT_CLIENT,
    time_basis: str = KAFKA_TIME,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, ReplayResult]:
    """(COMPARISON, OUTPUTS, unreadable outputs, the outputs' replay) of the range; ``truth`` (RESULTS) is
    recomputed from the raw events when not given."""
    check_tolerances(abs_tol, rel_tol)
    options: dict[str, Any] = {
        "settings": settings,
        "workers": workers,
        "slack_ms": slack_ms,
        "quiet": quiet,
        "client": client,
        "time_basis": time_basis,
    }
    if truth is None:
        truth = truth_for_range(spec, from_ms, to_ms, source=raw_source, **options).results
    originals, bad, outputs = originals_for_range(spec, from_ms, to_ms, source=outputs_source, **options)
    comparison = compare(originals, truth, spec, from_ms=from_ms, to_ms=to_ms, abs_tol=abs_tol, rel_tol=rel_tol)
    return comparison, originals, bad, outputs
