"""The choice of a Kafka client by name, and what the two clients share (no broker)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import recovery.kafka.client as client
from recovery.config import KafkaSettings, Secret
from recovery.errors import BrokerError, ConfigError
from recovery.frames import RECORDS
from recovery.kafka.common import (
    FencedError,
    RecordColumns,
    fenced_error,
    read_range,
    records_frame,
    stall_error,
)
from recovery.kafka.confluent import ConfluentReader, ConfluentTx, connection_config, librdkafka_config
from recovery.kafka.kafka_python import KafkaPythonReader, KafkaPythonTx
from recovery.kafka.native import NativeReader
from recovery.replay.readers import FileReader, reader_for
from recovery.source import FileSource, KafkaSource

SETTINGS = KafkaSettings(bootstrap_servers="127.0.0.1:9092")


class Built:
    """Stands in for a client class: records what it was built with."""

    def __init__(self, *args: Any) -> None:
        self.args = args


@pytest.fixture
def fake_clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """Each client's reader and producer replaced by a class of its own (nothing connects)."""
    classes: dict[str, type] = {}
    for name in (client.KAFKA_PYTHON, client.CONFLUENT):
        reader = type(f"Reader-{name}", (Built,), {})
        producer = type(f"Producer-{name}", (Built,), {})
        monkeypatch.setitem(client._READERS, name, reader)
        monkeypatch.setitem(client._PRODUCERS, name, producer)
        classes[f"reader {name}"], classes[f"producer {name}"] = reader, producer
    reader = type(f"Reader-{client.NATIVE}", (Built,), {})
    monkeypatch.setitem(client._READERS, client.NATIVE, reader)
    classes[f"reader {client.NATIVE}"] = reader
    return classes


def test_every_client_has_a_reader_and_a_producer_of_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(client._READERS) == {"kafka-python", "confluent", "native"}
    assert client._READERS["confluent"] is ConfluentReader and client._READERS["native"] is NativeReader
    assert client._PRODUCERS["confluent"] is ConfluentTx and set(client._PRODUCERS) == {"kafka-python", "confluent"}
    # kafka-python's are imported when first used (a command reading through librdkafka never imports kafka-python)
    import recovery.kafka.kafka_python as kafka_python

    monkeypatch.setattr(kafka_python, "KafkaPythonReader", type("R", (Built,), {}))
    monkeypatch.setattr(kafka_python, "KafkaPythonTx", type("T", (Built,), {}))
    source = KafkaSource("events", SETTINGS)
    reader = client._READERS["kafka-python"](source)
    producer = client._PRODUCERS["kafka-python"](SETTINGS, "tid-1")
    assert type(reader).__name__ == "R" and reader.args == (source,)  # type: ignore[attr-defined]
    assert type(producer).__name__ == "T" and producer.args == (SETTINGS, "tid-1")  # type: ignore[attr-defined]
    assert (KafkaPythonReader, KafkaPythonTx) != (type(reader), type(producer))


