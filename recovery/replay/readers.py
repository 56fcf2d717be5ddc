"""Reading offset ranges of one partition into RECORDS frames, and where the frames go.

Readers (kafka-python here, librdkafka in :mod:`recovery.kafka.confluent`, archive files) share one interface:
``read(partition, start, end, batch_records)`` yields RECORDS frames of the records with
``start <= offset < end`` in offset order, at most ``batch_records`` rows each; ``first_at(partition, ts_ms)``
is the first offset whose timestamp is ``>= ts_ms`` (Kafka's offsets-for-times), which the lookback uses.
The per-record work is appending to column lists; frames are built in bulk. Sinks keep the frames in memory
or write each one as a Parquet part named after its partition and offsets.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from kafka import TopicPartition

from recovery.errors import BrokerError
from recovery.frames import RECORDS, empty
from recovery.kafka.clients import guarded, new_consumer, stall_timeout_s
from recovery.kafka.confluent import CONFLUENT, DEFAULT_CLIENT, ConfluentReader
from recovery.source import FileSource, KafkaSource, Source

_CONSUMER_CONFIG: dict[str, Any] = {
    "max_poll_records": 50_000,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "check_crcs": True,
    # kafka-python sleeps this long whenever a poll finds nothing fetchable yet (just after a seek): the
    # default 100 ms adds up over the many short reads of a publish (audit history, read-back)
    "retry_backoff_ms": 20,
}


class KafkaReader:
    """Reads offset ranges of single partitions with one assigned consumer."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.consumer = new_consumer(source.settings, isolation_level=source.isolation_level, **_CONSUMER_CONFIG)

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        settings, topic = self.source.settings, self.source.topic
        tp = TopicPartition(topic, partition)
        c = self.consumer
        c.assign([tp])
        c.seek(tp, start)
        offsets: list[int] = []
        stamps: list[int] = []
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        position, progressed = start, time.monotonic()
        stall_s = stall_timeout_s(settings)
        while position < end:
            polled = guarded(settings, f"replaying {topic}[{partition}]", lambda: c.poll(timeout_ms=500))
            for records in polled.values():
                if records and records[-1].offset >= end:
                    records = [r for r in records if r.offset < end]
                offsets.extend([r.offset for r in records])
                stamps.extend([r.timestamp for r in records])
                keys.extend([r.key for r in records])
                values.extend([r.value for r in records])
            current = c.position(tp)
            if current is not None and current > position:
                position, progressed = current, time.monotonic()
            elif time.monotonic() - progressed > stall_s:
                raise BrokerError(
                    f"replay of {topic}[{partition}] made no progress for {stall_s:.0f} s at offset {position} "
                    f"(end offset {end})",
                    hint="check the broker (`recovery kafka status`) and retry",
                )
            if len(offsets) >= batch_records:
                frame = records_frame(partition, offsets, stamps, keys, values)
                offsets, stamps, keys, values = [], [], [], []
                yield from (frame.slice(i, batch_records) for i in range(0, frame.height, batch_records))
        if offsets:
            frame = records_frame(partition, offsets, stamps, keys, values)
            yield from (frame.slice(i, batch_records) for i in range(0, frame.height, batch_records))

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        settings, tp = self.source.settings, TopicPartition(self.source.topic, partition)
        action = f"looking up offsets by time in {self.source.topic}[{partition}]"
        found = guarded(settings, action, lambda: self.consumer.offsets_for_times({tp: max(0, ts_ms)}))
        hit = found.get(tp)
        return None if hit is None else int(hit.offset)

    def close(self) -> None:
        self.consumer.close()


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


Reader = KafkaReader | FileReader | ConfluentReader


def reader_for(source: Source, client: str = DEFAULT_CLIENT) -> Reader:
    """The reader of ``source``: archive files, or Kafka through the chosen client."""
    if isinstance(source, FileSource):
        return FileReader(source)
    return ConfluentReader(source) if client == CONFLUENT else KafkaReader(source)


def records_frame(
    partition: int, offsets: list[int], stamps: list[int], keys: list[bytes | None], values: list[bytes | None]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition": pl.Series([partition], dtype=pl.Int32).extend_constant(partition, len(offsets) - 1),
            "offset": pl.Series(offsets, dtype=pl.Int64),
            "timestamp_ms": pl.Series(stamps, dtype=pl.Int64),
            "key": pl.Series(keys, dtype=pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        },
        schema=RECORDS,
    )


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
