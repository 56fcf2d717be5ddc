"""Shared fixtures: one real Kafka broker per test session, unique topics per test, clients that close.

If KAFKA_BOOTSTRAP_SERVERS is set, tests use that cluster and start nothing. Otherwise the session starts
the project's local broker in a temporary directory, tied to this process (it dies with the session even
on SIGKILL), and stops it at the end, also when tests fail.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recovery.config import KafkaSettings
from recovery.kafka.broker import LocalBroker
from recovery.kafka.registry import LocalRegistry
from recovery.kafka.topics import ensure_topic

EXTERNAL = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's broker (None when an external cluster is used)."""
    if EXTERNAL:
        yield None
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    atexit.register(broker.stop)
    bootstrap = broker.start(tie_to_parent=True, timeout_s=90)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap  # notebooks and CLI subprocesses inherit it
    try:
        yield broker
    finally:
        os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """host:port of the session's cluster."""
    if local_broker is None:
        assert EXTERNAL
        return EXTERNAL
    address = local_broker.bootstrap()
    assert address, "the session broker is not running"
    return address


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's Schema Registry (Apicurio, in memory, Confluent-compatible API); started on first use."""
    registry = LocalRegistry(tmp_path_factory.mktemp("registry"))
    atexit.register(registry.stop)
    url = registry.start(tie_to_parent=True)
    try:
        yield url
    finally:
        registry.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Connection settings for the session's cluster."""
    return KafkaSettings.from_env({"bootstrap_servers": kafka_bootstrap})


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of names unique to this test (topics, groups, transactional ids)."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{base}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(kafka_settings: KafkaSettings, unique_name: Callable[[str], str]) -> Callable[..., str]:
    """Factory that creates a topic unique to this test and returns its name."""

    def make(prefix: str = "topic", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        ensure_topic(kafka_settings, name, partitions, config)
        return name

    return make


@pytest.fixture
def tmp_out(tmp_path: Path) -> Path:
    """A fresh output directory for files a test writes."""
    out = tmp_path / "out"
    out.mkdir()
    return out