def test_a_command_reading_through_librdkafka_imports_neither_kafka_python_nor_rich_nor_fastavro() -> None:
    code = (
        "import sys; import recovery.cli.cmd_recompute, recovery.cli.cmd_recover, recovery.replay.plan; "
        "print(sorted(m for m in ('kafka', 'rich', 'fastavro') if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


@pytest.mark.parametrize("name", [client.KAFKA_PYTHON, client.CONFLUENT])
def test_each_name_gives_its_reader_and_producer(name: str, fake_clients: dict[str, type]) -> None:
    source = KafkaSource("events", SETTINGS)
    reader = client.kafka_reader(source, name)
    assert type(reader) is fake_clients[f"reader {name}"]
    assert reader.args == (source,)  # type: ignore[attr-defined]
    producer = client.transactional_producer(SETTINGS, "tid-1", name)
    assert type(producer) is fake_clients[f"producer {name}"]
    assert producer.args == (SETTINGS, "tid-1")  # type: ignore[attr-defined]


def test_the_default_client_reads_natively_and_publishes_with_librdkafka(fake_clients: dict[str, type]) -> None:
    assert type(client.kafka_reader(KafkaSource("events", SETTINGS))) is fake_clients["reader native"]
    assert type(client.transactional_producer(SETTINGS, "tid")) is fake_clients["producer confluent"]


def test_the_native_client_publishes_through_the_confluent_producer(fake_clients: dict[str, type]) -> None:
    assert type(client.kafka_reader(KafkaSource("events", SETTINGS), "native")) is fake_clients["reader native"]
    assert type(client.transactional_producer(SETTINGS, "tid", "native")) is fake_clients["producer confluent"]


def test_without_the_extension_the_default_client_is_librdkafka(
    fake_clients: dict[str, type], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "recovery_native", None)  # import recovery_native now raises ImportError
    assert type(client.kafka_reader(KafkaSource("events", SETTINGS))) is fake_clients["reader confluent"]


@pytest.mark.parametrize("name", ["librdkafka", "", "Confluent"])
def test_an_unknown_client_is_refused_before_anything_is_built(name: str, fake_clients: dict[str, type]) -> None:
    with pytest.raises(ConfigError, match=f"unknown client '{name}'") as raised:
        client.kafka_reader(KafkaSource("events", SETTINGS), name)
    assert raised.value.hint == "use one of auto, kafka-python, confluent, native"
    with pytest.raises(ConfigError, match=f"unknown client '{name}'"):
        client.transactional_producer(SETTINGS, "tid", name)


def test_archive_files_are_read_without_a_client(tmp_path: Any) -> None:
    path = tmp_path / "records.parquet"
    records_frame(0, [5], [1_000], [b"k"], [b"v"]).write_parquet(path)
    reader = reader_for(FileSource((str(path),)), "no-such-client")
    assert isinstance(reader, FileReader)
    assert_frame_equal(pl.concat(reader.read(0, 0, 10, 100)), records_frame(0, [5], [1_000], [b"k"], [b"v"]))


def test_columns_give_frames_of_at_most_the_batch_size_and_start_again_empty() -> None:
    columns = RecordColumns(2)
    columns.offsets.extend([7, 8, 9])
    columns.stamps.extend([70, 80, 90])
    columns.keys.extend([b"a", None, b"c"])
    columns.values.extend([b"x", b"y", None])
    frames = list(columns.frames(2))
    assert [f.height for f in frames] == [2, 1]
    assert_frame_equal(
        pl.concat(frames), records_frame(2, [7, 8, 9], [70, 80, 90], [b"a", None, b"c"], [b"x", b"y", None])
    )
    assert len(columns) == 0 and not columns.stamps and not columns.keys and not columns.values
    assert all(f.schema == RECORDS for f in frames)


def _stepper(columns: RecordColumns, reads: list[list[int]]) -> Any:
    """A step that appends one list of offsets per call (an empty list: nothing arrived)."""
    queue = iter(reads)

    def step(position: int) -> tuple[int, bool]:
        offsets = next(queue)
        columns.offsets.extend(offsets)
        columns.stamps.extend(offsets)
        columns.keys.extend([None] * len(offsets))
        columns.values.extend([b"v"] * len(offsets))
        return (offsets[-1] + 1, True) if offsets else (position, False)

    return step


def _never(position: int) -> NoReturn:
    raise AssertionError(f"stalled at {position}")


def test_the_read_loop_batches_what_each_step_appends() -> None:
    columns = RecordColumns(1)
    step = _stepper(columns, [[0, 1, 2], [], [3, 4, 5, 6], [7]])
    frames: Iterator[pl.DataFrame] = read_range(columns, 0, 8, 3, step=step, stall_s=60, stalled=_never)
    got = list(frames)
    assert [f.get_column("offset").to_list() for f in got] == [[0, 1, 2], [3, 4, 5], [6], [7]]
    assert all(f.get_column("partition").to_list() == [1] * f.height for f in got)


def test_the_read_loop_reads_nothing_for_an_empty_range() -> None:
    columns = RecordColumns(0)
    assert list(read_range(columns, 5, 5, 10, step=_stepper(columns, []), stall_s=60, stalled=_never)) == []


def test_the_read_loop_gives_up_when_nothing_arrives_for_the_stall_time() -> None:
    columns = RecordColumns(4)
    step = _stepper(columns, [[10, 11]] + [[]] * 1_000)

    def stalled(position: int) -> NoReturn:
        raise stall_error("events[4]", 0.05, position, 20)

    started = time.monotonic()
    with pytest.raises(
        BrokerError, match=r"replay of events\[4\] made no progress for 0 s at offset 12 \(end offset 20\)"
    ):
        for _ in read_range(columns, 10, 20, 100, step=_slow(step), stall_s=0.05, stalled=stalled):
            pass
    assert time.monotonic() - started < 5


def _slow(step: Any) -> Any:
    def slow(position: int) -> tuple[int, bool]:
        time.sleep(0.01)
        return step(position)  # type: ignore[no-any-return]

    return slow


def test_the_stall_error_says_where_and_what_to_do() -> None:
    error = stall_error("events[3]", 30.0, 120, 500)
    assert str(error).startswith("replay of events[3] made no progress for 30 s at offset 120 (end offset 500)")
    assert error.hint == "check the broker (`recovery kafka status`) and retry"


def test_the_fenced_error_names_the_transactional_id() -> None:
    error = fenced_error("recovery-publish-abc")
    assert isinstance(error, FencedError)
    assert "another publish with transactional.id recovery-publish-abc took over" in str(error)
    assert error.hint is not None and "rerunning later is safe" in error.hint


def test_producers_and_readers_share_the_connection_settings() -> None:
    settings = KafkaSettings(
        bootstrap_servers="a:9093,b:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password=Secret("s3cret"),
    )
    connection = connection_config(settings)
    assert connection == {
        "bootstrap.servers": "a:9093,b:9093",
        "security.protocol": "SASL_PLAINTEXT",
        "socket.timeout.ms": 15_000,
        "reconnect.backoff.max.ms": 2_000,
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": "s3cret",
    }
    reader = librdkafka_config(settings)
    assert {k: v for k, v in reader.items() if k in connection} == connection
    assert reader["client.id"] == "recovery-replay"


def test_ssl_files_are_passed_only_when_given(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = KafkaSettings(
        bootstrap_servers="a:9093", security_protocol="SSL", ssl_cafile=str(ca), ssl_password=Secret("")
    )
    config = connection_config(settings)
    assert config["ssl.ca.location"] == str(ca)
    assert "ssl.certificate.location" not in config and "ssl.key.location" not in config
    assert config["ssl.key.password"] == ""
