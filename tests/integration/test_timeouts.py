"""A stopped broker gives a clear BrokerError within a stated bound, never a hang.

Bounds asserted here (``request_timeout_ms`` = 3 s unless stated, slack 2 s for a loaded machine):
building a client: bootstrap timeout (3 s; 10 s with default settings); a connected producer's
delivery: 2 x request timeout (6 s); a bounded read whose broker died: stall timeout, 2 x request timeout
(6 s); a request on a connected client: request timeout (3 s); the CLI with default settings: 10 s plus
the interpreter's start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.consumer import KafkaConsumer
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.errors import BrokerError
from recovery.kafka.broker import LocalBroker
from recovery.kafka.clients import (
    deliver,
    guarded,
    new_admin,
    new_consumer,
    new_producer,
    poll_until_end,
)
from recovery.kafka.common import bootstrap_timeout_s, stall_timeout_s
from recovery.kafka.topics import ensure_topic

REQUEST_TIMEOUT_MS = 3000
SLACK_S = 2.0
CLI_START_S = 5.0  # interpreter and imports of a fresh `python -m recovery`


@dataclass
class DeadBroker:
    """Clients connected while the broker was up; the broker is stopped before any test runs."""

    address: str
    settings: KafkaSettings
    topic: str
    producer: KafkaProducer
    consumer: KafkaConsumer
    end_offsets: dict[TopicPartition, int]
    read_before_stop: int
    admin: KafkaAdminClient


@pytest.fixture(scope="module")
def dead(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeadBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-dead"))
    address = broker.start(tie_to_parent=True, timeout_s=90)
    clients: list[Any] = []
    try:
        settings = KafkaSettings.from_env(
            env={"KAFKA_BOOTSTRAP_SERVERS": address, "KAFKA_REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS)}
        )
        topic = f"timeouts-{uuid.uuid4().hex[:8]}"
        ensure_topic(settings, topic, 2)
        producer = new_producer(settings, linger_ms=5)
        clients.append(producer)
        futures = [producer.send(topic, key=f"k{i}".encode(), value=b"x" * 1000) for i in range(400)]
        deliver(settings, producer, futures, "writing test records")
        # small fetches, so most records are still on the broker when it stops
        consumer = new_consumer(settings, max_partition_fetch_bytes=4096, fetch_max_bytes=8192, max_poll_records=4)
        clients.append(consumer)
        parts = [TopicPartition(topic, p) for p in range(2)]
        consumer.assign(parts)
        end_offsets = consumer.end_offsets(parts)
        consumer.seek_to_beginning(*parts)
        first = next(poll_until_end(settings, consumer, end_offsets, action="reading before the stop"))
        admin = new_admin(settings)
        clients.append(admin)
        admin.list_topics()
        broker.stop()
        yield DeadBroker(address, settings, topic, producer, consumer, end_offsets, len(first), admin)
    finally:
        broker.stop()
        for client in clients:
            client.close(**({"timeout": 1} if isinstance(client, KafkaProducer) else {}))


def elapsed_s(fn: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.parametrize("build", [new_admin, new_consumer, new_producer], ids=["admin", "consumer", "producer"])
def test_building_a_client_fails_within_the_bootstrap_timeout(
    dead: DeadBroker, build: Callable[[KafkaSettings], object]
) -> None:
    error, took_s = elapsed_s(lambda: build(dead.settings))
    assert isinstance(error, BrokerError), error
    assert f"Kafka at {dead.address} did not answer within 3 s" in str(error)
    assert "make kafka-up" in str(error)
    assert took_s < bootstrap_timeout_s(dead.settings) + SLACK_S


def test_cli_status_with_default_settings_fails_within_ten_seconds(dead: DeadBroker) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = dead.address
    started = time.monotonic()
    status = subprocess.run(
        [sys.executable, "-m", "recovery", "kafka", "status"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took_s = time.monotonic() - started
    assert status.returncode == 2
    assert status.stderr.count("\n") == 1 and "Traceback" not in status.stderr
    assert f"recovery: error: Kafka at {dead.address} did not answer within 10 s" in status.stderr
    assert took_s < 10 + CLI_START_S, f"took {took_s:.1f} s"


def test_connected_producer_fails_within_the_delivery_timeout(dead: DeadBroker) -> None:
    def send() -> None:
        futures = [dead.producer.send(dead.topic, key=b"late", value=b"late")]
        deliver(dead.settings, dead.producer, futures, "writing after the stop")

    error, took_s = elapsed_s(send)
    assert isinstance(error, BrokerError), error
    assert "while writing after the stop" in str(error)
    assert took_s < 2 * REQUEST_TIMEOUT_MS / 1000 + SLACK_S


def test_bounded_read_stops_with_an_error_when_the_broker_is_gone(dead: DeadBroker) -> None:
    total = sum(dead.end_offsets.values())
    seen = [dead.read_before_stop]

    def read() -> None:
        for batch in poll_until_end(dead.settings, dead.consumer, dead.end_offsets, action="replaying"):
            seen.append(len(batch))

    error, took_s = elapsed_s(read)
    assert isinstance(error, BrokerError), error
    assert sum(seen) < total, "the whole topic was read before the stop: the test proves nothing"
    assert f"no progress on {dead.topic}[" in str(error) and "while replaying" in str(error)
    assert took_s < stall_timeout_s(dead.settings) + SLACK_S


def test_requests_on_connected_clients_fail_within_the_request_timeout(dead: DeadBroker) -> None:
    parts = list(dead.end_offsets)
    for action, call in [
        ("listing topics", dead.admin.list_topics),
        ("reading end offsets", lambda: dead.consumer.end_offsets(parts)),
    ]:
        error, took_s = elapsed_s(lambda call=call, action=action: guarded(dead.settings, action, call))
        assert isinstance(error, BrokerError), (action, error)
        assert action in str(error) and dead.address in str(error)
        assert took_s < REQUEST_TIMEOUT_MS / 1000 + SLACK_S, (action, took_s)


def test_poll_until_end_reads_exactly_up_to_the_snapshot(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("bounded", partitions=3)
    producer = new_producer(kafka_settings)
    try:
        futures = [producer.send(topic, key=f"k{i % 7}".encode(), value=str(i).encode()) for i in range(300)]
        deliver(kafka_settings, producer, futures, "writing")
        consumer = new_consumer(kafka_settings, max_poll_records=50)
        try:
            parts = [TopicPartition(topic, p) for p in range(3)]
            consumer.assign(parts)
            end = consumer.end_offsets(parts)
            consumer.seek_to_beginning(*parts)
            # records written after the snapshot must not be read
            late = [producer.send(topic, key=f"k{i % 7}".encode(), value=b"late") for i in range(30)]
            deliver(kafka_settings, producer, late, "writing after the snapshot")
            values = [
                r.value for batch in poll_until_end(kafka_settings, consumer, end, action="reading") for r in batch
            ]
        finally:
            consumer.close()
    finally:
        producer.close(timeout=5)
    assert sorted(int(v) for v in values) == list(range(300))
