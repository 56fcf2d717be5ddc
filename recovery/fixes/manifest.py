"""What a fix set's manifest records about the run that made it, from plain facts (no engine types).

The engine reduces what it saw to a :class:`RunFacts`; :func:`quality`, :func:`parameters` and :func:`provenance`
turn those facts into the manifest sections. ``quality`` and ``parameters`` are digested (they describe the
data and the settings); ``provenance`` is not (sources, snapshots and timings differ between equivalent runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from recovery.records.validate import quarantine_counts
from recovery.spec import PipelineSpec


@dataclass(frozen=True)
class RunFacts:
    """What a recovery run read and decided, in plain values."""

    event_counts: dict[str, int]  # per-category event counts of the deduplicated events (valid, duplicates, ...)
    records: int  # raw records read
    quarantine: pl.DataFrame  # QUARANTINE rows of the raw records
    outputs: int  # output records read
    outputs_quarantined: int
    raw_source: dict[str, Any]  # the snapshot's description of where the raw records came from
    outputs_source: dict[str, Any]
    raw_end_offsets: dict[int, int]
    outputs_end_offsets: dict[int, int]
    engine: str
    timings_s: dict[str, float] = field(default_factory=dict)
    time_basis: str = "kafka"  # how the range was found: by Kafka timestamp, or whole partitions by offset


def quality(facts: RunFacts) -> dict[str, Any]:
    """The manifest's ``quality`` section: what was read, kept and quarantined."""
    return {
        **facts.event_counts,
        "records": facts.records,
        "quarantined": facts.quarantine.height,
        "quarantine_reasons": quarantine_counts(facts.quarantine),
        "outputs": facts.outputs,
        "outputs_quarantined": facts.outputs_quarantined,
    }


def parameters(
    spec: PipelineSpec, *, abs_tol: float, rel_tol: float, slack_ms: int, emulate_grace: bool
) -> dict[str, Any]:
    """The manifest's ``parameters`` section: the settings that change what a recovery finds."""
    return {
        "abs_tol": abs_tol,
        "rel_tol": rel_tol,
        "slack_ms": slack_ms,
        "emulate_grace": emulate_grace,
        "lookback_ms": spec.lookback_ms,
        "lookback_events": spec.lookback_events,
    }


def provenance(facts: RunFacts) -> dict[str, Any]:
    """The manifest's ``provenance`` section (not digested): where the records came from, how long it took."""
    return {
        "sources": {"raw": facts.raw_source, "outputs": facts.outputs_source},
        "snapshots": {
            "raw_end_offsets": {str(p): o for p, o in facts.raw_end_offsets.items()},
            "outputs_end_offsets": {str(p): o for p, o in facts.outputs_end_offsets.items()},
        },
        "engine": facts.engine,
        "time_basis": facts.time_basis,
        "timings_s": {k: round(v, 3) for k, v in facts.timings_s.items()},
    }
