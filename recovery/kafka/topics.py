"""Topic administration: describe a cluster, snapshot end offsets, create topics with the right config."""

from __future__ import annotations

import time
from dataclasses import dataclass

import kafka.errors as kerr
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.structs import TopicPartition

from recovery.config import KafkaSettings
from recovery.errors import TopicError
from recovery.kafka.clients import admin, consumer, guarded
from recovery.kafka.common import missing_topic


@dataclass(frozen=True)
class TopicInfo:
    """A topic's partitions with their start and end offsets."""

    name: str
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]

    @property
    def partitions(self) -> int:
        return len(self.end_offsets)

    @property
    def messages(self) -> int:
        return sum(self.end_offsets[p] - self.start_offsets.get(p, 0) for p in self.end_offsets)


def list_topics(settings: KafkaSettings, include_internal: bool = False) -> list[str]:
    """Names of the cluster's topics, sorted."""
    with admin(settings) as client:
        names = guarded(settings, "listing topics", client.list_topics)
    return sorted(n for n in names if include_internal or not n.startswith("__"))


def partitions_for(settings: KafkaSettings, topic: str) -> list[int]:
    """Partition ids of ``topic``; :class:`TopicError` if it does not exist."""
    with admin(settings) as client:
        described = guarded(settings, f"describing {topic}", lambda: client.describe_topics([topic]))
    info = described[0] if described else {}
    error = info.get("error_code", 0)
    if error == kerr.UnknownTopicOrPartitionError.errno or not info.get("partitions"):
        raise missing_topic(settings, topic)
    return sorted(p["partition_index"] for p in info["partitions"])


def offsets(settings: KafkaSettings, topic: str) -> TopicInfo:
    """Start and end offsets of every partition of ``topic`` (a snapshot)."""
    parts = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
    with consumer(settings) as c:
        start = guarded(settings, f"reading offsets of {topic}", lambda: c.beginning_offsets(parts))
        end = guarded(settings, f"reading offsets of {topic}", lambda: c.end_offsets(parts))
    return TopicInfo(
        topic,
        {tp.partition: o for tp, o in start.items()},
        {tp.partition: o for tp, o in end.items()},
    )


def topic_config(settings: KafkaSettings, topic: str) -> dict[str, str]:
    """The topic's effective configuration."""
    with admin(settings) as client:
        resp = guarded(
            settings,
            f"reading the config of {topic}",
            lambda: client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]),
        )
    entries = resp.get("topic", {}).get(topic, {}) if isinstance(resp, dict) else {}
    return {name: str(v.get("value") if isinstance(v, dict) else v) for name, v in entries.items()}


def ensure_topic(
    settings: KafkaSettings,
    name: str,
    partitions: int,
    config: dict[str, str] | None = None,
    replication_factor: int = 1,
) -> bool:
    """Create ``name`` if missing; returns True when it was created. An existing topic is left as is."""
    with admin(settings) as client:
        existing = guarded(settings, "listing topics", client.list_topics)
        if name in existing:
            return False
        topic = NewTopic(name, partitions, replication_factor, topic_configs=config or {})
        try:
            guarded(settings, f"creating topic {name}", lambda: client.create_topics([topic]))
        except Exception as exc:
            if isinstance(exc.__cause__, kerr.TopicAlreadyExistsError):
                return False
            raise
    _wait_until_described(settings, name, partitions)
    return True


def _wait_until_described(settings: KafkaSettings, name: str, partitions: int, timeout_s: float = 15.0) -> None:
    """Wait until the broker describes a topic just created with all its partitions (creation is asynchronous:
    a describe right after it may not see the topic yet, on a loaded machine for seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if len(partitions_for(settings, name)) >= partitions:
                return
        except TopicError:
            pass
        if time.monotonic() > deadline:
            raise TopicError(
                f"topic {name!r} was created but is not described after {timeout_s:.0f} s",
                topic=name,
                hint="the broker is slow or unhealthy: check `recovery kafka status` and retry",
            )
        time.sleep(0.1)


def delete_topics(settings: KafkaSettings, names: list[str]) -> None:
    """Delete topics (used by tests and `make clean`-style resets)."""
    with admin(settings) as client:
        guarded(settings, "deleting topics", lambda: client.delete_topics(names))
