"""Offset chunks: a partition's planned ``[start, end)`` cut into pieces of at most ``chunk_records`` offsets.

Chunks are the unit of reading on Spark. They cut through keys, windows and duplicates freely: what a chunk
reads is shuffled by key afterwards, so a key's events from every chunk meet in one task (see
:mod:`recovery.pipeline.on_spark`), and no chunk needs a warm-up of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recovery.errors import ConfigError

DEFAULT_CHUNK_RECORDS = 1_000_000  # offsets per chunk: about 1 GB of a Spark task's memory at most
RAW, OUTPUTS = "raw", "outputs"


@dataclass(frozen=True)
class Chunk:
    """Offsets ``[start, end)`` of ``partition`` of one side (``raw`` events or ``outputs``)."""

    side: str
    partition: int
    start: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.start


def check_chunk_records(chunk_records: int) -> int:
    """``chunk_records`` if it is at least 1; :class:`ConfigError` otherwise."""
    if chunk_records < 1:
        raise ConfigError(f"chunk_records must be >= 1, got {chunk_records}", hint="e.g. 1000000 offsets per chunk")
    return chunk_records


def split(side: str, partition: int, start: int, end: int, chunk_records: int) -> list[Chunk]:
    """``[start, end)`` of one partition in chunks of at most ``chunk_records`` offsets (none when empty)."""
    check_chunk_records(chunk_records)
    return [Chunk(side, partition, lo, min(lo + chunk_records, end)) for lo in range(start, end, chunk_records)]


def split_all(side: str, ranges: Iterable[tuple[int, int, int]], chunk_records: int) -> list[Chunk]:
    """Chunks of every ``(partition, start, end)``, partition by partition in offset order."""
    return [c for p, start, end in ranges for c in split(side, p, start, end, chunk_records)]


def buckets_for(records: int, chunk_records: int) -> int:
    """Key buckets of a partition of ``records`` offsets: one per chunk, so a bucket holds about a chunk's events."""
    return max(1, -(-records // check_chunk_records(chunk_records)))
