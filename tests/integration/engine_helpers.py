"""Small, fast building blocks for the recovery engine's integration tests: ticks, specs, outputs."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.kafka.clients import consumer, producer
from recovery.records.outputs import encode_result
from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00Z


@dataclass(frozen=True)
class Tick:
    event_id: str
    symbol: str
    seq: int
    ts: int
    price: float
    volume: float
    kafka_ts: int

    def value(self) -> bytes:
        return json.dumps(
            {
                "event_id": self.event_id,
                "symbol": self.symbol,
                "seq": self.seq,
                "ts": self.ts,
                "price": self.price,
                "volume": self.volume,
            }
        ).encode()


def ticks(n: int, symbols: Sequence[str], *, start_ms: int = BASE_MS, step_ms: int = 100, seed: int = 1) -> list[Tick]:
    """``n`` ticks round-robin over ``symbols``, one every ``step_ms``, arriving 0-50 ms after event time."""
    rnd = random.Random(seed)
    seqs = dict.fromkeys(symbols, 0)
    out = []
    for i in range(n):
        sym = symbols[i % len(symbols)]
        seqs[sym] += 1
        ts = start_ms + i * step_ms
        price = round(100 + 10 * rnd.random(), 4)
        out.append(
            Tick(f"{sym}-{seqs[sym]}", sym, seqs[sym], ts, price, float(rnd.randint(1, 9)), ts + rnd.randint(0, 50))
        )
    return out


def produce(
    settings: KafkaSettings, topic: str, items: Sequence[Tick], raw: Sequence[tuple[bytes, bytes, int]] = ()
) -> None:
    """Produce ticks keyed by symbol with their Kafka timestamps (and ``raw`` (key, value, ts) records)."""
    with producer(settings, linger_ms=10, batch_size=256 * 1024) as p:
        for t in items:
            p.send(topic, key=t.symbol.encode(), value=t.value(), timestamp_ms=t.kafka_ts)
        for key, value, ts in raw:
            p.send(topic, key=key, value=value, timestamp_ms=ts)
        p.flush()


def make_spec(
    topic_factory: Callable[..., str], *, partitions: int = 3, metrics: Sequence[MetricSpec] = ()
) -> PipelineSpec:
    """A spec whose four topics are unique to the test (raw and output created, the others not)."""
    raw = topic_factory("raw", partitions=partitions)
    output = topic_factory("out", partitions=partitions)
    topics = TopicsSpec(
        raw=raw, output=output, corrections=f"{output}.corrections", audit=f"{output}.audit", partitions=partitions
    )
    default = (
        MetricSpec("sma_5", "sma", n=5),
        MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=5_000),
        MetricSpec("vwap_2m", "vwap", field="price", window_ms=120_000, hop_ms=60_000, grace_ms=5_000),
    )
    return PipelineSpec(topics, FieldsSpec(), tuple(metrics) or default)


def publish_results(settings: KafkaSettings, topic: str, results: pl.DataFrame) -> None:
    """Publish RESULTS rows as the live worker would (key = result key, timestamp = time_ms), in row order."""
    with producer(settings, linger_ms=10, batch_size=256 * 1024) as p:
        for key, metric, window, time_ms, value in results.select(
            "key", "metric", "window", "time_ms", "value"
        ).iter_rows():
            payload = encode_result(
                metric=metric,
                key=key,
                window=window,
                time_ms=time_ms,
                value=value,
                count=1,
                partition=0,
                first_offset=0,
                last_offset=0,
                worker="test",
            )
            p.send(topic, key=key.encode(), value=payload, timestamp_ms=time_ms)
        p.flush()


def read_all(settings: KafkaSettings, topic: str, isolation_level: str = "read_committed") -> list:
    """Every record of ``topic`` below the end offsets taken first (an independent consumer)."""
    with consumer(settings, isolation_level=isolation_level) as c:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        records = []
        remaining = {tp for tp in parts if c.position(tp) < end[tp]}
        polls = 0
        while remaining:
            polls += 1
            assert polls < 400, f"did not reach the end offsets of {remaining}"
            for tp, batch in c.poll(timeout_ms=250).items():
                records.extend(r for r in batch if r.offset < end[tp])
            remaining = {tp for tp in remaining if c.position(tp) < end[tp]}
        return records
