"""Avro records through the real broker and a real Schema Registry (Apicurio, Confluent-compatible API)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from recovery.config import KafkaSettings
from recovery.errors import RegistryError
from recovery.kafka.clients import producer
from recovery.kafka.storage import free_port
from recovery.records.avro import BAD_AVRO, EMPTY, UNKNOWN_SCHEMA, WRONG_MAGIC, AvroCodec
from recovery.records.reasons import reason_category
from recovery.records.registry import RegistryClient
from recovery.replay.bounded import replay
from recovery.source import KafkaSource
from tests.unit.records.avro_reference import ORDER_SCHEMA, frame, order_payload, string, zigzag_varint

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "qty", "type": "long"},
    ],
}


def orders(n: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"o-{i}",
            "customer": f"c{i % 3}",
            "qty": i,
            "price": i / 4,
            "ts": 1_767_603_600_000 + i,
            "note": None if i % 2 else "n",
        }
        for i in range(n)
    ]


def test_avro_records_written_to_kafka_read_back_and_decoded_with_the_registry(
    schema_registry: str, kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("avro-orders")
    client = RegistryClient(schema_registry)
    v1_id = client.register(f"{topic}-value", V1)
    order_id = client.register(f"{topic}-value", ORDER_SCHEMA)
    assert v1_id != order_id
    assert client.register(f"{topic}-value", ORDER_SCHEMA) == order_id  # the same schema keeps its id
    unknown_id = max(v1_id, order_id) + 1000

    items = orders(40)
    # bytes built by the spec-level reference writer, not by the codec under test
    values: list[bytes | None] = [frame(order_id, order_payload(r)) for r in items]
    values += [
        frame(v1_id, string("old-1") + zigzag_varint(7)),
        frame(unknown_id, order_payload(items[0])),
        b'{"order_id": "json"}',
        None,
        frame(order_id, order_payload(items[1])[:-2]),
    ]
    with producer(kafka_settings) as p:
        for i, value in enumerate(values):
            p.send(topic, key=f"k{i}".encode(), value=value, partition=0)
        p.flush()

    result = replay(KafkaSource(topic, kafka_settings), offsets={0: (None, None)}, quiet=True)
    frame_ = result.frame()
    assert frame_.height == len(values)
    read_back = frame_.sort("offset").get_column("value").to_list()
    assert read_back == values

    codec = AvroCodec.from_registry(schema_registry)
    codec.check()
    decoded = codec.decode_many(read_back)
    assert decoded[: len(items)] == items
    assert decoded[len(items)] == {"order_id": "old-1", "qty": 7}
    reasons = decoded[len(items) + 1 :]
    assert all(isinstance(r, str) for r in reasons)
    assert [reason_category(str(r)) for r in reasons] == [UNKNOWN_SCHEMA, WRONG_MAGIC, EMPTY, BAD_AVRO]
    assert f"{unknown_id} is not in Schema Registry {schema_registry}" in str(reasons[0])

    # a reader schema resolves every writer version into one shape (v1 gets the defaults it lacks)
    reader = dict(ORDER_SCHEMA)
    reader["fields"] = [
        {"name": "order_id", "type": "string"},
        {"name": "qty", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ]
    resolving = AvroCodec(codec.source, reader_schema=reader)
    both = resolving.decode_many([read_back[0], read_back[len(items)]])
    assert both == [
        {"order_id": "o-0", "qty": 0, "note": "n"},
        {"order_id": "old-1", "qty": 7, "note": None},
    ]

    # encode with the registered id and decode again: the codec's bytes equal the reference writer's
    assert codec.encode(items[3], order_id) == values[3]


def test_a_registry_that_is_down_is_one_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    codec = AvroCodec.from_registry(url, timeout_s=2)
    with pytest.raises(RegistryError, match=f"Schema Registry {url} is unreachable") as info:
        codec.check()
    assert info.value.url == url and info.value.retriable and info.value.hint
    with pytest.raises(RegistryError, match="unreachable"):
        codec.decode_many([frame(1, b"\x00")])


def test_a_url_that_is_not_the_registry_api_is_refused(schema_registry: str) -> None:
    parts = urllib.parse.urlsplit(schema_registry)
    wrong = f"{parts.scheme}://{parts.netloc}/apis/nothing-here"
    with pytest.raises(RegistryError, match="does not answer like a Schema Registry") as info:
        RegistryClient(wrong).check()
    assert "ccompat" in str(info.value)


def test_registering_a_schema_that_does_not_parse_is_refused(
    schema_registry: str, unique_name: Callable[[str], str]
) -> None:
    client = RegistryClient(schema_registry)
    with pytest.raises(RegistryError, match="refused to register subject"):
        client.register(unique_name("subject"), '{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
