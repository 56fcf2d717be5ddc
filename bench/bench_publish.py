"""Benchmark of publishing a large fix set exactly once; prints one table.

    .venv/bin/python -m bench.bench_publish [--corrections 10000000] [--chunk-size 50000]

Needs a broker (`make kafka-up`, or KAFKA_BOOTSTRAP_SERVERS). Builds a synthetic fix set of N upserts (1,000
keys, one metric, consecutive windows), approves it and publishes it with the plain `publish()` (chunked
transactions, read_committed verification, audit records), then counts the committed copies per record key
with an independent kafka-python consumer: every correction must be there exactly once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import polars as pl
from kafka import KafkaConsumer, TopicPartition

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.fixset import fixset_from, write_fixset
from recovery.fixes.publish import publish
from recovery.frames import CORRECTIONS
from recovery.spec import MetricSpec, PipelineSpec, TopicsSpec

START = 1_767_603_600_000


def corrections(n: int, keys: int = 1000) -> pl.DataFrame:
    """N upserts: ``keys`` keys, windows one minute apart."""
    i = pl.int_range(n, eager=True)
    return pl.DataFrame(
        {
            "key": (i % keys).cast(pl.String).str.zfill(4).map_elements(lambda k: f"K{k}", return_dtype=pl.String),
            "metric": pl.repeat("mean_1m", n, eager=True),
            "window": START + (i // keys) * 60_000,
            "time_ms": START + (i // keys) * 60_000,
            "action": pl.repeat("upsert", n, eager=True),
            "value": (i % 997).cast(pl.Float64) / 7,
            "reason": pl.repeat("wrong", n, eager=True),
        },
        schema=CORRECTIONS,
    )


def count_copies(settings: KafkaSettings, topic: str) -> Counter[bytes]:
    """Copies per record key of the committed records of ``topic`` (read_committed, to the end offsets)."""
    c = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed")
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    end = c.end_offsets(parts)
    copies: Counter[bytes] = Counter()
    while any(c.position(tp) < end[tp] for tp in parts):
        for batch in c.poll(timeout_ms=500, max_records=50_000).values():
            copies.update(r.key for r in batch)
    c.close()
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corrections", type=int, default=10_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    args = parser.parse_args()
    settings = KafkaSettings.from_env()
    name = f"bench-publish-{uuid.uuid4().hex[:6]}"
    topics = TopicsSpec(raw=f"{name}.raw", output=f"{name}.out", corrections=f"{name}.fix", audit=f"{name}.audit")
    spec = PipelineSpec(topics, metrics=(MetricSpec("mean_1m", "mean", window_ms=60_000),))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "fx"
        built = time.perf_counter()
        fixset = fixset_from(
            corrections(args.corrections),
            {"wrong": args.corrections},
            spec=spec,
            incident="BENCH",
            from_ms=START,
            to_ms=START + 10**9,
            parameters={},
            sources={},
        )
        write_fixset(fixset, directory)
        built_s = time.perf_counter() - built
        approve(directory, "bench", settings)
        started = time.perf_counter()
        report = publish(directory, settings, chunk_size=args.chunk_size)
        publish_s = time.perf_counter() - started
    counted = time.perf_counter()
    copies = count_copies(settings, topics.corrections)
    count_s = time.perf_counter() - counted
    duplicated = sum(1 for n in copies.values() if n > 1)
    lost = args.corrections - len(copies)
    print(f"{'corrections':>12} {'chunks':>7} {'publish s':>10} {'per s':>10} {'dup':>5} {'lost':>5} {'verified':>9}")
    print(
        f"{args.corrections:>12,} {report.chunks:>7} {publish_s:>10.1f} {args.corrections / publish_s:>10,.0f} "
        f"{duplicated:>5} {lost:>5} {str(report.verified):>9}"
    )
    print(f"(fix set built and written in {built_s:.1f} s; independent count of copies in {count_s:.1f} s)")


if __name__ == "__main__":
    main()
