"""Publish planning: a fix set's corrections in chunks, and how far earlier runs got (pure, no Kafka).

A fix set is published in transactions of at most ``chunk_size`` corrections, in the fix set's sorted
order (key, metric, window). The plan is the list of chunk boundaries ``0 = b0 < b1 < ... < bn = total``:
chunk ``i`` holds the corrections ``[b(i), b(i+1))``. The ``publish-begin`` audit record carries the plan,
and each chunk's transaction carries a ``publish-chunk`` audit record with the chunk's index, so the
committed audit records tell exactly which chunks are committed. Chunks commit in order (one producer, one
transaction at a time): a rerun continues at the first uncommitted chunk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from recovery.errors import ConfigError, DataError

DEFAULT_CHUNK_SIZE = 50_000  # ~4 s of kafka-python sends: far below the transaction timeout
MIN_CHUNK_SIZE = 1
MAX_CHUNKS = 20_000  # the plan lives in one audit record: keep it well under Kafka's 1 MB message limit


@dataclass(frozen=True)
class Plan:
    """Chunk boundaries in the fix set's sorted order: chunk ``i`` is ``[boundaries[i], boundaries[i+1])``."""

    boundaries: tuple[int, ...]

    @property
    def chunks(self) -> int:
        return len(self.boundaries) - 1

    @property
    def total(self) -> int:
        return self.boundaries[-1]

    def chunk(self, index: int) -> tuple[int, int]:
        """``(start, end)`` of chunk ``index`` (end exclusive)."""
        return self.boundaries[index], self.boundaries[index + 1]

    def size_before(self, index: int) -> int:
        """Corrections in the chunks before ``index``."""
        return self.boundaries[index]


def plan_chunks(total: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Plan:
    """The plan of ``total`` corrections in chunks of ``chunk_size`` (the last one may be smaller).

    An empty fix set has a plan of no chunks.
    """
    if chunk_size < MIN_CHUNK_SIZE:
        raise ConfigError(f"chunk size must be at least {MIN_CHUNK_SIZE}, got {chunk_size}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    chunks = -(-total // chunk_size)
    if chunks > MAX_CHUNKS:
        raise ConfigError(
            f"{total:,} corrections in chunks of {chunk_size:,} make {chunks:,} chunks (at most {MAX_CHUNKS:,})",
            hint=f"use a chunk size of at least {-(-total // MAX_CHUNKS):,}",
        )
    return Plan(tuple(min(i * chunk_size, total) for i in range(chunks + 1)))


def plan_of(record: Mapping[str, Any]) -> Plan | None:
    """The plan a ``publish-begin`` audit record carries (None: a record written without one)."""
    boundaries = record.get("boundaries")
    if not isinstance(boundaries, list):
        return None
    plan = Plan(tuple(int(b) for b in boundaries))
    steps = zip(plan.boundaries, plan.boundaries[1:], strict=False)
    if not plan.boundaries or plan.boundaries[0] != 0 or any(a >= b for a, b in steps):
        raise DataError(
            f"the publish plan in the audit record of {str(record.get('digest'))[:12]}... is not increasing from 0",
            hint="the audit topic was written by something else: inspect it before publishing",
        )
    return plan


def recorded_plan(history: Iterable[Mapping[str, Any]]) -> Plan | None:
    """The plan of the first ``publish-begin`` record that has one (every later run follows it)."""
    for record in history:
        if record.get("event") == "publish-begin":
            plan = plan_of(record)
            if plan is not None:
                return plan
    return None


def committed_chunks(history: Iterable[Mapping[str, Any]]) -> set[int]:
    """Indices of the chunks whose ``publish-chunk`` audit record is committed."""
    return {int(r["chunk"]) for r in history if r.get("event") == "publish-chunk" and "chunk" in r}


def resume_point(plan: Plan, committed: set[int]) -> int:
    """The first chunk not committed yet (``plan.chunks`` when all are).

    Chunks commit in order, so the committed ones are a prefix; anything else is a :class:`DataError`.
    """
    unknown = sorted(c for c in committed if not 0 <= c < plan.chunks)
    if unknown:
        raise DataError(
            f"the audit topic records chunk(s) {unknown[:5]} of a plan of {plan.chunks} chunks",
            hint="the audit topic holds records of another plan for this digest: inspect it before publishing",
        )
    first = next((i for i in range(plan.chunks) if i not in committed), plan.chunks)
    later = sorted(c for c in committed if c > first)
    if later:
        raise DataError(
            f"chunk {first} is not committed but later chunk(s) {later[:5]} are",
            hint="chunks commit in order; inspect the audit topic before publishing again",
        )
    return first


@dataclass(frozen=True)
class Progress:
    """How far the publication of one digest got, from its committed audit records."""

    state: str  # not-started | partly-published | all-chunks-committed | published
    chunks: int  # chunks in the plan (0 without a plan)
    chunks_committed: int
    corrections_committed: int
    total: int

    @property
    def partial(self) -> bool:
        return self.state in ("partly-published", "all-chunks-committed")

    def line(self) -> str:
        """One sentence for reports."""
        if self.state == "not-started":
            return "not published yet"
        if self.state == "published":
            return f"published ({self.total:,} corrections in {self.chunks} transaction(s)): a publish does nothing"
        if self.state == "all-chunks-committed":
            return (
                f"all {self.chunks} chunks committed ({self.total:,} corrections) but no final publish audit record: "
                "a rerun of publish verifies and completes it"
            )
        return (
            f"PARTLY PUBLISHED: {self.chunks_committed} of {self.chunks} chunks committed "
            f"({self.corrections_committed:,} of {self.total:,} corrections); downstream holds only these; "
            f"a rerun of publish continues at chunk {self.chunks_committed}"
        )


def progress(history: Iterable[Mapping[str, Any]], total: int) -> Progress:
    """The publication state of a digest from its audit records (oldest first), for ``total`` corrections."""
    records = list(history)
    if any(r.get("event") == "publish" for r in records):
        plan = recorded_plan(records)
        chunks = plan.chunks if plan is not None else 1
        return Progress("published", chunks, chunks, total, total)
    plan = recorded_plan(records)
    if plan is None:
        return Progress("not-started", 0, 0, 0, total)
    first = resume_point(plan, committed_chunks(records))
    done = plan.size_before(first) if first < plan.chunks else plan.total
    if first == 0:
        return Progress("not-started", plan.chunks, 0, 0, total)
    state = "all-chunks-committed" if first == plan.chunks else "partly-published"
    return Progress(state, plan.chunks, first, done, total)


def unfinished(history: Iterable[Mapping[str, Any]]) -> dict[str, Progress]:
    """Per digest, the progress of publishes that began but have no ``publish`` record (all digests' records)."""
    by_digest: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in history:
        by_digest[str(record.get("digest"))].append(record)
    found = {}
    for digest, records in by_digest.items():
        plan = recorded_plan(records)
        if plan is None:
            continue
        state = progress(records, plan.total)
        if state.partial:
            found[digest] = state
    return found
