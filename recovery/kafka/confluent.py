"""Consumer backends of the replay: kafka-python (the default, pure Python) or confluent-kafka (librdkafka).

kafka-python decodes record batches in Python, which caps one process at a few tens of thousands of records
per second. The optional ``confluent`` client wraps librdkafka (C): fetching, decompression and CRC checks
happen in C threads and Python only collects the offsets, timestamps, keys and values of each batch into
lists, from which the RECORDS frame is built in bulk. Both backends read exactly ``[start, end)`` of one
partition and yield the same frames, so a replay gives identical results whichever client reads it.

Select the client with ``replay(..., client="confluent")`` or ``recovery replay --client confluent``;
confluent-kafka is installed with ``pip install confluent-kafka`` (a manylinux wheel bundling librdkafka).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, NoReturn

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import AuthError, BrokerError, ConfigError
from recovery.frames import RECORDS
from recovery.kafka.clients import bootstrap_timeout_s
from recovery.source import KafkaSource

KAFKA_PYTHON = "kafka-python"
CONFLUENT = "confluent"
CLIENTS: tuple[str, ...] = (KAFKA_PYTHON, CONFLUENT)
DEFAULT_CLIENT = KAFKA_PYTHON

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
    "queued.max.messages.kbytes": 32 * 1024,  # prefetch per consumer: ample, and bounds a worker's memory
    "queued.min.messages": 200_000,
    "fetch.wait.max.ms": 10,
    # librdkafka (>= 2.1) postpones a partition's next fetch by this much whenever its queue is above the
    # thresholds above; the default 1 s leaves a fast reader idle (one partition read 3.3x slower with it)
    "fetch.queue.backoff.ms": 10,
}


_second = itemgetter(1)

# offsets, timestamps, keys, values of the records collected so far
_Columns = tuple[list[int], list[int], list[bytes | None], list[bytes | None]]


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


def check_client(client: str) -> str:
    """``client`` if it names a known backend that can be imported here; :class:`ConfigError` otherwise."""
    if client not in CLIENTS:
        raise ConfigError(f"unknown client {client!r}", hint=f"use one of {', '.join(CLIENTS)}")
    if client == CONFLUENT:
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the confluent client needs the confluent-kafka package",
                hint="pip install confluent-kafka (or use --client kafka-python)",
            ) from None
    return client


def librdkafka_config(settings: KafkaSettings, isolation_level: str = "read_committed") -> dict[str, Any]:
    """librdkafka configuration equivalent to ``settings`` (the only place it reveals secrets)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
        "client.id": f"{settings.client_id}-replay",
        # the Python client insists on a group id; a reader only assigns partitions, never joins or commits
        "group.id": f"{settings.client_id}-replay-reader",
        "isolation.level": isolation_level,
        "socket.timeout.ms": settings.request_timeout_ms,
        "reconnect.backoff.max.ms": 2_000,
        **_FETCH_CONFIG,
    }
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.reveal()
    if settings.security_protocol.endswith("SSL"):
        for key, value in (
            ("ssl.ca.location", settings.ssl_cafile),
            ("ssl.certificate.location", settings.ssl_certfile),
            ("ssl.key.location", settings.ssl_keyfile),
        ):
            if value:
                config[key] = value
        if settings.ssl_password is not None:
            config["ssl.key.password"] = settings.ssl_password.reveal()
    return config


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


class ConfluentReader:
    """Reads offset ranges of single partitions with one librdkafka consumer (assigned, never subscribed).

    Same interface as the kafka-python reader of :mod:`recovery.replay.bounded`: ``read(partition, start, end,
    batch_records)`` yields RECORDS frames of the records with ``start <= offset < end`` in offset order.
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
        columns: _Columns = ([], [], [], [])
        offsets, stamps, keys, values = columns
        position, progressed = start, time.monotonic()
        try:
            while position < end:
                # ask for no more than the rest of the range, so the call returns as soon as the range is
                # complete instead of waiting out its timeout (with transaction markers in the range, the
                # end-of-partition event ends the read)
                with gc_paused():
                    batch = self._consume(min(CONSUME_BATCH, end - position), where)
                    data_end, log_end = self._collect(batch, end, where, columns)
                    del batch
                if data_end is not None:
                    position, progressed = max(position, data_end), time.monotonic()
                if log_end is not None:
                    position = max(position, log_end)
                if data_end is None and time.monotonic() - progressed > self.stall_s:
                    self._raise_stall(where, position, end)
                if len(offsets) >= batch_records:
                    frame = records_frame(partition, offsets, stamps, keys, values)
                    for col in columns:
                        col.clear()
                    yield from (frame.slice(i, batch_records) for i in range(0, frame.height, batch_records))
            if offsets:
                yield records_frame(partition, offsets, stamps, keys, values)
        finally:
            self.consumer.unassign()

    def _collect(self, batch: list[Any], end: int, where: str, columns: _Columns) -> tuple[int | None, int | None]:
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
        offsets, stamps, keys, values = columns
        first, last = batch[0].offset(), batch[-1].offset()
        if last >= end:
            batch = [m for m in batch if m.offset() < end]
        if last < end and last - first + 1 == len(batch):
            offsets.extend(range(first, last + 1))  # contiguous offsets: no per-record call
        else:
            offsets.extend([m.offset() for m in batch])
        stamps.extend(map(_second, map(message.timestamp, batch)))  # (type, ms) pairs
        keys.extend(map(message.key, batch))
        values.extend(map(message.value, batch))
        return last + 1, log_end

    def _consume(self, wanted: int, where: str) -> list[Any]:
        """Up to ``wanted`` messages (Any: a data message's ``offset()`` is never None, unlike its stub says)."""
        try:
            return self.consumer.consume(num_messages=wanted, timeout=POLL_S)
        except self._ck.KafkaException as exc:
            self._raise(exc.args[0] if exc.args else None, f"replaying {where}")

    def _raise_stall(self, where: str, position: int, end: int) -> NoReturn:
        if self._errors:
            self._raise(None, f"replaying {where}")
        raise BrokerError(
            f"replay of {where} made no progress for {self.stall_s:.0f} s at offset {position} (end offset {end})",
            hint="check the broker (`recovery kafka status`) and retry",
        )

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
