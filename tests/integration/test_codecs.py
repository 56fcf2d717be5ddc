"""Compressed topics: both clients write and read gzip, snappy, lz4 and zstd record batches on the real broker.

Each writer sends records with explicit partitions and Kafka timestamps in one transaction; each reader replays
the topic. The expected frame is what the test sent (offsets: the i-th record sent to a partition is at offset
i of a fresh topic), never what a reader returned. The codec of every batch is read from the broker's own log
segments with a plain parser of the record batch header, so a producer that ignored the setting would fail.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.frames import RECORDS
from recovery.kafka.broker import LocalBroker
from recovery.kafka.client import CLIENTS, transactional_producer
from recovery.replay.bounded import replay
from recovery.source import KafkaSource
from tests.integration.readback import wait_committed

CODECS = ("gzip", "snappy", "lz4", "zstd")
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # attributes bits 0-2 of a record batch
BASE_MS = 1_767_225_600_000
PARTITIONS = 2


def sent_records(n: int, seed: int) -> pl.DataFrame:
    """``n`` records over two partitions, compressible values, one null key, distinct explicit timestamps."""
    rnd = random.Random(seed)
    partitions = [i % PARTITIONS for i in range(n)]
    keys: list[bytes | None] = [f"key-{i % 7}".encode() for i in range(n)]
    keys[3] = None
    values = [(f'{{"i": {i}, "text": "' + "abc" * rnd.randint(1, 40) + '"}').encode() for i in range(n)]
    values[5] = b""  # an empty value survives compression too
    stamps = [BASE_MS + 1_000 * i + rnd.randint(0, 999) for i in range(n)]
    offsets, seen = [], dict.fromkeys(range(PARTITIONS), 0)
    for p in partitions:
        offsets.append(seen[p])
        seen[p] += 1
    return pl.DataFrame(
        {"partition": partitions, "offset": offsets, "timestamp_ms": stamps, "key": keys, "value": values},
        schema=RECORDS,
    ).sort("partition", "offset")


def write(settings: KafkaSettings, topic: str, records: pl.DataFrame, client: str, tid: str) -> None:
    producer = transactional_producer(settings, tid, client)
    try:
        producer.init()
        producer.begin()
        ordered = records.sort("timestamp_ms")  # interleaves the partitions; per partition the offset order
        producer.send_many(
            topic,
            ordered.get_column("key").to_list(),
            ordered.get_column("value").to_list(),
            ordered.get_column("partition").to_list(),
            timestamps=ordered.get_column("timestamp_ms").to_list(),
        )
        producer.commit()
    finally:
        producer.close()
    wait_committed(settings, topic)  # replayed at once: its read_committed end must include the transaction


def batch_codecs(segment_dir: Path) -> set[str]:
    """Codecs of the data batches in a partition's log segments (record batch v2 header, control batches skipped)."""
    names = {v: k for k, v in CODEC_IDS.items()}
    found: set[str] = set()
    for log in sorted(segment_dir.glob("*.log")):
        data, pos = log.read_bytes(), 0
        while pos + 61 <= len(data):
            _base_offset, length = struct.unpack_from(">qi", data, pos)
            if length <= 0:
                break
            magic = data[pos + 16]
            attributes = struct.unpack_from(">h", data, pos + 21)[0]
            assert magic == 2, f"unexpected record batch magic {magic} in {log}"
            if not attributes & 0x20:  # bit 5: a transaction marker, never compressed
                found.add(names[attributes & 0x07])
            pos += 12 + length
    return found


def replayed(settings: KafkaSettings, topic: str, client: str) -> pl.DataFrame:
    return replay(KafkaSource(topic, settings), client=client, quiet=True, batch_records=17).frame()


@pytest.mark.parametrize("writer", CLIENTS)
@pytest.mark.parametrize("codec", CODECS)
def test_each_client_writes_a_compressed_topic_that_both_clients_replay_exactly(
    kafka_settings: KafkaSettings,
    local_broker: LocalBroker | None,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    codec: str,
    writer: str,
) -> None:
    topic = topic_factory(f"codec-{codec}", partitions=PARTITIONS)
    expected = sent_records(120, seed=len(codec) + len(writer))
    write(replace(kafka_settings, compression=codec), topic, expected, writer, unique_name("tx"))
    for reader in CLIENTS:
        assert_frame_equal(replayed(kafka_settings, topic, reader), expected, check_exact=True)
    if local_broker is not None:  # the segments are on this machine: the batches really are compressed
        for p in range(PARTITIONS):
            assert batch_codecs(local_broker.data_dir / f"{topic}-{p}") == {codec}


@pytest.mark.parametrize("codec", ["lz4", "zstd", "snappy"])
def test_a_topic_compressed_by_the_broker_is_replayed_exactly_by_both_clients(
    kafka_settings: KafkaSettings,
    local_broker: LocalBroker | None,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
    codec: str,
) -> None:
    topic = topic_factory(f"broker-{codec}", partitions=PARTITIONS, config={"compression.type": codec})
    expected = sent_records(60, seed=3)
    write(replace(kafka_settings, compression="none"), topic, expected, "kafka-python", unique_name("tx"))
    for reader in CLIENTS:
        assert_frame_equal(replayed(kafka_settings, topic, reader), expected, check_exact=True)
    if local_broker is not None:
        for p in range(PARTITIONS):
            assert batch_codecs(local_broker.data_dir / f"{topic}-{p}") == {codec}
