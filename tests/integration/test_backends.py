"""Both replay clients (kafka-python and confluent-kafka) read identical RECORDS from the same topics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.errors import BrokerError
from recovery.frames import RECORDS
from recovery.kafka.clients import producer
from recovery.replay.bounded import replay
from recovery.replay.plan import plan
from recovery.source import KafkaSource

pytest.importorskip("confluent_kafka", reason="the confluent client needs confluent-kafka")

from recovery.kafka.confluent import ConfluentReader  # noqa: E402  (after the skip: needs confluent_kafka)

BASE_MS = 1_767_225_600_000
CLIENTS = ("kafka-python", "confluent")


def fill(settings: KafkaSettings, topic: str, partitions: int, per_partition: int) -> None:
    """Records with keys, a null key, a tombstone, non-UTF-8 bytes and explicit timestamps."""
    with producer(settings, linger_ms=5) as p:
        for partition in range(partitions):
            for i in range(per_partition):
                key = None if i % 97 == 3 else f"k{i % 7}".encode()
                value = None if i % 89 == 5 else (b"\xff\xfe" if i % 83 == 1 else f'{{"i":{i}}}'.encode())
                p.send(topic, key=key, value=value, partition=partition, timestamp_ms=BASE_MS + 10 * i)
        p.flush()


def read_with(reader: ConfluentReader, partition: int, start: int, end: int, batch: int) -> pl.DataFrame:
    frames = list(reader.read(partition, start, end, batch))
    return pl.concat(frames) if frames else pl.DataFrame(schema=RECORDS)


def test_both_clients_replay_identical_records(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("both-clients", partitions=3)
    fill(kafka_settings, topic, 3, 700)
    source = KafkaSource(topic, kafka_settings)
    frames = {c: replay(source, client=c, workers=1, quiet=True, batch_records=256).frame() for c in CLIENTS}
    assert frames["kafka-python"].height == 2100
    assert frames["kafka-python"].get_column("value").is_null().sum() > 0  # the tombstones came through
    assert_frame_equal(frames["confluent"], frames["kafka-python"])
    ranged = {
        c: replay(source, client=c, from_ms=BASE_MS + 1_000, to_ms=BASE_MS + 3_000, slack_ms=0, quiet=True).frame()
        for c in CLIENTS
    }
    assert ranged["kafka-python"].height == 3 * 200
    assert_frame_equal(ranged["confluent"], ranged["kafka-python"])


def test_both_clients_give_identical_parquet_parts_with_workers(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("both-parts", partitions=4)
    fill(kafka_settings, topic, 4, 300)
    source = KafkaSource(topic, kafka_settings)
    parts = {}
    for c in CLIENTS:
        result = replay(source, client=c, workers=2, out_dir=tmp_path / c, quiet=True, batch_records=100)
        assert result.count == 1200
        parts[c] = result.frame().sort("partition", "offset")
    assert_frame_equal(parts["confluent"], parts["kafka-python"])


def test_confluent_reader_stops_at_the_end_offset_and_splits_batches(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("bounds", partitions=1)
    fill(kafka_settings, topic, 1, 1000)
    reader = ConfluentReader(KafkaSource(topic, kafka_settings))
    try:
        frames = list(reader.read(0, 100, 350, 100))
        assert [f.height for f in frames] == [100, 100, 50]
        middle = pl.concat(frames)
        assert middle.get_column("offset").to_list() == list(range(100, 350))
        assert middle.schema == RECORDS
        assert read_with(reader, 0, 500, 500, 100).height == 0  # an empty range reads nothing
        assert read_with(reader, 0, 990, 1000, 100).get_column("offset").to_list() == list(range(990, 1000))
    finally:
        reader.close()


def test_read_committed_skips_aborted_records_and_ends_after_a_trailing_marker(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("txn", partitions=1)
    with producer(kafka_settings, transactional_id=unique_name("txn")) as p:
        p.init_transactions()
        for keep, values in ((True, range(0, 50)), (False, range(50, 80)), (True, range(80, 120))):
            p.begin_transaction()
            for i in values:
                p.send(topic, key=b"k", value=str(i).encode(), partition=0, timestamp_ms=BASE_MS + i)
            p.flush()
            if keep:
                p.commit_transaction()
            else:
                p.abort_transaction()
    source = KafkaSource(topic, kafka_settings)
    end = plan(source).partitions[0].end  # includes the commit marker after the last record
    started = time.monotonic()
    frames = {c: replay(source, client=c, quiet=True).frame() for c in CLIENTS}
    assert time.monotonic() - started < 30, "a trailing transaction marker must not stall the read"
    values = [int(v) for v in frames["confluent"].get_column("value").to_list()]
    assert values == [*range(0, 50), *range(80, 120)]
    assert frames["confluent"].get_column("offset").max() < end - 1
    assert_frame_equal(frames["confluent"], frames["kafka-python"])


def test_confluent_reader_reports_an_unreachable_broker() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2_000)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no Kafka broker reachable at 127.0.0.1:1"):
        ConfluentReader(KafkaSource("nowhere", settings))
    assert time.monotonic() - started < 10
