"""Exploration helpers that talk to the broker: consumer-group lag."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.kafka.clients import consumer, producer
from recovery.notebook import explore


def test_consumer_lag_per_partition(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = topic_factory("lag", partitions=2)
    group = unique_name("group")
    with producer(kafka_settings) as p:
        for i in range(10):
            p.send(topic, partition=0, key=b"k", value=str(i).encode())
        for i in range(3):
            p.send(topic, partition=1, key=b"k", value=str(i).encode())
        p.flush()
    with consumer(kafka_settings, group_id=group) as c:
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "", -1)})
    lag = explore.consumer_lag(kafka_settings, group, topic)
    expected = pl.DataFrame(
        {"topic": [topic, topic], "partition": [0, 1], "committed": [4, None], "end_offset": [10, 3], "lag": [6, 3]},
        schema=explore.LAG,
    )
    assert_frame_equal(lag, expected)
