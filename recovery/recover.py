"""One-shot recovery of a range: replay, validate, dedup, recompute, compare, fix set.

:func:`recover` is what ``recovery recover`` and the incident notebooks call. Every input is checked
before anything is written, and the fix set is written atomically at the end, so a failing run leaves
nothing behind. The steps are also available one by one (:func:`truth_for_range`,
:func:`originals_for_range`) for ``recovery recompute`` / ``recovery compare`` and for notebooks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recovery.backends import DEFAULT_CLIENT
from recovery.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, ComparisonSummary, check_tolerances, compare, summarize
from recovery.config import KafkaSettings
from recovery.dedup import DedupResult, dedup
from recovery.errors import ConfigError, DataError
from recovery.fixes import FixSet, build_fixset, write_fixset
from recovery.outputs import decode_outputs
from recovery.recompute import recompute
from recovery.replay import DEFAULT_SLACK_MS, ReplayResult, replay
from recovery.schema import quarantine_counts, validate
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


@dataclass
class Truth:
    """Recomputed truth for a range and what it was computed from."""

    results: pl.DataFrame  # RESULTS
    events: DedupResult
    quarantine: pl.DataFrame  # QUARANTINE of the raw records
    replay: ReplayResult


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
    if records.height == 0 or in_range == 0:
        raise DataError(
            f"no raw events in {TimeRange(from_ms, to_ms)} on {raw_source.describe()}",
            hint="check the range and its time zone (UTC), or `recovery kafka status` for what the topic holds",
        )
    events, quarantine = validate(records, spec)
    quality = dedup(events, quarantine=quarantine, fields=spec.fields)
    results = recompute(quality.events, spec, from_ms=from_ms, to_ms=to_ms, emulate_grace=emulate_grace)
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


def check_metric_names(spec: PipelineSpec, originals: pl.DataFrame, where: str) -> None:
    """Refuse outputs whose metric names do not match the spec's: a spec metric without any output while the
    outputs hold metrics the spec does not know is a misnamed metric, and would turn into a fix set that
    re-publishes everything as missing. Outputs of other metrics next to a matching spec are fine (a subset).
    """
    found = set(originals.get_column("metric").unique().drop_nulls().to_list())
    known = {m.name for m in spec.metrics}
    unknown, absent = sorted(found - known), sorted(known - found)
    if unknown and absent:
        raise ConfigError(
            f"the outputs in {where} hold metrics the spec does not define ({', '.join(unknown[:5])}) and none of "
            f"the spec's {', '.join(absent[:5])}",
            hint="make the metric names in the spec match the live pipeline's (spec [[metrics]] name = ...)",
        )


@dataclass
class RecoveryReport:
    """Everything a recovery found, and the fix set it wrote."""

    fixset: FixSet
    path: Path | None
    comparison: pl.DataFrame
    summary: ComparisonSummary
    truth: Truth
    originals: pl.DataFrame
    outputs_quarantine: pl.DataFrame
    outputs_replay: ReplayResult
    timings_s: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The short summary ``recovery recover`` prints."""
        q = self.fixset.content["quality"]
        c = self.fixset.content["corrections"]
        out = [
            f"range {format_ms(self.fixset.content['range']['from_ms'])} .. "
            f"{format_ms(self.fixset.content['range']['to_ms'])} (incident {self.fixset.incident})",
            f"raw: {self.truth.replay.count:,} records, {q['events']:,} valid events, "
            f"{q['quarantined']:,} quarantined, {q['duplicates']:,} duplicates "
            f"({q['conflicting_duplicates']:,} conflicting), {q['gaps']:,} seq gaps: {q['lost_events']:,} events "
            f"lost upstream (unrecoverable), {q['missing_events'] - q['lost_events']:,} more possibly malformed",
            f"outputs: {self.outputs_replay.count:,} records, {self.originals.height:,} results",
            *self.summary.lines(),
            f"fix set: {c['upsert']:,} upserts, {c['retract']:,} retractions, digest {self.fixset.digest}",
        ]
        if self.path is not None:
            out.append(f"written to {self.path}; next: recovery approve {self.path} --reviewer NAME")
        return out


def default_incident(from_ms: int, to_ms: int) -> str:
    """An incident id derived from the range (deterministic, so digests are too)."""

    def compact(ms: int) -> str:
        return format_ms(ms).replace("-", "").replace(":", "").replace(".000", "")

    return f"range-{compact(from_ms)}-{compact(to_ms)}"


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
) -> RecoveryReport:
    """Recover ``[from_ms, to_ms)``: truth vs the original outputs, classified, as a fix set in ``out_dir``.

    Times are epoch milliseconds or ISO-8601 strings (UTC when no zone is given).
    """
    rng = checked_range(parse_time_ms(from_ms, name="from"), parse_time_ms(to_ms, name="to"), now=now)
    check_tolerances(abs_tol, rel_tol)
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
    truth = truth_for_range(
        spec,
        rng.from_ms,
        rng.to_ms,
        source=raw_source,
        settings=settings,
        workers=workers,
        slack_ms=slack_ms,
        emulate_grace=emulate_grace,
        quiet=quiet,
        client=client,
    )
    timings["truth"] = time.monotonic() - started
    mark = time.monotonic()
    originals, outputs_bad, outputs = originals_for_range(
        spec,
        rng.from_ms,
        rng.to_ms,
        source=outputs_source,
        settings=settings,
        workers=workers,
        slack_ms=slack_ms,
        quiet=quiet,
        client=client,
    )
    timings["originals"] = time.monotonic() - mark
    mark = time.monotonic()
    comparison = compare(
        originals, truth.results, spec, from_ms=rng.from_ms, to_ms=rng.to_ms, abs_tol=abs_tol, rel_tol=rel_tol
    )
    summary = summarize(comparison)
    timings["compare"] = time.monotonic() - mark
    quality: dict[str, Any] = {
        **truth.events.counts(),
        "records": truth.replay.count,
        "quarantined": truth.quarantine.height,
        "quarantine_reasons": quarantine_counts(truth.quarantine),
        "outputs": outputs.count,
        "outputs_quarantined": outputs_bad.height,
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
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    fixset = build_fixset(
        comparison,
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
        review = {
            "comparison": comparison,
            "quarantine": truth.quarantine,
            "outputs_quarantine": outputs_bad,
            "gaps": truth.events.gaps,
            "duplicates": truth.events.duplicates,
            "quality_by_key": truth.events.by_key,
            "quality_by_partition": truth.events.by_partition,
        }
        path = write_fixset(fixset, out_dir, review=review, overwrite=overwrite)
        fixset = FixSet(fixset.corrections, fixset.content, fixset.digest, fixset.provenance, path)
    timings["total"] = time.monotonic() - started
    return RecoveryReport(fixset, path, comparison, summary, truth, originals, outputs_bad, outputs, timings)
