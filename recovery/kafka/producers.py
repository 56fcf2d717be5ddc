"""Transactional producers for publishing: kafka-python (default) or librdkafka (confluent), one interface.

Both take a ``transactional.id``; ``init()`` fences earlier producers with the same id and resolves their
open transaction before returning, ``begin()`` / ``commit()`` bracket a transaction, ``send_many()`` sends
records to explicit partitions and ``send_one()`` sends one record and returns where it went. Errors are
:class:`~recovery.errors.BrokerError`; being fenced by another producer with the same id is
:class:`FencedError`. kafka-python spends ~35 us of Python per record; librdkafka batches in C threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import kafka.errors as kerr

from recovery.config import KafkaSettings
from recovery.errors import BrokerError, RecoveryError
from recovery.kafka.clients import bootstrap_timeout_s, guarded, new_producer
from recovery.kafka.confluent import CONFLUENT, check_client, librdkafka_config

TRANSACTION_TIMEOUT_MS = 600_000
KAFKA_PYTHON_CONFIG: dict[str, Any] = {
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "retry_backoff_ms": 20,  # a transaction begun right after a commit is retried (CONCURRENT_TRANSACTIONS)
}
LIBRDKAFKA_CONFIG: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1024 * 1024,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1024 * 1024,
}
# librdkafka settings of a replay reader that a producer does not take
_CONSUMER_ONLY = (
    "group.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
    "check.crcs",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
)


class FencedError(RecoveryError):
    """Another producer with the same transactional.id took over."""


class TxProducer(Protocol):
    transactional_id: str

    def init(self) -> None: ...
    def begin(self) -> None: ...
    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
    ) -> None: ...
    def flush(self) -> None: ...
    def send_one(self, topic: str, key: bytes, value: bytes) -> dict[str, Any]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class KafkaPythonTx:
    """A kafka-python transactional producer."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self.settings, self.transactional_id = settings, transactional_id
        self.action = f"publishing as {transactional_id}"
        self.producer = new_producer(
            settings,
            transactional_id=transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            **KAFKA_PYTHON_CONFIG,
        )

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return guarded(self.settings, self.action, fn)
        except BrokerError as exc:
            if isinstance(exc.__cause__, kerr.ProducerFencedError | kerr.InvalidProducerEpochError):
                raise FencedError(
                    f"another publish with transactional.id {self.transactional_id} took over",
                    hint="let the other run finish; rerunning later is safe (a published digest is a no-op)",
                ) from exc
            raise

    def init(self) -> None:
        self._run(self.producer.init_transactions)

    def begin(self) -> None:
        self._run(self.producer.begin_transaction)

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
    ) -> None:
        send = self.producer.send

        def run() -> None:
            for i, (key, value, partition) in enumerate(zip(keys, values, partitions, strict=True)):
                send(topic, key=key, value=value, partition=partition)
                if after_each is not None:
                    after_each(i + 1)
            self.producer.flush()

        self._run(run)

    def flush(self) -> None:
        self._run(self.producer.flush)

    def send_one(self, topic: str, key: bytes, value: bytes) -> dict[str, Any]:
        future = self._run(lambda: self.producer.send(topic, key=key, value=value))
        self.flush()
        meta = self._run(lambda: future.get(timeout=self.settings.request_timeout_ms / 1000))
        return {"topic": topic, "partition": meta.partition, "offset": meta.offset}

    def commit(self) -> None:
        self._run(self.producer.commit_transaction)

    def close(self) -> None:
        self.producer.close(timeout=10)


class ConfluentTx:
    """A librdkafka (confluent-kafka) transactional producer."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        import confluent_kafka as ck

        self.ck, self.settings, self.transactional_id = ck, settings, transactional_id
        config = {k: v for k, v in librdkafka_config(settings).items() if k not in _CONSUMER_ONLY}
        config.update(LIBRDKAFKA_CONFIG)
        config.update(
            {
                "client.id": f"{settings.client_id}-publish",
                "transactional.id": transactional_id,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        self.timeout_s = max(bootstrap_timeout_s(settings), settings.request_timeout_ms / 1000)
        self.errors: list[Any] = []
        self.producer = ck.Producer(config)

    def _fail(self, error: Any, action: str) -> None:
        ck = self.ck
        if error is not None and error.code() in (ck.KafkaError._FENCED, ck.KafkaError.PRODUCER_FENCED):
            raise FencedError(
                f"another publish with transactional.id {self.transactional_id} took over",
                hint="let the other run finish; rerunning later is safe (a published digest is a no-op)",
            )
        where = self.settings.bootstrap_servers
        detail = error.str() if error is not None else "unknown error"
        raise BrokerError(f"Kafka error while {action} on {where}: {detail}", hint="check the broker, then rerun")

    def _run(self, action: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self.ck.KafkaException as exc:
            self._fail(exc.args[0] if exc.args else None, action)

    def init(self) -> None:
        self._run("initialising transactions", lambda: self.producer.init_transactions(self.timeout_s))

    def begin(self) -> None:
        self._run("beginning a transaction", self.producer.begin_transaction)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.errors.append(error)

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
    ) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        for i, (key, value, partition) in enumerate(zip(keys, values, partitions, strict=True)):
            while True:
                try:
                    produce(topic, value, key, partition, on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let librdkafka deliver some first
                    poll(0.05)
            if after_each is not None:
                after_each(i + 1)
            if i % 10_000 == 0:
                poll(0)
        self.flush()

    def flush(self) -> None:
        deadline = time.monotonic() + 2 * self.timeout_s
        while self.producer.flush(1.0) > 0:
            if time.monotonic() > deadline:
                raise BrokerError(f"records not delivered within {2 * self.timeout_s:.0f} s", hint="check the broker")
        if self.errors:
            self._fail(self.errors[0], f"sending to {self.settings.bootstrap_servers}")

    def send_one(self, topic: str, key: bytes, value: bytes) -> dict[str, Any]:
        where: dict[str, Any] = {"topic": topic}

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self.errors.append(error)
            else:
                where.update(partition=message.partition(), offset=message.offset())

        self._run("sending a record", lambda: self.producer.produce(topic, value, key, on_delivery=delivered))
        self.flush()
        return where

    def commit(self) -> None:
        self._run("committing a transaction", lambda: self.producer.commit_transaction(self.timeout_s))

    def close(self) -> None:
        self.producer.flush(1.0)


def transactional_producer(settings: KafkaSettings, transactional_id: str, client: str) -> TxProducer:
    """A transactional producer of ``client`` (see :mod:`recovery.kafka.confluent`)."""
    check_client(client)
    if client == CONFLUENT:
        return ConfluentTx(settings, transactional_id)
    return KafkaPythonTx(settings, transactional_id)
