"""The native client: a compiled reader (``recovery_native``, Rust + librdkafka) that lands records in Arrow.

The confluent reader (:mod:`recovery.kafka.confluent`) lets librdkafka fetch and decompress, but still makes
Python objects of every record's offset, timestamp, key and value before building a frame. The native reader
runs the same librdkafka consumer loop in compiled code with the interpreter released, appends each record to
Arrow buffers and hands a whole batch to polars through the Arrow PyCapsule interface: no Python object per
record. Aborted transactions, control records and compaction gaps are librdkafka's business, as for the
confluent reader (read_committed unless the source says otherwise), and both yield identical frames.

``make setup`` builds the extension from ``native/`` (cargo + maturin). Without it the package works the same
through the other clients: ``auto`` (:mod:`recovery.kafka.client`) picks this reader only when the extension
imports and the connection is plaintext; publishing goes through confluent-kafka's producer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NoReturn

import polars as pl

from recovery.errors import BrokerError, ConfigError
from recovery.frames import RECORDS
from recovery.kafka.common import bootstrap_timeout_s, stall_error
from recovery.kafka.confluent import STALL_S, librdkafka_config
from recovery.source import KafkaSource

FETCH_RECORDS = 65_536  # records per compiled fetch call at the most (and no more than batch_records)
FETCH_TIMEOUT_MS = 100


def native_available() -> bool:
    """True when the compiled extension ``recovery_native`` can be imported here."""
    try:
        import recovery_native  # noqa: F401
    except ImportError:
        return False
    return True


def supports(source: KafkaSource) -> bool:
    """True when the native reader can reach ``source``'s cluster (plaintext; SASL and TLS use confluent)."""
    return source.settings.security_protocol == "PLAINTEXT"


def batch_frame(batch: Any) -> pl.DataFrame:
    """A RECORDS frame of an Arrow struct array of records (any object with ``__arrow_c_array__``)."""
    return pl.Series(batch).struct.unnest().cast(RECORDS)  # type: ignore[arg-type]


class NativeReader:
    """Reads offset ranges of single partitions with the compiled reader (one librdkafka consumer, assigned).

    A :class:`recovery.kafka.client.RecordReader`: ``read(partition, start, end, batch_records)`` yields RECORDS
    frames of the records with ``start <= offset < end`` in offset order.
    """

    def __init__(self, source: KafkaSource, *, stall_s: float = STALL_S) -> None:
        try:
            import recovery_native
        except ImportError:
            raise ConfigError(
                "the native client needs the compiled extension recovery_native",
                hint="build it with `make setup` (needs cargo), or use --client confluent",
            ) from None
        if not supports(source):
            raise ConfigError(
                f"the native client reads plaintext connections only, not {source.settings.security_protocol}",
                hint="use --client confluent (or auto) for SASL or TLS",
            )
        self.source, self.stall_s = source, stall_s
        settings = source.settings
        config = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self._config().items()}
        try:
            self._reader = recovery_native.Reader(config, source.topic, int(bootstrap_timeout_s(settings) * 1000))
        except ConnectionError:
            raise BrokerError(
                f"no Kafka broker reachable at {settings.bootstrap_servers} while connecting a consumer",
                hint="start one with `make kafka-up` or check KAFKA_BOOTSTRAP_SERVERS",
            ) from None
        except ValueError as exc:
            raise ConfigError(f"invalid consumer settings for {settings.bootstrap_servers}: {exc}") from None

    def _config(self) -> dict[str, Any]:
        config = librdkafka_config(self.source.settings, self.source.isolation_level)
        config["client.id"] = f"{self.source.settings.client_id}-replay-native"
        return config

    def _failed(self, exc: RuntimeError, action: str) -> NoReturn:
        where = self.source.settings.bootstrap_servers
        raise BrokerError(f"Kafka error while {action} on {where}: {exc}") from None

    def read(self, partition: int, start: int, end: int, batch_records: int) -> Iterator[pl.DataFrame]:
        """RECORDS frames of ``[start, end)`` of ``partition``, at most ``batch_records`` rows each."""
        if start >= end:
            return
        where = f"{self.source.topic}[{partition}]"
        self._reader.assign(partition, start)
        position, progressed = start, time.monotonic()
        pending: list[pl.DataFrame] = []
        pending_rows = 0
        try:
            while position < end:
                try:
                    batch, data_end, log_end = self._reader.fetch(
                        partition, end, min(FETCH_RECORDS, batch_records, end - position), FETCH_TIMEOUT_MS
                    )
                except RuntimeError as exc:
                    self._failed(exc, f"replaying {where}")
                if batch is not None:
                    pending.append(batch_frame(batch))
                    pending_rows += len(batch)
                if data_end is not None:
                    position, progressed = max(position, data_end), time.monotonic()
                elif time.monotonic() - progressed > self.stall_s:
                    raise stall_error(where, self.stall_s, position, end)
                if log_end is not None:
                    position = max(position, log_end)
                if pending_rows >= batch_records:
                    frame = pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]
                    whole = frame.height - frame.height % batch_records
                    for i in range(0, whole, batch_records):
                        yield frame.slice(i, batch_records)
                    rest = frame.slice(whole)
                    pending, pending_rows = ([rest], rest.height) if rest.height else ([], 0)
            if pending_rows:
                frame = pl.concat(pending, rechunk=False) if len(pending) > 1 else pending[0]
                for i in range(0, frame.height, batch_records):
                    yield frame.slice(i, batch_records)
        finally:
            self._reader.unassign()

    def first_at(self, partition: int, ts_ms: int) -> int | None:
        """The first offset of ``partition`` whose timestamp is ``>= ts_ms`` (None: no such record)."""
        timeout_ms = int(bootstrap_timeout_s(self.source.settings) * 1000)
        try:
            found: int | None = self._reader.first_at(partition, ts_ms, timeout_ms)
        except RuntimeError as exc:
            self._failed(exc, f"looking up offsets by time in {self.source.topic}[{partition}]")
        return found

    def partitions(self) -> list[int] | None:
        """The topic's partition ids, sorted (None: the broker does not know the topic)."""
        try:
            found: list[int] | None = self._reader.partitions(self._timeout_ms())
        except RuntimeError as exc:
            self._failed(exc, f"reading the metadata of {self.source.topic}")
        return found

    def watermarks(self, partition: int) -> tuple[int, int]:
        """(log start, log end) of ``partition``; the end is the last stable offset for read_committed."""
        try:
            low, high = self._reader.watermarks(partition, self._timeout_ms())
        except RuntimeError as exc:
            self._failed(exc, f"reading offsets of {self.source.topic}[{partition}]")
        return int(low), int(high)

    def offsets_at(self, partitions: list[int], ts_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset whose timestamp is ``>= ts_ms`` (None: no such record), one request."""
        try:
            found = self._reader.offsets_at(partitions, ts_ms, self._timeout_ms())
        except RuntimeError as exc:
            self._failed(exc, f"looking up offsets by time in {self.source.topic}")
        return dict(zip(partitions, found, strict=True))

    def _timeout_ms(self) -> int:
        return int(bootstrap_timeout_s(self.source.settings) * 1000)

    def close(self) -> None:
        self._reader.close()
