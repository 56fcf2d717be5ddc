"""A bounded read of a small topic (the audit trail, the corrections, the tail of a raw topic) in this process.

The end offsets are snapshotted first and the read stops there, as every replay does; what the big replay
adds (time planning, lookback, worker processes, Parquet parts) small topics do not need.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from kafka import TopicPartition

from recovery.frames import RECORDS, empty
from recovery.kafka.client import DEFAULT_CLIENT, kafka_reader
from recovery.kafka.clients import consumer, guarded
from recovery.kafka.topics import partitions_for
from recovery.source import KafkaSource

BATCH_RECORDS = 50_000


def read_topic(
    source: KafkaSource,
    *,
    offsets: Mapping[int, tuple[int | None, int | None]] | None = None,
    client: str = DEFAULT_CLIENT,
) -> pl.DataFrame:
    """RECORDS of every partition of ``source`` in partition, offset order, up to the end offsets seen now.

    ``offsets`` maps a partition to ``(start, end)`` (None: the log's start / the snapshotted end); partitions
    not in it are not read.
    """
    settings, topic = source.settings, source.topic
    tps = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
    with consumer(settings, isolation_level=source.isolation_level) as c:
        action = f"reading offsets of {topic}"
        starts = guarded(settings, action, lambda: c.beginning_offsets(tps))
        ends = guarded(settings, action, lambda: c.end_offsets(tps))
    ranges: dict[int, tuple[int, int]] = {}
    for tp in tps:
        start, end = starts[tp], ends[tp]
        if offsets is not None:
            if tp.partition not in offsets:
                continue
            want_start, want_end = offsets[tp.partition]
            start = start if want_start is None else max(start, want_start)
            end = end if want_end is None else min(end, want_end)
        if start < end:
            ranges[tp.partition] = (start, end)
    if not ranges:
        return empty(RECORDS)
    reader = kafka_reader(source, client)
    try:
        frames = [
            frame
            for p, (start, end) in sorted(ranges.items())
            for frame in reader.read(p, start, end, BATCH_RECORDS)
            if frame.height
        ]
    finally:
        reader.close()
    return pl.concat(frames) if frames else empty(RECORDS)
