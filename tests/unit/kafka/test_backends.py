"""The replay backends' configuration and frame building (no broker)."""

from __future__ import annotations

import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings, Secret
from recovery.errors import ConfigError
from recovery.frames import RECORDS
from recovery.kafka.client import CLIENTS, DEFAULT_CLIENT, check_client
from recovery.kafka.common import records_frame
from recovery.kafka.confluent import librdkafka_config
from recovery.source import KafkaSource

PLAINTEXT = KafkaSource("events", KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
SASL = KafkaSource(
    "events",
    KafkaSettings(
        bootstrap_servers="127.0.0.1:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=Secret("s3cret"),
    ),
)


def test_auto_is_the_default_client_and_takes_the_native_reader_when_it_is_built() -> None:
    assert DEFAULT_CLIENT == "auto"
    assert CLIENTS == ("auto", "kafka-python", "confluent", "native")
    assert check_client("kafka-python") == "kafka-python"
    assert check_client("confluent") == "confluent"
    assert check_client("native") == "native"  # make setup builds the extension
    assert check_client("auto", PLAINTEXT) == "native"
    assert check_client("auto") == "confluent"  # no source: a producer, which the native client has not


def test_auto_reads_sasl_and_tls_sources_with_librdkafka_through_confluent() -> None:
    assert check_client("auto", SASL) == "confluent"


def test_without_the_extension_auto_falls_back_and_native_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "recovery_native", None)  # import recovery_native now raises ImportError
    assert check_client("auto", PLAINTEXT) == "confluent"
    with pytest.raises(ConfigError, match="the native client needs the compiled extension recovery_native"):
        check_client("native")


def test_auto_falls_back_to_kafka_python_without_confluent_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import confluent_kafka now raises ImportError
    monkeypatch.setitem(sys.modules, "recovery_native", None)
    assert check_client("auto", PLAINTEXT) == "kafka-python"
    with pytest.raises(ConfigError, match="the confluent client needs the confluent-kafka package"):
        check_client("confluent")


def test_unknown_client_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown client 'librdkafka'.*auto, kafka-python, confluent, native"):
        check_client("librdkafka")


def test_librdkafka_config_maps_sasl_and_ssl_settings() -> None:
    settings = KafkaSettings(
        bootstrap_servers="a:9093,b:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=Secret("s3cret"),
        request_timeout_ms=7_000,
    )
    config = librdkafka_config(settings, "read_uncommitted")
    assert config["bootstrap.servers"] == "a:9093,b:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.mechanisms"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512",
        "alice",
        "s3cret",
    )
    assert config["isolation.level"] == "read_uncommitted"
    assert config["socket.timeout.ms"] == 7_000
    assert config["enable.auto.commit"] is False
    assert "ssl.ca.location" not in config  # no CA file given: librdkafka uses the system store


def test_plaintext_config_carries_no_credentials() -> None:
    config = librdkafka_config(KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
    assert config["isolation.level"] == "read_committed"
    assert not any(key.startswith(("sasl.", "ssl.")) for key in config)


def test_records_frame_has_the_records_schema() -> None:
    frame = records_frame(3, [10, 11], [1_000, 1_001], [b"k", None], [b"v", b"\xff"])
    expected = pl.DataFrame(
        {
            "partition": [3, 3],
            "offset": [10, 11],
            "timestamp_ms": [1_000, 1_001],
            "key": [b"k", None],
            "value": [b"v", b"\xff"],
        },
        schema=RECORDS,
    )
    assert_frame_equal(frame, expected)


def test_records_frame_of_nothing_is_empty_with_the_schema() -> None:
    assert_frame_equal(records_frame(0, [], [], [], []), pl.DataFrame(schema=RECORDS))
