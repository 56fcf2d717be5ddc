"""The native (compiled) reader reads the same RECORDS as the confluent and kafka-python readers.

Expected frames come from the other two clients (which agree with each other) or from what a test sent,
never from the native reader itself: plain ranges, ranges that end inside or after the log, empty ranges,
transactions aborted between committed ones, and a compacted log whose offsets have gaps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.errors import BrokerError, TopicError
from recovery.frames import RECORDS
from recovery.kafka.client import RecordReader, kafka_reader
from recovery.kafka.clients import producer
from recovery.replay.plan import plan
from recovery.source import KafkaSource

pytest.importorskip("recovery_native", reason="the native client needs the compiled extension (make setup)")
pytest.importorskip("confluent_kafka", reason="the confluent client needs confluent-kafka")

from recovery.kafka.native import NativeReader  # noqa: E402

BASE_MS = 1_767_225_600_000
OTHERS = ("kafka-python", "confluent")


def fill(settings: KafkaSettings, topic: str, per_partition: int, partitions: int = 1) -> None:
    """Records with keys, a null key, a tombstone, non-UTF-8 bytes, an empty value and explicit timestamps."""
    with producer(settings, linger_ms=5) as p:
        for partition in range(partitions):
            for i in range(per_partition):
                key = None if i % 97 == 3 else f"k{i % 7}".encode()
                value = None if i % 89 == 5 else (b"\xff\xfe" if i % 83 == 1 else f'{{"i":{i}}}'.encode())
                value = b"" if i % 71 == 2 else value
                p.send(topic, key=key, value=value, partition=partition, timestamp_ms=BASE_MS + 10 * i)
        p.flush()


def read_all(reader: RecordReader, partition: int, start: int, end: int, batch: int) -> pl.DataFrame:
    frames = list(reader.read(partition, start, end, batch))
    assert all(0 < f.height <= batch and f.schema == RECORDS for f in frames)
    return pl.concat(frames) if frames else pl.DataFrame(schema=RECORDS)


def read_by_each(source: KafkaSource, ranges: list[tuple[int, int, int, int]]) -> dict[str, list[pl.DataFrame]]:
    """Every range (partition, start, end, batch) read by each client, in order."""
    found: dict[str, list[pl.DataFrame]] = {}
    for client in ("native", *OTHERS):
        reader = kafka_reader(source, client)
        try:
            found[client] = [read_all(reader, *r) for r in ranges]
        finally:
            reader.close()
    return found


def assert_all_identical(found: dict[str, list[pl.DataFrame]]) -> None:
    for other in OTHERS:
        assert len(found[other]) == len(found["native"])
        for expected, got in zip(found[other], found["native"], strict=True):
            assert_frame_equal(got, expected, check_exact=True)


def test_auto_reads_a_plaintext_topic_with_the_native_reader(kafka_settings: KafkaSettings) -> None:
    reader = kafka_reader(KafkaSource("unused", kafka_settings))
    try:
        assert isinstance(reader, NativeReader)
    finally:
        reader.close()


def test_native_reads_the_same_frames_as_the_other_clients_on_every_kind_of_range(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("native-ranges", partitions=2)
    fill(kafka_settings, topic, 1_000, partitions=2)
    ranges = [
        (0, 0, 1_000, 256),  # the whole log, several batches
        (1, 100, 350, 100),  # inside the log
        (1, 990, 1_000, 7),  # up to the log end
        (0, 900, 1_000, 64),  # the tail
        (0, 500, 500, 10),  # empty
        (1, 0, 1, 1),  # one record
    ]
    # a range that ends after the log waits for records to come, then stalls: see the stall test below
    found = read_by_each(KafkaSource(topic, kafka_settings), ranges)
    assert [f.height for f in found["kafka-python"]] == [1_000, 250, 10, 100, 0, 1]
    assert found["kafka-python"][0].get_column("value").is_null().sum() > 0  # tombstones came through
    assert_all_identical(found)


def test_native_splits_a_range_into_frames_of_at_most_the_batch_size(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("native-batches")
    fill(kafka_settings, topic, 400)
    reader = NativeReader(KafkaSource(topic, kafka_settings))
    try:
        frames = list(reader.read(0, 100, 350, 100))
        assert [f.height for f in frames] == [100, 100, 50]
        assert pl.concat(frames).get_column("offset").to_list() == list(range(100, 350))
        assert list(reader.read(0, 7, 7, 100)) == []
    finally:
        reader.close()


def test_native_skips_aborted_transactions_interleaved_with_committed_ones(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("native-txn")
    # two producers with open transactions at once: aborted records lie between committed ones in the log
    with (
        producer(kafka_settings, transactional_id=unique_name("keep")) as keep,
        producer(kafka_settings, transactional_id=unique_name("drop")) as drop,
    ):
        keep.init_transactions()
        drop.init_transactions()
        sent = []
        for round_ in range(4):
            keep.begin_transaction()
            drop.begin_transaction()
            for i in range(30):
                n = round_ * 100 + i
                keep.send(topic, key=b"k", value=f"keep-{n}".encode(), partition=0, timestamp_ms=BASE_MS + n)
                drop.send(topic, key=b"k", value=f"drop-{n}".encode(), partition=0, timestamp_ms=BASE_MS + n)
                keep.flush()
                drop.flush()
                sent.append(f"keep-{n}")
            drop.abort_transaction()
            keep.commit_transaction()
    source = KafkaSource(topic, kafka_settings)
    end = plan(source).partitions[0].end  # includes the markers after the last records
    started = time.monotonic()
    found = read_by_each(source, [(0, 0, end, 50), (0, 10, end - 1, 13)])
    assert time.monotonic() - started < 60, "transaction markers must not stall a read"
    values = [v.decode() for v in found["kafka-python"][0].get_column("value").to_list()]
    assert values == sent
    offsets = found["kafka-python"][0].get_column("offset")
    assert (offsets.diff().drop_nulls() > 1).any(), "no aborted records between committed ones: proves nothing"
    assert_all_identical(found)


def test_native_reads_a_compacted_log_with_offset_gaps(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(
        "native-compacted",
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
        },
    )
    with producer(kafka_settings, linger_ms=5) as p:
        for i in range(600):  # every 10th key written once: it survives between the removed ones
            key = f"u{i}" if i % 10 == 0 else f"k{i % 20}"
            p.send(topic, key=key.encode(), value=f"v{i}".encode(), partition=0, timestamp_ms=BASE_MS + i)
        p.flush()
    source = KafkaSource(topic, kafka_settings)
    deadline = time.monotonic() + 120
    while True:  # the broker's cleaner compacts the closed segments in its own time: wait, bounded
        with producer(kafka_settings) as p:  # a newer segment lets the cleaner take the older ones
            p.send(topic, key=b"roll", value=b"roll", partition=0, timestamp_ms=BASE_MS + 10_000)
            p.flush()
        end = plan(source).partitions[0].end
        reader = kafka_reader(source, "kafka-python")
        try:
            height = read_all(reader, 0, 0, end, 1_000).height
        finally:
            reader.close()
        if height < end / 2:
            break
        assert time.monotonic() < deadline, "the log was not compacted within 120 s"
        time.sleep(1)
    found = read_by_each(source, [(0, 0, end, 64), (0, 5, end, 3)])
    offsets = found["kafka-python"][0].get_column("offset")
    assert (offsets.diff().drop_nulls() > 1).any()
    assert_all_identical(found)


def test_native_first_at_agrees_with_the_other_clients(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("native-times")
    fill(kafka_settings, topic, 100)
    stamps = [BASE_MS - 5, BASE_MS, BASE_MS + 255, BASE_MS + 10 * 99, BASE_MS + 10 * 100]
    firsts: dict[str, list[int | None]] = {}
    for client in ("native", *OTHERS):
        reader = kafka_reader(KafkaSource(topic, kafka_settings), client)
        try:
            firsts[client] = [reader.first_at(0, ts) for ts in stamps]
        finally:
            reader.close()
    assert firsts["kafka-python"] == [0, 0, 26, 99, None]
    assert firsts["native"] == firsts["kafka-python"] == firsts["confluent"]


def test_native_reports_an_unreachable_broker_like_the_other_clients() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2_000)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no Kafka broker reachable at 127.0.0.1:1 while connecting a consumer"):
        NativeReader(KafkaSource("nowhere", settings))
    assert time.monotonic() - started < 10


def test_a_native_read_that_makes_no_progress_raises_the_stall_error(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("native-stall")
    fill(kafka_settings, topic, 10)
    reader = NativeReader(KafkaSource(topic, kafka_settings), stall_s=1.0)
    try:
        with pytest.raises(BrokerError, match=rf"replay of {topic}\[0\] made no progress for 1 s at offset 10"):
            read_all(reader, 0, 0, 20, 100)  # a range that ends after the log: 10 records that never come
    finally:
        reader.close()


def test_native_planning_snapshots_the_same_offsets_as_kafka_python(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("native-plan", partitions=3)
    fill(kafka_settings, topic, 120, partitions=3)
    source = KafkaSource(topic, kafka_settings)
    with producer(kafka_settings, transactional_id=unique_name("open")) as open_tx:
        open_tx.init_transactions()
        open_tx.begin_transaction()
        open_tx.send(topic, key=b"k", value=b"pending", partition=1, timestamp_ms=BASE_MS + 5_000)
        open_tx.flush()  # written and not committed: read_committed ends before it (the last stable offset)
        ranges = [
            {},
            {"from_ms": BASE_MS + 200, "to_ms": BASE_MS + 600},
            {"from_ms": BASE_MS + 200, "to_ms": BASE_MS + 600, "lookback_ms": 100, "slack_ms": 50},
            {"from_ms": BASE_MS - 10_000, "to_ms": BASE_MS + 90_000},  # starts before and ends after the log
            {"from_ms": BASE_MS + 90_000, "to_ms": BASE_MS + 99_000},  # after the log: empty reads
            {"from_ms": BASE_MS + 200, "to_ms": BASE_MS + 600, "partitions": [2]},
            {"from_ms": BASE_MS + 200, "to_ms": BASE_MS + 600, "time_basis": "event"},
        ]
        for options in ranges:
            native = plan(source, client="native", **options)  # type: ignore[arg-type]
            python = plan(source, client="kafka-python", **options)  # type: ignore[arg-type]
            assert native == python, options
        whole = plan(source, client="kafka-python")
        assert [p.log_end for p in whole.partitions] == [120, 120, 120], "the open transaction is not below the end"
        open_tx.abort_transaction()
    missing = KafkaSource(unique_name("no-such-topic"), kafka_settings)
    errors = []
    for client in ("native", "kafka-python"):
        with pytest.raises(TopicError) as caught:
            plan(missing, client=client)
        errors.append(str(caught.value))
    assert errors[0] == errors[1] and "does not exist" in errors[0]
