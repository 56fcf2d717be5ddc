from __future__ import annotations

import os
from pathlib import Path

import pytest

from recovery.config import KafkaSettings, Secret, usable_cores
from recovery.errors import ConfigError


def test_env_variables_build_settings() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9093",
        "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "KAFKA_SASL_MECHANISM": "scram-sha-512",
        "KAFKA_SASL_USERNAME": "alice",
        "KAFKA_SASL_PASSWORD": "s3cr3t-pw",
    }
    settings = KafkaSettings.from_env(env=env)
    assert settings.security_protocol == "SASL_PLAINTEXT"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    kwargs = settings.client_kwargs()
    assert kwargs["bootstrap_servers"] == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert kwargs["sasl_plain_password"] == "s3cr3t-pw"


def test_secrets_never_printed() -> None:
    settings = KafkaSettings.from_env(
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
        env={"KAFKA_BOOTSTRAP_SERVERS": "h:1", "KAFKA_SASL_PASSWORD": "hunter2-secret"},
    )
    for text in (repr(settings), str(settings), settings.describe(), repr(settings.sasl_password)):
        assert "hunter2-secret" not in text
    assert isinstance(settings.sasl_password, Secret)


def test_overrides_win_over_environment() -> None:
    settings = KafkaSettings.from_env({"bootstrap_servers": "a:1"}, env={"KAFKA_BOOTSTRAP_SERVERS": "b:2"})
    assert settings.bootstrap_servers == "a:1"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"bootstrap_servers": "nohost"}, "not host:port"),
        ({"bootstrap_servers": "h:99999"}, "not host:port"),
        ({"bootstrap_servers": "h:1", "security_protocol": "TLS"}, "unknown security protocol"),
        ({"bootstrap_servers": "h:1", "security_protocol": "SASL_SSL"}, "needs a SASL mechanism"),
        (
            {"bootstrap_servers": "h:1", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "user name and a password",
        ),
        ({"bootstrap_servers": "h:1", "ssl_cafile": "/nonexistent/ca.pem"}, "does not exist"),
        ({"bootstrap_servers": "h:1", "bootstrap": "typo"}, "unknown connection setting 'bootstrap'"),
    ],
)
def test_bad_settings_are_clear_errors(overrides: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        KafkaSettings.from_env(overrides, env={})


def test_no_cluster_configured_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERY_KAFKA_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="make kafka-up"):
        KafkaSettings.from_env(env={})


def test_local_broker_address_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERY_KAFKA_HOME", str(tmp_path))
    (tmp_path / "bootstrap").write_text("127.0.0.1:4242\n")
    assert KafkaSettings.from_env(env={}).bootstrap_servers == "127.0.0.1:4242"


def test_ssl_files_are_passed_to_the_client(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    settings = KafkaSettings.from_env(
        {
            "bootstrap_servers": "h:1",
            "security_protocol": "SSL",
            "ssl_cafile": str(tmp_path / "ca.pem"),
            "ssl_certfile": str(tmp_path / "cert.pem"),
            "ssl_keyfile": str(tmp_path / "key.pem"),
        },
        env={},
    )
    kwargs = settings.client_kwargs()
    assert kwargs["ssl_cafile"].endswith("ca.pem")
    assert kwargs["ssl_certfile"].endswith("cert.pem")
    assert kwargs["ssl_keyfile"].endswith("key.pem")


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd", "ZSTD", " lz4 "])
def test_compression_is_one_of_the_codecs_both_clients_write(codec: str) -> None:
    settings = KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": "h:1", "KAFKA_COMPRESSION": codec})
    assert settings.compression == codec.strip().lower()
    assert settings.compression in settings.describe()


def test_compression_is_unset_by_default_and_unknown_codecs_are_refused_with_the_allowed_ones() -> None:
    assert KafkaSettings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"}).compression is None
    with pytest.raises(ConfigError, match="unknown compression 'brotli'") as caught:
        KafkaSettings.from_env({"compression": "brotli"}, env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    assert caught.value.hint is not None
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert codec in caught.value.hint


def test_usable_cores_are_the_affinity_mask_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1, 2}, raising=False)
    assert usable_cores() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert usable_cores() == 1  # never fewer than one worker
