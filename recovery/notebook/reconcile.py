"""The scheduled reconciliation (notebook 00): recompute the last N hours and compare with what downstream holds.

What downstream holds is the live worker's outputs with the committed corrections applied (the last copy
of each result, replaced or removed by the newest correction of its key), so an incident that was
already corrected does not alert again. The range ends where every window is closed: at the newest event
time seen on every partition (``latest``) or now, minus the largest grace period, aligned to the hops.
More discrepancies than ``max_discrepancies`` make the run an alert (``recovery report`` exits 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.fixes.audit import read_audit
from recovery.fixes.chunks import unfinished
from recovery.fixes.fixset import apply_corrections
from recovery.fixes.publish import layout_of, read_corrections
from recovery.frames import CORRECTIONS, OUTPUTS, RESULTS, conform, empty
from recovery.kafka.small import read_topic
from recovery.kafka.topics import list_topics, offsets
from recovery.notebook.explore import Case, Text, resolve_path
from recovery.pipeline.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, ComparisonSummary, compare, summarize
from recovery.pipeline.steps import originals_for_range, truth_for_range
from recovery.records.validate import validate
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec, load_spec
from recovery.timerange import format_ms, now_ms, parse_time_ms

TAIL_RECORDS = 200  # records read at the end of each partition to find its newest event time
HOUR_MS = 3_600_000


def alignment_ms(spec: PipelineSpec) -> int:
    """Range bounds are multiples of this: the least common multiple of the hops (1 s without time windows)."""
    hops = [m.hop_ms or 1 for m in spec.metrics if m.is_windowed]
    return math.lcm(*hops) if hops else 1000


def latest_event_ms(settings: KafkaSettings, spec: PipelineSpec) -> int:
    """The newest event time that every partition with data has reached (its watermark, before grace)."""
    topic = spec.topics.raw
    info = offsets(settings, topic)
    tails = {
        p: (max(info.start_offsets.get(p, 0), end - TAIL_RECORDS), end)
        for p, end in info.end_offsets.items()
        if end > info.start_offsets.get(p, 0)
    }
    if not tails:
        raise DataError(f"the raw topic {topic} holds no records", hint="nothing to reconcile yet")
    records = read_topic(KafkaSource(topic, settings), offsets=tails)
    events, _ = validate(records, spec)
    newest = events.group_by("partition").agg(pl.col("ts").max())
    if newest.height == 0:
        raise DataError(f"the last records of {topic} hold no valid event", hint="check the raw topic's producer")
    return int(newest.get_column("ts").min())  # type: ignore[arg-type]


def reconciliation_range(spec: PipelineSpec, end_ms: int, hours: float) -> tuple[int, int]:
    """[from_ms, to_ms) of ``hours`` ending where every window of data up to ``end_ms`` is closed."""
    if not hours > 0:
        raise ConfigError(f"hours must be > 0, got {hours}")
    align = alignment_ms(spec)
    grace = max((m.grace_ms for m in spec.metrics if m.is_windowed), default=0)
    to_ms = (end_ms - grace) // align * align
    from_ms = (to_ms - int(hours * HOUR_MS)) // align * align
    return from_ms, to_ms


def committed_corrections(settings: KafkaSettings, spec: PipelineSpec) -> pl.DataFrame:
    """The newest committed correction of every (key, metric, window) on the corrections topic (may be empty)."""
    topic = spec.topics.corrections
    if topic not in list_topics(settings):
        return empty(CORRECTIONS)
    published = read_corrections(settings, topic, layout=layout_of(spec))
    return published.sort("partition", "offset").unique(subset=["record_key"], keep="last", maintain_order=True)


def as_outputs(results: pl.DataFrame) -> pl.DataFrame:
    """RESULTS as OUTPUTS published once each (what downstream holds has one value per result)."""
    frame = (
        conform(results, RESULTS)
        .with_row_index("offset")
        .with_columns(
            pl.lit(0, dtype=pl.Int32).alias("partition"),
            pl.col("offset").cast(pl.Int64),
            pl.col("time_ms").alias("timestamp_ms"),
        )
    )
    return conform(frame, OUTPUTS)


@dataclass(frozen=True)
class Reconciliation:
    """Truth vs the live outputs (``original``) and vs what downstream holds after corrections (``held``)."""

    case: Case
    original: pl.DataFrame  # COMPARISON: live outputs vs truth
    held: pl.DataFrame  # COMPARISON: live outputs with committed corrections applied vs truth
    corrections: int  # committed corrections found on the topic
    max_discrepancies: int
    end: str
    partial: tuple[str, ...] = ()  # fix sets partly published (digest: progress), from the audit topic

    @property
    def summary(self) -> ComparisonSummary:
        return summarize(self.held)

    @property
    def original_summary(self) -> ComparisonSummary:
        return summarize(self.original)

    @property
    def discrepancies(self) -> int:
        """Results downstream still holds wrong, misses, or holds in excess."""
        return self.summary.discrepancies

    @property
    def alert(self) -> bool:
        return self.discrepancies > self.max_discrepancies

    def counts(self) -> pl.DataFrame:
        """Results per class, as published and as held downstream (after corrections, last copy of each)."""
        before, after = self.original_summary.counts, self.summary.counts
        rows = [(s, before[s], after[s]) for s in (*before.keys(),)]
        return pl.DataFrame(
            rows, schema={"status": pl.String, "as published": pl.Int64, "held downstream": pl.Int64}, orient="row"
        )

    def results(self) -> dict[str, Any]:
        """What the run records for the scheduler (``alert`` makes ``recovery report`` exit 3)."""
        return {
            "from": format_ms(self.case.from_ms),
            "to": format_ms(self.case.to_ms),
            "results": self.held.height,
            "discrepancies": self.discrepancies,
            "discrepancies_as_published": self.original_summary.discrepancies,
            "corrections_applied": self.corrections,
            "partly_published": len(self.partial),
            "max_discrepancies": self.max_discrepancies,
            "alert": self.alert,
        }

    def verdict(self) -> Text:
        """All clear, or the discrepancy summary and how to open an incident with notebook 02."""
        text = self._verdict()
        if not self.partial:
            return text
        lines = "\n".join(f"- `{line}`" for line in self.partial)
        return Text(
            f"{text}\n\n**Partly published fix sets** (downstream holds only their committed chunks; rerun "
            f"`recovery publish DIR` to finish them):\n\n{lines}"
        )

    def _verdict(self) -> Text:
        case = self.case
        held = self.summary
        metrics = ", ".join(f"`{m.name}`" for m in case.spec.metrics)
        corrected = (
            f" after applying {self.corrections:,} committed correction(s)"
            if self.corrections
            else " (no corrections published)"
        )
        if not self.alert and self.discrepancies == 0:
            return Text(
                f"## All clear\n\nAll {self.held.height:,} results of {metrics} in {case.range} match the "
                f"recomputed truth{corrected}. The range ends at the {self.end}, minus the grace period."
            )
        c = held.counts
        worst = (
            held.by_key.with_columns((pl.col("missing") + pl.col("wrong") + pl.col("extra")).alias("_n"))
            .filter(pl.col("_n") > 0)
            .sort("_n", descending=True)
            .head(5)
        )
        keys = ", ".join(f"`{k}` ({n:,})" for k, n in worst.select("key", "_n").iter_rows())
        spec_arg = f" -p spec_path {case.spec.source}" if case.spec.source else ""
        command = (
            f"recovery report 02_recompute_compare -p incident_file ''{spec_arg} "
            f"-p from_time {case.from_ms} -p to_time {case.to_ms} -p fixset_dir fixes/reconcile-{case.to_ms}"
        )
        head = "## Discrepancies above the threshold" if self.alert else "## Discrepancies within the threshold"
        return Text(
            f"{head}\n\n**{self.discrepancies:,} results** in {case.range} differ from the recomputed truth"
            f"{corrected} (threshold {self.max_discrepancies:,}): {c['missing']:,} missing, {c['wrong']:,} wrong, "
            f"{c['extra']:,} extra, {c['conflicting']:,} conflicting duplicates. Most affected keys: {keys or '-'}."
            f"\n\n**Open an incident** and recover the range with notebook 02:\n\n```\n{command}\n```"
        )


def reconcile(
    spec_path: str = "pipeline.toml",
    hours: float = 24.0,
    end_time: str = "latest",
    bootstrap_servers: str = "",
    max_discrepancies: int = 0,
    include_corrections: bool = True,
    abs_tol: float = DEFAULT_ABS_TOL,
    rel_tol: float = DEFAULT_REL_TOL,
) -> Reconciliation:
    """Recompute the last ``hours`` before ``end_time`` (``latest``, ``now`` or a time) and compare."""
    if max_discrepancies < 0:
        raise ConfigError(f"max_discrepancies must be >= 0, got {max_discrepancies}")
    settings = KafkaSettings.from_env({"bootstrap_servers": bootstrap_servers or None})
    spec = load_spec(resolve_path(spec_path))
    if end_time == "latest":
        end_ms, end = latest_event_ms(settings, spec), "newest event time on every partition"
    elif end_time == "now":
        end_ms, end = now_ms(), "current time"
    else:
        end_ms, end = parse_time_ms(end_time, name="end_time"), f"given end {end_time}"
    from_ms, to_ms = reconciliation_range(spec, end_ms, hours)
    case = Case(spec, settings, from_ms, to_ms, f"reconcile-{format_ms(to_ms)}")
    truth = truth_for_range(spec, from_ms, to_ms, settings=settings)
    originals, _, _ = originals_for_range(spec, from_ms, to_ms, settings=settings)
    original = compare(originals, truth.results, spec, from_ms=from_ms, to_ms=to_ms, abs_tol=abs_tol, rel_tol=rel_tol)
    fixes = committed_corrections(settings, spec) if include_corrections else empty(CORRECTIONS)
    # downstream holds the last copy of each result, replaced or removed by the newest correction
    held_outputs = as_outputs(apply_corrections(originals, fixes))
    held = compare(held_outputs, truth.results, spec, from_ms=from_ms, to_ms=to_ms, abs_tol=abs_tol, rel_tol=rel_tol)
    partial = tuple(
        f"{digest[:12]}...: {state.line()}"
        for digest, state in unfinished(read_audit(settings, spec.topics.audit)).items()
    )
    return Reconciliation(case, original, held, fixes.height, max_discrepancies, end, partial)
