"""An Avro pipeline end to end on the real broker and a real Schema Registry: Avro events and Avro outputs
(Confluent wire format) recovered, corrections published in the outputs' Avro layout and applied by an
independent reader (fastavro on the raw bytes, not the toolkit's codec).

Event bytes are built by the spec-level reference writer (tests/unit/records/avro_reference.py); the expected
sums come from a plain loop over the generated orders.
"""

from __future__ import annotations

import io
import random
import struct
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import fastavro
import pytest

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.publish import publish
from recovery.kafka.clients import producer
from recovery.pipeline.recover import recover
from recovery.records.registry import RegistryClient
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import read_all
from tests.unit.records.avro_reference import ORDER_SCHEMA, double, frame, order_payload, string, zigzag_varint

pytestmark = pytest.mark.kafka

MINUTE = 60_000
START = 1_767_603_600_000
STATS_SCHEMA = {
    "type": "record",
    "name": "CustomerStats",
    "namespace": "shop",
    "fields": [
        {"name": "customer", "type": "string"},
        {"name": "window_start", "type": "long"},
        {"name": "revenue", "type": ["null", "double"], "default": None},
        {"name": "orders", "type": ["null", "double"], "default": None},
    ],
}


def _stats_payload(customer: str, start: int, revenue: float | None, orders: float | None) -> bytes:
    def optional(x: float | None) -> bytes:
        return zigzag_varint(0) if x is None else zigzag_varint(1) + double(x)

    return string(customer) + zigzag_varint(start) + optional(revenue) + optional(orders)


@pytest.mark.timeout(240)
def test_an_avro_pipeline_is_recovered_and_corrected_in_its_own_avro_layout(
    schema_registry: str, kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    raw, out = topic_factory("avro-orders", partitions=2), topic_factory("avro-stats", partitions=2)
    registry = RegistryClient(schema_registry)
    order_id = registry.register(f"{raw}-value", ORDER_SCHEMA)
    stats_id = registry.register(f"{out}-value", STATS_SCHEMA)
    spec = PipelineSpec.from_dict(
        {
            "topics": {"raw": raw, "output": out, "corrections": f"{out}.fix", "audit": f"{out}.audit"},
            "events": {
                "format": "avro",
                "schema_registry": schema_registry,
                "key": "customer",
                "time": "ts",
                "id": "order_id",
                "values": {"price": "price"},
            },
            "outputs": {
                "format": "avro",
                "schema_registry": schema_registry,
                "key": "customer",
                "window": "window_start",
                "metrics": {"revenue": "revenue", "orders": "orders"},
                "corrections_schema_id": stats_id,
            },
            "metrics": [
                {"name": "revenue", "aggregation": "sum", "field": "price", "window": "tumbling", "size_ms": MINUTE},
                {"name": "orders", "aggregation": "count", "field": "price", "window": "tumbling", "size_ms": MINUTE},
            ],
        }
    )
    rng = random.Random(3)
    items = [
        {
            "order_id": f"o-{i}",
            "customer": rng.choice(["ann", "bob", "cyd"]),
            "qty": 1,
            "price": round(rng.uniform(1, 100), 2),
            "ts": START + rng.randrange(5 * MINUTE),
            "note": None,
        }
        for i in range(300)
    ]
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for o in items:
        slot = sums[(o["customer"], o["ts"] - o["ts"] % MINUTE)]
        slot[0] += o["price"]
        slot[1] += 1
    windows = sorted(sums)
    dropped, wrong = windows[1], windows[4]
    with producer(kafka_settings, linger_ms=5) as p:
        for o in sorted(items, key=lambda o: o["ts"]):
            value = frame(order_id, order_payload(o))
            p.send(raw, key=o["customer"].encode(), value=value, timestamp_ms=o["ts"])
        p.send(raw, key=b"ann", value=b"\x00\x00\x00\x99\x99garbage", timestamp_ms=START + 1)  # unknown schema id
        for customer, start in windows:
            if (customer, start) == dropped:
                continue
            revenue, count = sums[(customer, start)]
            if (customer, start) == wrong:
                revenue += 5.0
            value = frame(stats_id, _stats_payload(customer, start, revenue, count))
            p.send(out, key=customer.encode(), value=value, timestamp_ms=start + MINUTE)
        p.flush()

    fx = tmp_path / "fx"
    report = recover(spec, START, START + 5 * MINUTE, settings=kafka_settings, out_dir=fx, now=START + 24 * 60 * MINUTE)
    counts = report.summary.counts
    assert (counts["missing"], counts["wrong"], counts["ok"]) == (2, 1, 2 * len(windows) - 3)
    assert report.truth.quarantine.get_column("reason").to_list()[0].startswith("unknown schema id")

    approve(fx, "avro-reviewer", kafka_settings)
    assert publish(fx, kafka_settings).verified
    parsed = fastavro.parse_schema(STATS_SCHEMA)
    held = {w: {"revenue": sums[w][0], "orders": sums[w][1]} for w in windows if w not in (dropped, wrong)}
    held[wrong] = {"revenue": sums[wrong][0] + 5.0, "orders": sums[wrong][1]}
    corrections = read_all(kafka_settings, spec.topics.corrections)
    assert len(corrections) == 3
    for r in corrections:
        assert r.value[0] == 0 and struct.unpack(">I", r.value[1:5])[0] == stats_id
        doc = fastavro.schemaless_reader(io.BytesIO(r.value[5:]), parsed)
        slot = held.setdefault((doc["customer"], doc["window_start"]), {})
        slot.update({m: doc[m] for m in ("revenue", "orders") if doc[m] is not None})
    assert set(held) == set(sums)
    for w, (revenue, count) in sums.items():
        assert held[w]["revenue"] == pytest.approx(revenue, rel=1e-12)
        assert held[w]["orders"] == count
