"""The kafka-python client (the default, pure Python): a reader of offset ranges and a transactional producer.

kafka-python decodes record batches in Python, which caps one process at a few tens of thousands of records
per second, and spends ~35 us of Python per record it produces. Chosen by name in :mod:`recovery.kafka.client`;
clients are built with :mod:`recovery.kafka.clients`, whose :func:`~recovery.kafka.clients.guarded` turns
kafka-python errors into :class:`~recovery.errors.BrokerError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import kafka.errors as kerr
import polars as pl
from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.errors import BrokerError
from recovery.kafka.clients import guarded, new_consumer, new_producer
from recovery.kafka.common import RecordColumns, fenced_error, read_range, stall_error, stall_timeout_s
from recovery.source import KafkaSource

_CONSUMER_CONFIG: dict[str, Any] = {
    "max_poll_records": 50_000,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "check_crcs": True,
    # kafka-python sleeps this long whenever a poll finds nothing fetchable yet (just after a seek): the
    # default 100 ms adds up over the many short reads of a publish (audit history, read-back)
    "retry_backoff_ms": 20,
}
KAFKA_PYTHON_CONFIG: dict[str, Any] = {
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "retry_backoff_ms": 20,  # a transaction begun right after a commit is retried (CONCURRENT_TRANSACTIONS)
}


class KafkaPythonReader:
    """Reads offset ranges of single partitions with one assigned consumer."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.consumer = new_consumer(source.settings, isolation_level=source.isolation_level, **_CONSUMER_CONFIG)

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        """RECORDS frames of ``[start, end)`` of ``partition``, at most ``batch_records`` rows each."""
        settings, topic = self.source.settings, self.source.topic
        tp = TopicPartition(topic, partition)
        c = self.consumer
        c.assign([tp])
        c.seek(tp, start)
        columns = RecordColumns(partition)
        where = f"{topic}[{partition}]"
        stall_s = stall_timeout_s(settings)

        def step(position: int) -> tuple[int, bool]:
            polled = guarded(settings, f"replaying {where}", lambda: c.poll(timeout_ms=500))
            for records in polled.values():
                if records and records[-1].offset >= end:
                    records = [r for r in records if r.offset < end]
                columns.offsets.extend([r.offset for r in records])
                columns.stamps.extend([r.timestamp for r in records])
                columns.keys.extend([r.key for r in records])
                columns.values.extend([r.value for r in records])
            current = c.position(tp)
            if current is not None and current > position:
                return current, True
            return position, False

        def stalled(position: int) -> NoReturn:
            raise stall_error(where, stall_s, position, end)

        yield from read_range(columns, start, end, batch_records, step=step, stall_s=stall_s, stalled=stalled)

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        settings, tp = self.source.settings, TopicPartition(self.source.topic, partition)
        action = f"looking up offsets by time in {self.source.topic}[{partition}]"
        found = guarded(settings, action, lambda: self.consumer.offsets_for_times({tp: max(0, ts_ms)}))
        hit = found.get(tp)
        return None if hit is None else int(hit.offset)

    def close(self) -> None:
        self.consumer.close()


class KafkaPythonTx:
    """A kafka-python transactional producer."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        self.settings, self.transactional_id = settings, transactional_id
        self.action = f"publishing as {transactional_id}"
        self.producer = new_producer(
            settings,
            transactional_id=transactional_id,
            transaction_timeout_ms=settings.transaction_timeout_ms,
            **KAFKA_PYTHON_CONFIG,
        )

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return guarded(self.settings, self.action, fn)
        except BrokerError as exc:
            if isinstance(exc.__cause__, kerr.ProducerFencedError | kerr.InvalidProducerEpochError):
                raise fenced_error(self.transactional_id) from exc
            raise

    def init(self) -> None:
        self._run(self.producer.init_transactions)

    def begin(self) -> None:
        self._run(self.producer.begin_transaction)

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes | None],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> None:
        send = self.producer.send
        stamps: Sequence[int | None] = [None] * len(keys) if timestamps is None else timestamps

        def run() -> None:
            rows = zip(keys, values, partitions, stamps, strict=True)
            for i, (key, value, partition, stamp) in enumerate(rows):
                send(topic, key=key, value=value, partition=partition, timestamp_ms=stamp)
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
