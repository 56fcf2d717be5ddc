"""The confluent client (librdkafka): a reader of offset ranges and a transactional producer.

kafka-python (:mod:`recovery.kafka.kafka_python`) decodes record batches in Python, which caps one process at
a few tens of thousands of records per second. The optional ``confluent`` client wraps librdkafka (C):
fetching, decompression and CRC checks happen in C threads and Python only collects the offsets, timestamps,
keys and values of each batch into lists, from which the RECORDS frame is built in bulk; producing is batched
in C threads too. Both clients read exactly ``[start, end)`` of one partition and yield the same frames, so a
replay gives identical results whichever client reads it.

It is the default (``auto``, chosen in :mod:`recovery.kafka.client`) whenever confluent-kafka can be
imported; ``make setup`` installs it (a manylinux wheel bundling librdkafka), and it is imported only when a
client is built.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, NoReturn

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import AuthError, BrokerError, ConfigError
from recovery.kafka.common import (
    RecordColumns,
    bootstrap_timeout_s,
    fenced_error,
    read_range,
    stall_error,
)
from recovery.source import KafkaSource

CONSUME_BATCH = 20_000  # messages per consume() call: amortises the call, keeps the list short
POLL_S = 0.1
STALL_S = 60.0  # no progress below the end offset for this long: the broker is not serving the partition

# librdkafka settings for bulk reading (fetch big, never commit, never join a group)
_FETCH_CONFIG: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,  # tells when the log end is reached (a trailing transaction marker)
    "auto.offset.reset": "earliest",
    "check.crcs": True,
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    # prefetch per consumer: bounds a worker's memory (8 MB / 50k messages read as fast as 32 MB / 200k did,
    # with 60 MB less resident per reader)
    "queued.max.messages.kbytes": 8 * 1024,
    "queued.min.messages": 50_000,
    "fetch.wait.max.ms": 10,
    # connect at once instead of on demand: on demand, the first metadata request waited for the connection in
    # about 50 ms more than it took (3 ms against 54 ms in 8 of 9 runs of opening a reader, on a local broker)
    "enable.sparse.connections": False,
    # librdkafka (>= 2.1) postpones a partition's next fetch by this much whenever its queue is above the
    # thresholds above; the default 1 s leaves a fast reader idle (one partition read 3.3x slower with it)
    "fetch.queue.backoff.ms": 10,
}

LIBRDKAFKA_CONFIG: dict[str, Any] = {
    "linger.ms": 20,
    "batch.size": 1024 * 1024,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1024 * 1024,
}

_second = itemgetter(1)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk copy.

    Collecting records allocates millions of short-lived objects that hold no reference cycles; without the
    pause the collector walks them again and again (about a quarter of a replay's CPU time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# librdkafka names of the security settings of kafka-python's client_kwargs() (the one translation of them)
_SECURITY_NAMES = {
    "sasl_mechanism": "sasl.mechanisms",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}
_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")  # given only when set: else the system store is used


def connection_config(settings: KafkaSettings) -> dict[str, Any]:
    """How librdkafka reaches and logs in to the cluster of ``settings``, for consumers and producers alike."""
    kwargs = settings.client_kwargs()
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(kwargs["bootstrap_servers"]),
        "security.protocol": kwargs["security_protocol"],
        "socket.timeout.ms": kwargs["request_timeout_ms"],
        "reconnect.backoff.max.ms": 2_000,
    }
    for key, name in _SECURITY_NAMES.items():
        if key in kwargs and (kwargs[key] or key not in _FILES):
            config[name] = kwargs[key]
    return config


def librdkafka_config(settings: KafkaSettings, isolation_level: str = "read_committed") -> dict[str, Any]:
    """librdkafka configuration of a replay reader equivalent to ``settings``."""
    return {
        **connection_config(settings),
        "client.id": f"{settings.client_id}-replay",
        # the Python client insists on a group id; a reader only assigns partitions, never joins or commits
        "group.id": f"{settings.client_id}-replay-reader",
        "isolation.level": isolation_level,
        **_FETCH_CONFIG,
    }


class ConfluentReader:
    """Reads offset ranges of single partitions with one librdkafka consumer (assigned, never subscribed).

    A :class:`recovery.kafka.client.RecordReader`: ``read(partition, start, end, batch_records)`` yields RECORDS
    frames of the records with ``start <= offset < end`` in offset order.
    """

    def __init__(self, source: KafkaSource, *, stall_s: float = STALL_S) -> None:
        import confluent_kafka as ck

        self.source = source
        self.stall_s = stall_s
        self._ck = ck
        self._errors: list[Any] = []
        settings = source.settings
        config = librdkafka_config(settings, source.isolation_level)
        config["error_cb"] = self._errors.append
        try:
            self.consumer = ck.Consumer(config)
        except (ck.KafkaException, ValueError) as exc:
            raise ConfigError(f"invalid consumer settings for {settings.bootstrap_servers}: {exc}") from None
        try:
            self.consumer.list_topics(source.topic, timeout=bootstrap_timeout_s(settings))
        except ck.KafkaException as exc:
            self.consumer.close()
            self._raise(exc.args[0] if exc.args else None, "connecting a consumer", unreachable=True)

    def _raise(self, error: Any, action: str, *, unreachable: bool = False) -> NoReturn:
        """Raise the :class:`BrokerError` (or :class:`AuthError`) for a librdkafka error."""
        ck = self._ck
        settings, where = self.source.settings, self.source.settings.bootstrap_servers
        seen = [e for e in [error, *self._errors] if e is not None]
        auth = {ck.KafkaError._AUTHENTICATION, ck.KafkaError.SASL_AUTHENTICATION_FAILED}
        denied = {
            ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
            ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        }
        for e in seen:
            if e.code() in auth:
                raise AuthError(
                    f"authentication to {where} failed while {action}",
                    hint="check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
                )
            if e.code() in denied:
                raise AuthError(
                    f"not authorized while {action} on {where}: {e.str()}",
                    hint="ask an operator for READ on the topic (and DESCRIBE on the group "
                    f"{settings.client_id}-replay-reader)",
                )
        if unreachable:
            raise BrokerError(
                f"no Kafka broker reachable at {where} while {action}",
                hint="start one with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS",
            )
        detail = "; ".join(e.str() for e in seen) or "unknown error"
        raise BrokerError(f"Kafka error while {action} on {where}: {detail}")

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        """RECORDS frames of ``[start, end)`` of ``partition``, at most ``batch_records`` rows each."""
        if start >= end:
            return
        ck, topic = self._ck, self.source.topic
        where = f"{topic}[{partition}]"
        self.consumer.assign([ck.TopicPartition(topic, partition, start)])
        columns = RecordColumns(partition)

        def step(position: int) -> tuple[int, bool]:
            # ask for no more than the rest of the range, so the call returns as soon as the range is complete
            # instead of waiting out its timeout (with transaction markers in the range, the end-of-partition
            # event ends the read)
            with gc_paused():
                batch = self._consume(min(CONSUME_BATCH, end - position), where)
                data_end, log_end = self._collect(batch, end, where, columns)
                del batch
            if data_end is not None:
                position = max(position, data_end)
            if log_end is not None:
                position = max(position, log_end)
            return position, data_end is not None

        def stalled(position: int) -> NoReturn:
            if self._errors:
                self._raise(None, f"replaying {where}")
            raise stall_error(where, self.stall_s, position, end)

        try:
            yield from read_range(columns, start, end, batch_records, step=step, stall_s=self.stall_s, stalled=stalled)
        finally:
            self.consumer.unassign()

    def _collect(self, batch: list[Any], end: int, where: str, columns: RecordColumns) -> tuple[int | None, int | None]:
        """Append the data messages of ``batch`` below ``end`` to ``columns``.

        Returns (offset after the last data message, or None; log end from an end-of-partition event, or None).
        """
        message = self._ck.Message
        log_end = None
        if any(map(message.error, batch)):  # rare: end of partition, or a failure
            for m in batch:
                error = m.error()
                if error is None:
                    continue
                if error.code() != self._ck.KafkaError._PARTITION_EOF:
                    self._raise(error, f"replaying {where}")
                log_end = m.offset()
            batch = [m for m in batch if m.error() is None]
            if not batch and self._errors and any(e.fatal() for e in self._errors):
                self._raise(None, f"replaying {where}")
        if not batch:
            return None, log_end
        offsets = columns.offsets
        first, last = batch[0].offset(), batch[-1].offset()
        if last >= end:
            batch = [m for m in batch if m.offset() < end]
        if last < end and last - first + 1 == len(batch):
            offsets.extend(range(first, last + 1))  # contiguous offsets: no per-record call
        else:
            offsets.extend([m.offset() for m in batch])
        columns.stamps.extend(map(_second, map(message.timestamp, batch)))  # (type, ms) pairs
        columns.keys.extend(map(message.key, batch))
        columns.values.extend(map(message.value, batch))
        return last + 1, log_end

    def _consume(self, wanted: int, where: str) -> list[Any]:
        """Up to ``wanted`` messages (Any: a data message's ``offset()`` is never None, unlike its stub says)."""
        try:
            return self.consumer.consume(num_messages=wanted, timeout=POLL_S)
        except self._ck.KafkaException as exc:
            self._raise(exc.args[0] if exc.args else None, f"replaying {where}")

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        ck, topic = self._ck, self.source.topic
        try:
            found = self.consumer.offsets_for_times(
                [ck.TopicPartition(topic, partition, max(0, ts_ms))], timeout=bootstrap_timeout_s(self.source.settings)
            )
        except ck.KafkaException as exc:
            self._raise(exc.args[0] if exc.args else None, f"looking up offsets by time in {topic}[{partition}]")
        offset = found[0].offset if found else -1
        return None if offset < 0 else int(offset)

    def close(self) -> None:
        self.consumer.close()


class ConfluentTx:
    """A librdkafka (confluent-kafka) transactional producer."""

    def __init__(self, settings: KafkaSettings, transactional_id: str) -> None:
        import confluent_kafka as ck

        self.ck, self.settings, self.transactional_id = ck, settings, transactional_id
        config = connection_config(settings)
        config.update(LIBRDKAFKA_CONFIG)
        config.update(
            {
                "client.id": f"{settings.client_id}-publish",
                "transactional.id": transactional_id,
                "transaction.timeout.ms": settings.transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
            }
        )
        if settings.compression is not None:
            config["compression.type"] = settings.compression
        # librdkafka refuses a socket timeout longer than the transaction timeout (+ 100 ms)
        socket_ms = int(config.get("socket.timeout.ms", 60_000))
        config["socket.timeout.ms"] = min(socket_ms, settings.transaction_timeout_ms + 100)
        self.timeout_s = max(bootstrap_timeout_s(settings), settings.request_timeout_ms / 1000)
        self.errors: list[Any] = []
        self.error_topics: list[str] = []
        self.client_errors: list[Any] = []  # errors librdkafka reports outside deliveries (a transaction refused)
        config["error_cb"] = self.client_errors.append
        self.producer = ck.Producer(config)

    def _fail(self, error: Any, action: str) -> None:
        ck = self.ck
        if error is not None and error.code() in (ck.KafkaError._FENCED, ck.KafkaError.PRODUCER_FENCED):
            raise fenced_error(self.transactional_id)
        where = self.settings.bootstrap_servers
        detail = error.str() if error is not None else "unknown error"
        raise BrokerError(f"Kafka error while {action} on {where}: {detail}", hint="check the broker, then rerun")

    def _run(self, action: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self.ck.KafkaException as exc:
            self._fail(exc.args[0] if exc.args else None, action)
        except SystemError as exc:  # a fatal error raised while a delivery callback ran comes wrapped in this
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, self.ck.KafkaException):
                self._fail(cause.args[0] if cause.args else None, action)
            fatal = self._fatal_error()  # flush() of a producer fenced mid-call can fail with no exception set
            if fatal is None:
                raise
            self._fail(fatal, action)

    def _fatal_error(self) -> Any:
        """The producer's fatal error (fenced, say), or None: aborting is the call that reports it, and the
        transaction is lost anyway when the producer failed."""
        try:
            self.producer.abort_transaction(1.0)
        except self.ck.KafkaException as exc:
            if exc.args and exc.args[0].fatal():
                return exc.args[0]
        return None

    def init(self) -> None:
        self._run("initialising transactions", lambda: self.producer.init_transactions(self.timeout_s))

    def begin(self) -> None:
        self._run("beginning a transaction", self.producer.begin_transaction)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(error)
            self.error_topics.append(message.topic() if message is not None else "?")

    def _delivery_failed(self) -> None:
        """Raise for the records that failed: an authorization error first (it names the topic and the user;
        the records queued after it are only purged), any other error otherwise."""
        ck = self.ck
        denied = {
            ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        }
        settings = self.settings
        user = f" as User:{settings.sasl_username}" if settings.security_protocol.startswith("SASL") else ""
        found = list(zip(self.errors, self.error_topics, strict=False))
        first_topic = self.error_topics[0] if self.error_topics else "?"
        found += [(error, first_topic) for error in self.client_errors]
        if all(error.code() == ck.KafkaError._PURGE_QUEUE for error, _ in found):
            # the transaction failed and librdkafka purged what was queued: committing names the cause
            try:
                self.producer.commit_transaction(self.timeout_s)
            except ck.KafkaException as exc:
                if exc.args:
                    found.insert(0, (exc.args[0], first_topic))
        for error, topic in found:
            if error.code() in denied:
                kind = "".join(part.capitalize() for part in error.name().split("_")) + "Error"
                raise AuthError(
                    f"not authorized while publishing to {topic} on {settings.bootstrap_servers}{user}: "
                    f"{kind}: {error.str()} ({topic})",
                    hint="ask an operator for the ACL (topic WRITE/READ, transactional id, group) this step needs",
                )
        self._fail(self.errors[0], f"sending to {settings.bootstrap_servers}")

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes | None],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> None:
        produce, poll = self.producer.produce, self.producer.poll
        stamps: Sequence[int] = [0] * len(keys) if timestamps is None else timestamps  # 0: librdkafka stamps it
        for i, (key, value, partition, stamp) in enumerate(zip(keys, values, partitions, stamps, strict=True)):
            while True:
                try:
                    produce(topic, value, key, partition, on_delivery=self._delivered, timestamp=stamp)
                    break
                except BufferError:  # the local queue is full: let librdkafka deliver some first
                    poll(0.05)
                except self.ck.KafkaException as exc:
                    self._fail(exc.args[0] if exc.args else None, "sending records")
            if after_each is not None:
                after_each(i + 1)
            if i % 10_000 == 0:
                poll(0)
        self.flush()

    def flush(self) -> None:
        deadline = time.monotonic() + 2 * self.timeout_s
        # a fatal error (this producer fenced by a newer run) surfaces here as a KafkaException
        while self._run("delivering records", lambda: self.producer.flush(1.0)) > 0:
            if time.monotonic() > deadline:
                raise BrokerError(f"records not delivered within {2 * self.timeout_s:.0f} s", hint="check the broker")
        if self.errors:
            self._delivery_failed()

    def send_one(self, topic: str, key: bytes, value: bytes) -> dict[str, Any]:
        where: dict[str, Any] = {"topic": topic}

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self.errors.append(error)
                self.error_topics.append(topic)
            else:
                where.update(partition=message.partition(), offset=message.offset())

        self._run("sending a record", lambda: self.producer.produce(topic, value, key, on_delivery=delivered))
        self.flush()
        return where

    def commit(self) -> None:
        self._run("committing a transaction", lambda: self.producer.commit_transaction(self.timeout_s))

    def close(self) -> None:
        self.producer.flush(1.0)
