"""The Kafka behaviour the toolkit relies on, checked on the real broker."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable

import kafka.errors as kerr
import pytest
from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.kafka.clients import consumer, producer


def read_bounded(settings: KafkaSettings, topic: str, partitions: int, **config: object) -> list:
    """Read every record below the end offsets snapshotted before reading."""
    with consumer(settings, **config) as c:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        records = []
        remaining = {tp for tp in parts if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, batch in c.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < end[tp])
            remaining = {tp for tp in remaining if c.position(tp) < end[tp]}
        assert not remaining, f"did not reach the end offsets of {remaining}"
        return records


def test_idempotent_keyed_events_are_read_back_once_in_key_order(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("ticks", partitions=6)
    symbols = [f"S{i}" for i in range(12)]
    sent = []
    with producer(kafka_settings, linger_ms=5) as p:
        for seq in range(1, 201):
            for sym in symbols:
                event = {"event_id": f"{sym}-{seq}", "symbol": sym, "seq": seq}
                p.send(topic, key=sym.encode(), value=json.dumps(event).encode())
                sent.append(event["event_id"])
        p.flush()
    records = read_bounded(kafka_settings, topic, 6)
    ids = [json.loads(r.value)["event_id"] for r in records]
    assert sorted(ids) == sorted(sent)
    assert len(set(ids)) == len(ids)
    by_key: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = json.loads(r.value)
        by_key[event["symbol"]].append(event["seq"])
        partition_of[event["symbol"]].add(r.partition)
    assert all(seqs == list(range(1, 201)) for seqs in by_key.values())
    assert all(len(p) == 1 for p in partition_of.values()), "a key must live in one partition"
    assert len({next(iter(p)) for p in partition_of.values()}) > 1, "keys should spread over partitions"


def test_offsets_for_times_gives_first_offset_at_or_after_timestamp(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("times", partitions=1)
    base = 1_700_000_000_000
    stamps = [base + 1000 * i for i in range(10)]
    with producer(kafka_settings) as p:
        for i, ts in enumerate(stamps):
            p.send(topic, key=b"k", value=str(i).encode(), timestamp_ms=ts)
        p.flush()
    tp = TopicPartition(topic, 0)
    with consumer(kafka_settings) as c:
        exact = c.offsets_for_times({tp: stamps[4]})[tp]
        between = c.offsets_for_times({tp: stamps[4] + 1})[tp]
        before = c.offsets_for_times({tp: base - 5000})[tp]
        after = c.offsets_for_times({tp: stamps[-1] + 1})[tp]
    assert (exact.offset, exact.timestamp) == (4, stamps[4])
    assert (between.offset, between.timestamp) == (5, stamps[5])
    assert before.offset == 0
    assert after is None


def test_transactions_commit_abort_and_fencing(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("txn", partitions=2)
    txn_id = unique_name("txn")
    with producer(kafka_settings, transactional_id=txn_id) as p:
        p.init_transactions()
        p.begin_transaction()
        for i in range(5):
            p.send(topic, key=f"c{i}".encode(), value=b"committed")
        p.commit_transaction()
        p.begin_transaction()
        for i in range(5):
            p.send(topic, key=f"a{i}".encode(), value=b"aborted")
        p.flush()
        p.abort_transaction()

        committed = read_bounded(kafka_settings, topic, 2, isolation_level="read_committed")
        assert sorted(r.value for r in committed) == [b"committed"] * 5
        uncommitted = read_bounded(kafka_settings, topic, 2, isolation_level="read_uncommitted")
        assert sorted(r.value for r in uncommitted) == [b"aborted"] * 5 + [b"committed"] * 5

        # a second producer with the same transactional.id fences the first
        p.begin_transaction()
        p.send(topic, key=b"zombie", value=b"zombie")
        p.flush()
        with producer(kafka_settings, transactional_id=txn_id) as successor:
            successor.init_transactions()
            with pytest.raises(kerr.KafkaError) as fenced:
                p.commit_transaction()
            assert "fenc" in type(fenced.value).__name__.lower() or "epoch" in type(fenced.value).__name__.lower()
            successor.begin_transaction()
            successor.send(topic, key=b"s", value=b"successor")
            successor.commit_transaction()
    final = read_bounded(kafka_settings, topic, 2, isolation_level="read_committed")
    assert sorted(r.value for r in final) == [b"committed"] * 5 + [b"successor"]
