"""One interface over the two Kafka clients, and the one place that chooses a client by its name.

- ``confluent`` (:mod:`recovery.kafka.confluent`): librdkafka, several times faster, needs the confluent-kafka
  package (``make setup`` installs it);
- ``kafka-python`` (:mod:`recovery.kafka.kafka_python`): pure Python, always installed;
- ``native`` (:mod:`recovery.kafka.native`): a compiled reader (``make setup`` builds it) that lands records in
  Arrow columns with no Python object per record; it publishes through the confluent producer;
- ``auto`` (the default): native when the extension imports and the connection is plaintext, else confluent
  when confluent-kafka can be imported, kafka-python otherwise.

A :class:`RecordReader` reads offset ranges of single partitions into RECORDS frames; a :class:`TxProducer`
publishes in Kafka transactions. Both clients read and write the same records, so results do not depend on the
client. What the clients share (frames from column lists, the read loop, the fenced error) is in
:mod:`recovery.kafka.clients`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import polars as pl

from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.kafka.confluent import ConfluentReader, ConfluentTx
from recovery.kafka.native import NativeReader, native_available, supports
from recovery.source import KafkaSource

AUTO = "auto"
KAFKA_PYTHON = "kafka-python"
CONFLUENT = "confluent"
NATIVE = "native"
CLIENTS: tuple[str, ...] = (AUTO, KAFKA_PYTHON, CONFLUENT, NATIVE)
DEFAULT_CLIENT = AUTO


class RecordReader(Protocol):
    """Reads offset ranges of single partitions (archive files have one too: :mod:`recovery.replay.readers`)."""

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        """RECORDS frames of the records with ``start <= offset < end`` in offset order, ``batch_records`` rows
        at the most each."""
        ...

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        ...

    def close(self) -> None: ...


class TxProducer(Protocol):
    """A transactional producer with one ``transactional.id``.

    ``init()`` fences earlier producers with the same id and resolves their open transaction before returning,
    ``begin()`` / ``commit()`` bracket a transaction, ``send_many()`` sends records to explicit partitions
    (calling ``after_each`` with the count sent so far; ``timestamps``: explicit Kafka timestamps in ms, else the
    send time) and ``send_one()`` sends one record and returns where it
    went (topic, partition, offset). Errors are :class:`~recovery.errors.BrokerError`; being fenced by another
    producer with the same id is :class:`~recovery.kafka.common.FencedError`.
    """

    transactional_id: str

    def init(self) -> None: ...
    def begin(self) -> None: ...
    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes | None],
        partitions: Sequence[int],
        after_each: Callable[[int], None] | None = None,
        timestamps: Sequence[int] | None = None,
    ) -> None: ...
    def flush(self) -> None: ...
    def send_one(self, topic: str, key: bytes, value: bytes) -> dict[str, Any]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


def _kafka_python_reader(source: KafkaSource) -> RecordReader:
    from recovery.kafka.kafka_python import KafkaPythonReader  # imported when used: 0.1 s of a command's start

    return KafkaPythonReader(source)


def _kafka_python_tx(settings: KafkaSettings, transactional_id: str) -> TxProducer:
    from recovery.kafka.kafka_python import KafkaPythonTx

    return KafkaPythonTx(settings, transactional_id)


_READERS: dict[str, Callable[[KafkaSource], RecordReader]] = {
    KAFKA_PYTHON: _kafka_python_reader,
    CONFLUENT: ConfluentReader,
    NATIVE: NativeReader,
}
_PRODUCERS: dict[str, Callable[[KafkaSettings, str], TxProducer]] = {
    KAFKA_PYTHON: _kafka_python_tx,
    CONFLUENT: ConfluentTx,
}


def confluent_available() -> bool:
    """True when confluent-kafka (librdkafka) can be imported here."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def check_client(client: str, source: KafkaSource | None = None) -> str:
    """The client ``client`` names (``auto`` resolved) if it can be used here; :class:`ConfigError` otherwise.

    ``auto`` resolves to the native reader only for a ``source`` it can read (plaintext connection).
    """
    if client not in CLIENTS:
        raise ConfigError(f"unknown client {client!r}", hint=f"use one of {', '.join(CLIENTS)}")
    if client == AUTO:
        if source is not None and native_available() and supports(source):
            return NATIVE
        return CONFLUENT if confluent_available() else KAFKA_PYTHON
    if client == NATIVE and not native_available():
        raise ConfigError(
            "the native client needs the compiled extension recovery_native",
            hint="build it with `make setup` (needs cargo), or use --client confluent",
        )
    if client == CONFLUENT and not confluent_available():
        raise ConfigError(
            "the confluent client needs the confluent-kafka package",
            hint="pip install confluent-kafka (or use --client kafka-python)",
        )
    return client


def close_soon(reader: RecordReader) -> None:
    """Close ``reader`` on a thread of its own: a librdkafka consumer takes about 0.1 s to leave, which its
    caller need not wait for (the interpreter waits for the thread before it exits)."""
    threading.Thread(target=reader.close, name="recovery-close-reader").start()


def kafka_reader(source: KafkaSource, client: str = DEFAULT_CLIENT) -> RecordReader:
    """A reader of ``source``'s topic through ``client`` (connected; closed by the caller)."""
    return _READERS[check_client(client, source)](source)


def transactional_producer(settings: KafkaSettings, transactional_id: str, client: str = DEFAULT_CLIENT) -> TxProducer:
    """A transactional producer with ``transactional_id`` through ``client`` (closed by the caller)."""
    name = check_client(client)
    if name == NATIVE:  # the compiled client only reads
        name = CONFLUENT if confluent_available() else KAFKA_PYTHON
    return _PRODUCERS[name](settings, transactional_id)
