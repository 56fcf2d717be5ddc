"""Benchmark scenarios: raw ticks with realistic faults and the live worker's outputs with injected faults.

A scenario is ``events`` unique ticks of ``symbols`` symbols on ``partitions`` partitions, generated with
polars from hashes of the row number (deterministic, no Python loop). The raw topic gets, on top:
~2 % of events delayed by 1-20 s (out of order, some later than the grace period), ~1 % duplicates
(re-sent up to 30 s later), ~0.05 % events lost upstream (seq gaps) and ~0.1 % malformed records.

The output topic holds what the live worker published. Instead of running the live worker over millions
of events, the outputs are the recompute with the live worker's grace policy (``emulate_grace=True``: what
a fault-free worker publishes) plus injected faults: ~1.5 % results missing plus one lost block (a crash),
~1 % wrong, ~1 % published twice (a fifth of them with conflicting copies), ~0.2 % extra results.

Loading is not what the benchmark measures: records go in with the fastest producer available
(confluent-kafka / librdkafka when installed, kafka-python otherwise), with explicit partitions and the
Kafka timestamps a live pipeline would give them (arrival time for raw events, ``time_ms`` for outputs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from recovery.config import KafkaSettings
from recovery.frames import EVENTS
from recovery.kafka.topics import ensure_topic
from recovery.spec import PipelineSpec

START_MS = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)
SIZES = {"200k": 200_000, "1m": 1_000_000, "10m": 10_000_000}

# share of raw events / outputs affected by each fault
DELAYED, DUPLICATED, LOST, MALFORMED = 0.02, 0.01, 0.0005, 0.001
OUT_MISSING, OUT_WRONG, OUT_DUPLICATE, OUT_EXTRA, OUT_CRASH_SPAN = 0.015, 0.01, 0.01, 0.002, 0.01


@dataclass(frozen=True)
class Scenario:
    """One benchmark incident: ``events`` unique ticks from ``START_MS``, one every ``step_ms`` on average."""

    name: str
    events: int
    symbols: int = 50
    partitions: int = 6
    step_ms: int = 2
    seed: int = 20261102

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``1m``, ``10m``, ``200k`` or a number of events."""
        name = text.strip().lower()
        if name in SIZES:
            return cls(name, SIZES[name])
        digits = name.replace("_", "")
        if not digits.isdigit() or int(digits) < 1000:
            raise ValueError(f"unknown scenario {text!r}: use {', '.join(SIZES)} or a number of events >= 1000")
        return cls(f"{int(digits)}", int(digits))

    @property
    def raw_topic(self) -> str:
        return f"bench.{self.name}.ticks"

    @property
    def output_topic(self) -> str:
        return f"bench.{self.name}.ticks.sma"

    @property
    def from_ms(self) -> int:
        return START_MS

    @property
    def to_ms(self) -> int:
        """End of the incident range: the last event time rounded up to five minutes."""
        last = START_MS + self.events * self.step_ms
        return -(-last // 300_000) * 300_000

    def spec(self, base: PipelineSpec, run: str = "") -> PipelineSpec:
        """``base`` with this scenario's topics (corrections and audit topics per ``run``)."""
        suffix = f".{run}" if run else ""
        topics = replace(
            base.topics,
            raw=self.raw_topic,
            output=self.output_topic,
            corrections=f"bench.{self.name}.corrections{suffix}",
            audit=f"bench.{self.name}.audit{suffix}",
            partitions=self.partitions,
        )
        return replace(base, topics=topics)


def _uniform(seed: int) -> pl.Expr:
    """A deterministic uniform number in [0, 1) per row, from the hash of column ``i``."""
    return (pl.col("i").hash(seed) // 2048).cast(pl.Float64) * (1.0 / 2**53)


def partition_of(keys: list[str], partitions: int) -> dict[str, int]:
    """Kafka's default partitioner (murmur2 of the key), as the live pipeline's producer would choose."""
    from kafka.partitioner.default import murmur2

    return {k: (murmur2(k.encode()) & 0x7FFFFFFF) % partitions for k in keys}


def symbols(scenario: Scenario) -> list[str]:
    return [f"SYM{i:02d}" for i in range(scenario.symbols)]


def unique_events(scenario: Scenario) -> pl.DataFrame:
    """The ticks that happened (before loss, duplication and malformed records), with their arrival time."""
    s = scenario.seed
    keys = symbols(scenario)
    home = partition_of(keys, scenario.partitions)
    frame = pl.DataFrame({"i": pl.int_range(scenario.events, dtype=pl.Int64, eager=True)})
    frame = frame.with_columns(
        (_uniform(s + 1) * scenario.symbols).floor().cast(pl.Int64).alias("k"),
        (START_MS + pl.col("i") * scenario.step_ms + (_uniform(s + 2) * scenario.step_ms).floor().cast(pl.Int64)).alias(
            "ts"
        ),
        (_uniform(s + 3) - 0.5).alias("_step"),
        (1 + (_uniform(s + 4) * 100).floor()).alias("volume"),
        pl.when(_uniform(s + 5) < DELAYED)
        .then(1_000 + (_uniform(s + 6) * 19_000).floor())
        .otherwise((_uniform(s + 6) * 20).floor())
        .cast(pl.Int64)
        .alias("_delay"),
        (_uniform(s + 7) < LOST).alias("_lost"),
    )
    key = pl.format("SYM{}", pl.col("k").cast(pl.String).str.zfill(2))
    frame = frame.with_columns(
        key.alias("key"),
        (pl.int_range(pl.len(), dtype=pl.Int64).over("k") + 1).alias("seq"),
        (50 + pl.col("k") * 2 + pl.col("_step").cum_sum().over("k") * 0.05).clip(1.0).round(4).alias("price"),
        (pl.col("ts") + pl.col("_delay")).alias("arrival"),
    )
    frame = frame.with_columns(pl.col("key").replace_strict(home, return_dtype=pl.Int32).alias("partition"))
    return frame.filter(~pl.col("_lost")).select("i", "partition", "key", "seq", "ts", "price", "volume", "arrival")


def _value(event_id: pl.Expr) -> pl.Expr:
    return pl.format(
        '{{"event_id":"{}","symbol":"{}","seq":{},"ts":{},"price":{},"volume":{}}}',
        event_id,
        pl.col("key"),
        pl.col("seq"),
        pl.col("ts"),
        pl.col("price"),
        pl.col("volume"),
    )


def raw_records(scenario: Scenario, events: pl.DataFrame) -> pl.DataFrame:
    """Raw topic records in arrival order per partition: (partition, offset, timestamp_ms, key, value)."""
    s = scenario.seed
    event_id = pl.format("{}-{}", pl.col("key"), pl.col("seq"))
    base = events.select("i", "partition", "key", _value(event_id).alias("value"), pl.col("arrival"))
    dups = (
        events.filter(_uniform(s + 8) < DUPLICATED)
        .select(
            "i",
            "partition",
            "key",
            _value(event_id).alias("value"),
            (pl.col("arrival") + 100 + (_uniform(s + 9) * 30_000).floor().cast(pl.Int64)).alias("arrival"),
        )
        .with_columns(pl.col("i") + scenario.events)
    )
    bad = events.filter(_uniform(s + 10) < MALFORMED).with_columns((_uniform(s + 11) * 3).floor().alias("_kind"))
    broken = bad.select(
        (pl.col("i") + 2 * scenario.events).alias("i"),
        "partition",
        "key",
        pl.when(pl.col("_kind") == 0)
        .then(pl.format('{{"event_id":"bad-{}","symbol":"{}","seq":', pl.col("i"), pl.col("key")))
        .when(pl.col("_kind") == 1)
        .then(pl.format('{{"event_id":"bad-{}","symbol":"{}","seq":1,"ts":{}}}', pl.col("i"), pl.col("key"), "ts"))
        .otherwise(
            pl.format(
                '{{"event_id":"bad-{}","symbol":"{}","seq":1,"ts":{},"price":"n/a","volume":1}}',
                pl.col("i"),
                pl.col("key"),
                "ts",
            )
        )
        .alias("value"),
        (pl.col("arrival") + 7).alias("arrival"),
    )
    records = pl.concat([base, dups, broken]).sort("partition", "arrival", "i")
    return records.select(
        "partition",
        pl.int_range(pl.len(), dtype=pl.Int64).over("partition").alias("offset"),
        pl.col("arrival").alias("timestamp_ms"),
        pl.col("key").cast(pl.Binary),
        pl.col("value").cast(pl.Binary),
    )


def output_rows(scenario: Scenario, events: pl.DataFrame, spec: PipelineSpec) -> pl.DataFrame:
    """What the live worker published (LIVE_RESULTS, publish order per partition): truth under its grace
    policy, with injected faults. :func:`encode_outputs` turns rows into output topic records.
    """
    from recovery.metrics.recompute import recompute
    from recovery.metrics.windows import LIVE_RESULTS

    s = scenario.seed
    offsets_ = pl.int_range(pl.len(), dtype=pl.Int64).over("partition")
    valid = events.sort("partition", "arrival", "i").with_columns(offsets_.alias("offset"))
    frame = valid.select(
        "partition",
        "offset",
        pl.col("arrival").alias("timestamp_ms"),
        pl.format("{}-{}", pl.col("key"), pl.col("seq")).alias("event_id"),
        "key",
        "seq",
        "ts",
        "price",
        "volume",
    ).cast(dict(EVENTS))
    results = recompute(frame, spec, emulate_grace=True)
    home = partition_of(symbols(scenario), scenario.partitions)
    windows = {m.name: (m.window_ms or 0) + m.grace_ms for m in spec.metrics if m.is_windowed}
    sma_offsets = frame.select("key", pl.col("seq").alias("window"), pl.col("offset").alias("_offset"))
    published = (
        results.join(sma_offsets, on=["key", "window"], how="left")
        .with_row_index("i")
        .with_columns(
            pl.col("key").replace_strict(home, return_dtype=pl.Int32).alias("partition"),
            (pl.col("time_ms") + pl.col("metric").replace_strict(windows, default=0, return_dtype=pl.Int64)).alias(
                "_publish_ms"
            ),
            pl.when(pl.col("_offset").is_null()).then(0).otherwise(5).cast(pl.Int64).alias("count"),
            pl.col("_offset").fill_null(0).alias("first_offset"),
            pl.col("_offset").fill_null(0).alias("last_offset"),
            pl.col("i").cast(pl.Int64),
        )
    )
    u = _uniform(s + 20)
    span = scenario.to_ms - scenario.from_ms
    crash_from = scenario.from_ms + span // 3
    crashed = (pl.col("partition") == 1) & pl.col("time_ms").is_between(
        crash_from, crash_from + int(span * OUT_CRASH_SPAN * scenario.partitions), closed="left"
    )
    missing = (u < OUT_MISSING) | crashed
    wrong = (u >= OUT_MISSING) & (u < OUT_MISSING + OUT_WRONG)
    dup = (u >= OUT_MISSING + OUT_WRONG) & (u < OUT_MISSING + OUT_WRONG + OUT_DUPLICATE)
    kept = published.filter(~missing).with_columns(
        pl.when(wrong).then(pl.col("value") * 1.001).otherwise(pl.col("value")).alias("value")
    )
    copies = kept.filter(dup).with_columns(pl.col("_publish_ms") + 1_000)
    conflicting = (_uniform(s + 21) < 0.2) & dup
    kept = kept.with_columns(pl.when(conflicting).then(pl.col("value") * 1.01).otherwise(pl.col("value")))
    extras = kept.filter((_uniform(s + 22) < OUT_EXTRA) & pl.col("metric").str.starts_with("sma")).with_columns(
        pl.col("window") + 100_000_000
    )
    return pl.concat([kept, copies, extras]).sort("partition", "_publish_ms", "i").select(*LIVE_RESULTS)


def encode_outputs(rows: pl.DataFrame) -> pl.DataFrame:
    """RECORDS of output rows (LIVE_RESULTS in publish order): the live worker's JSON, timestamp = time_ms."""
    from recovery.records.outputs import encode_results

    values = encode_results(rows, "bench-live-1")
    return pl.DataFrame(
        {
            "partition": rows.get_column("partition"),
            "offset": rows.select(pl.int_range(pl.len(), dtype=pl.Int64).over("partition")).to_series(),
            "timestamp_ms": rows.get_column("time_ms"),
            "key": rows.get_column("key").cast(pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        }
    )


# ---------------------------------------------------------------------------------------------- loading


def _produce_confluent(settings: KafkaSettings, topic: str, parts: Iterable[pl.DataFrame]) -> None:
    import confluent_kafka as ck

    producer = ck.Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,  # keeps the order per partition
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "none",
        }
    )
    produce, poll = producer.produce, producer.poll
    for part in parts:
        if part.height == 0:
            continue
        partition = part.item(0, "partition")
        keys, values = part.get_column("key").to_list(), part.get_column("value").to_list()
        stamps = part.get_column("timestamp_ms").to_list()
        for k, v, t in zip(keys, values, stamps, strict=True):
            while True:
                try:
                    produce(topic, v, k, partition=partition, timestamp=t)
                    break
                except BufferError:
                    poll(0.05)
        poll(0)
    remaining = producer.flush(300)
    if remaining:
        raise RuntimeError(f"{remaining} records of {topic} were not delivered")


def _produce_kafka_python(settings: KafkaSettings, topic: str, parts: Iterable[pl.DataFrame]) -> None:
    from recovery.kafka.clients import producer

    with producer(settings, linger_ms=50, batch_size=1_000_000, max_in_flight_requests_per_connection=1) as p:
        for part in parts:
            for partition, _offset, ts, k, v in part.iter_rows():
                p.send(topic, key=k, value=v, partition=partition, timestamp_ms=ts)
        p.flush()


def produce_records(settings: KafkaSettings, topic: str, parts: Iterable[pl.DataFrame]) -> str:
    """Write ``parts`` (RECORDS frames, one partition each, offsets ignored) to ``topic``; returns the producer."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        _produce_kafka_python(settings, topic, parts)
        return "kafka-python"
    _produce_confluent(settings, topic, parts)
    return "confluent-kafka"


def end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """Log end offset per partition of ``topic``."""
    from kafka import TopicPartition

    from recovery.kafka.clients import consumer
    from recovery.kafka.topics import partitions_for

    tps = [TopicPartition(topic, p) for p in partitions_for(settings, topic)]
    with consumer(settings) as c:
        return {tp.partition: int(o) for tp, o in c.end_offsets(tps).items()}


def load(
    scenario: Scenario, settings: KafkaSettings, spec: PipelineSpec, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Create and fill the scenario's raw and output topics (skipped when they already hold it)."""
    from recovery.kafka.topics import list_topics

    started = time.monotonic()
    events = unique_events(scenario)
    raw = raw_records(scenario, events)
    expected_raw = dict(raw.group_by("partition").len().iter_rows())
    existing = set(list_topics(settings))
    info: dict[str, Any] = {"raw_records": raw.height, "raw_topic": scenario.raw_topic}
    if scenario.raw_topic in existing and end_offsets(settings, scenario.raw_topic) == expected_raw:
        log(f"  {scenario.raw_topic}: already loaded ({raw.height:,} records)")
        info["raw_producer"] = "(reused)"
    else:
        if scenario.raw_topic in existing:
            raise RuntimeError(f"topic {scenario.raw_topic} exists with other contents: delete it or use a new broker")
        ensure_topic(settings, scenario.raw_topic, scenario.partitions)
        mark = time.monotonic()
        parts = (raw.filter(pl.col("partition") == p) for p in sorted(expected_raw))
        info["raw_producer"] = produce_records(settings, scenario.raw_topic, parts)
        took_s = time.monotonic() - mark
        log(f"  {scenario.raw_topic}: {raw.height:,} records in {took_s:.1f} s ({info['raw_producer']})")
    del raw
    rows = output_rows(scenario, events, spec)
    del events
    expected_out = dict(rows.group_by("partition").len().iter_rows())
    info.update({"output_records": rows.height, "output_topic": scenario.output_topic})
    if scenario.output_topic in existing and end_offsets(settings, scenario.output_topic) == expected_out:
        log(f"  {scenario.output_topic}: already loaded ({rows.height:,} records)")
        info["output_producer"] = "(reused)"
    else:
        if scenario.output_topic in existing:
            raise RuntimeError(f"topic {scenario.output_topic} exists with other contents")
        ensure_topic(settings, scenario.output_topic, scenario.partitions)
        mark = time.monotonic()
        parts = (encode_outputs(rows.filter(pl.col("partition") == p)) for p in sorted(expected_out))
        info["output_producer"] = produce_records(settings, scenario.output_topic, parts)
        log(
            f"  {scenario.output_topic}: {rows.height:,} records in {time.monotonic() - mark:.1f} s "
            f"({info['output_producer']})"
        )
    info["load_s"] = round(time.monotonic() - started, 1)
    return info


def write_spec(scenario: Scenario, path: Path) -> Path:
    """The project's pipeline.toml with this scenario's topics, for the CLI (which reads a spec file)."""
    text = (Path(__file__).resolve().parents[1] / "pipeline.toml").read_text()
    topics = {
        "raw": scenario.raw_topic,
        "output": scenario.output_topic,
        "corrections": f"bench.{scenario.name}.corrections.plain",
        "audit": f"bench.{scenario.name}.audit.plain",
    }
    lines = []
    for line in text.splitlines():
        name = line.split("=", 1)[0].strip()
        lines.append(f'{name} = "{topics[name]}"' if name in topics and "=" in line else line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
