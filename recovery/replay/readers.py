"""Reading offset ranges of one partition into RECORDS frames, and where the frames go.

Readers (archive files here, Kafka through either client of :mod:`recovery.kafka.client`) share one interface:
``read(partition, start, end, batch_records)`` yields RECORDS frames of the records with
``start <= offset < end`` in offset order, at most ``batch_records`` rows each; ``first_at(partition, ts_ms)``
is the first offset whose timestamp is ``>= ts_ms`` (Kafka's offsets-for-times), which the lookback uses.
The per-record work is appending to column lists; frames are built in bulk. Sinks keep the frames in memory
or write each one as a Parquet part named after its partition and offsets.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import polars as pl

from recovery.frames import RECORDS, empty
from recovery.kafka.client import DEFAULT_CLIENT, RecordReader, kafka_reader
from recovery.source import FileSource, Source


class FileReader:
    """Reads offset ranges of partitions from archive files (one partition cached at a time)."""

    def __init__(self, source: FileSource) -> None:
        self.lazy = source.scan()
        self._cached: tuple[int, pl.DataFrame] | None = None

    def _partition(self, partition: int) -> pl.DataFrame:
        if self._cached is None or self._cached[0] != partition:
            self._cached = (partition, self.lazy.filter(pl.col("partition") == partition).collect())
        return self._cached[1]

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        frame = self._partition(partition).filter(pl.col("offset").is_between(start, end, closed="left"))
        for offset in range(0, frame.height, batch_records):
            yield frame.slice(offset, batch_records)

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        frame = self._partition(partition)
        found = frame.filter(pl.col("timestamp_ms") >= ts_ms).get_column("offset").min()
        return None if found is None else int(found)  # type: ignore[arg-type]

    def close(self) -> None:
        self._cached = None


Reader = RecordReader


def reader_for(source: Source, client: str = DEFAULT_CLIENT) -> Reader:
    """The reader of ``source``: archive files, or Kafka through the chosen client."""
    if isinstance(source, FileSource):
        return FileReader(source)
    return kafka_reader(source, client)


class Sink(Protocol):
    """Where a partition's frames go; ``add`` may return the frame's valid events when it validated them."""

    def add(self, frame: pl.DataFrame) -> pl.DataFrame | None: ...

    def frame(self) -> pl.DataFrame | None: ...

    def discard(self) -> None: ...


class MemorySink:
    """Keeps the frames of one partition in memory."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    def add(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)
        return None

    def frame(self) -> pl.DataFrame | None:
        """The partition's records in offset order (frames are runs of offsets; sorted only if they overlap)."""
        frames = sorted((f for f in self.frames if f.height), key=lambda f: f.item(0, "offset"))
        if not frames:
            return empty(RECORDS)
        runs = all(a.item(a.height - 1, "offset") < b.item(0, "offset") for a, b in itertools.pairwise(frames))
        whole = pl.concat(frames, rechunk=False)
        return whole if runs and all(f.get_column("offset").is_sorted() for f in frames) else whole.sort("offset")

    def discard(self) -> None:
        self.frames = []


class ParquetSink:
    """Writes each batch as a Parquet part named after its partition and offsets (atomically)."""

    def __init__(self, out_dir: str, label: str) -> None:
        self.out_dir = Path(out_dir)
        self.label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        self.parts: list[str] = []

    def add(self, frame: pl.DataFrame) -> None:
        partition = frame.item(0, "partition")
        first, last = frame.item(0, "offset"), frame.item(frame.height - 1, "offset")
        path = self.out_dir / f"{self.label}-p{partition:05d}-{first:015d}-{last:015d}.parquet"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        tmp.replace(path)
        self.parts.append(str(path))

    def frame(self) -> pl.DataFrame | None:
        return None

    def discard(self) -> None:
        for part in self.parts:
            Path(part).unlink(missing_ok=True)
        self.parts = []
