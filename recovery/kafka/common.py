"""What the Kafka clients share without importing any client library: the bounded waits, RECORDS frames
built from column lists, the stall-and-batch read loop, and the error of a fenced transactional producer.

Kept apart from :mod:`recovery.kafka.clients` (kafka-python) so that a command reading through librdkafka does
not import kafka-python at all (0.1 s of its start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NoReturn

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import BrokerError, RecoveryError, TopicError
from recovery.frames import RECORDS

BOOTSTRAP_TIMEOUT_MAX_MS = 10_000


def bootstrap_timeout_s(settings: KafkaSettings) -> float:
    """How long building a client waits for the first broker to answer."""
    return min(settings.request_timeout_ms, BOOTSTRAP_TIMEOUT_MAX_MS) / 1000


def stall_timeout_s(settings: KafkaSettings) -> float:
    """How long a bounded read may go without progress before the broker counts as gone."""
    return 2 * settings.request_timeout_ms / 1000


def records_frame(
    partition: int, offsets: list[int], stamps: list[int], keys: list[bytes | None], values: list[bytes | None]
) -> pl.DataFrame:
    """A RECORDS frame of one partition from column lists (built in bulk)."""
    return pl.DataFrame(
        {
            "partition": pl.repeat(partition, len(offsets), dtype=pl.Int32, eager=True),
            "offset": pl.Series(offsets, dtype=pl.Int64),
            "timestamp_ms": pl.Series(stamps, dtype=pl.Int64),
            "key": pl.Series(keys, dtype=pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        },
        schema=RECORDS,
    )


class RecordColumns:
    """The offsets, timestamps, keys and values of one partition's records read so far (a reader appends)."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.offsets: list[int] = []
        self.stamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def frames(self, batch_records: int) -> Iterator[pl.DataFrame]:
        """The records so far as RECORDS frames of at most ``batch_records`` rows; the columns start again empty."""
        frame = records_frame(self.partition, self.offsets, self.stamps, self.keys, self.values)
        self.offsets, self.stamps, self.keys, self.values = [], [], [], []
        return (frame.slice(i, batch_records) for i in range(0, frame.height, batch_records))


def read_range(
    columns: RecordColumns,
    start: int,
    end: int,
    batch_records: int,
    *,
    step: Callable[[int], tuple[int, bool]],
    stall_s: float,
    stalled: Callable[[int], NoReturn],
) -> Iterator[pl.DataFrame]:
    """The read loop of a reader: frames of ``columns`` while ``step`` reads ``[start, end)`` into them.

    ``step(position)`` reads once, appends the records below ``end`` and returns the new position and whether
    data arrived; after ``stall_s`` without data, ``stalled(position)`` raises.
    """
    position, progressed = start, time.monotonic()
    while position < end:
        position, moved = step(position)
        if moved:
            progressed = time.monotonic()
        elif time.monotonic() - progressed > stall_s:
            stalled(position)
        if len(columns) >= batch_records:
            yield from columns.frames(batch_records)
    if len(columns):
        yield from columns.frames(batch_records)


def stall_error(where: str, stall_s: float, position: int, end: int) -> BrokerError:
    """The error of a read of ``where`` that made no progress below its end offset."""
    return BrokerError(
        f"replay of {where} made no progress for {stall_s:.0f} s at offset {position} (end offset {end})",
        hint="check the broker (`recovery kafka status`) and retry",
    )


class FencedError(RecoveryError):
    """Another producer with the same transactional.id took over."""


def fenced_error(transactional_id: str) -> FencedError:
    return FencedError(
        f"another publish with transactional.id {transactional_id} took over",
        hint="let the other run finish; rerunning later is safe (a published digest is a no-op)",
    )


def missing_topic(settings: KafkaSettings, topic: str) -> TopicError:
    """The error of a topic the cluster does not have (whichever client found out)."""
    return TopicError(
        f"topic {topic!r} does not exist on {settings.bootstrap_servers}",
        topic=topic,
        hint="check the name (`recovery kafka status` lists topics) or run the simulator first",
    )
