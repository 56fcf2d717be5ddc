"""On Spark (local mode, one session for the module), small offset chunks give the per-partition engine's fix set.

The reference is ``--engine by-partition`` on the same incident and the simulator's own prediction of the
discrepancies from the faults it injected; chunks of a few hundred offsets cut through keys, count and
time windows, and duplicates (a dropped copy and its kept copy in different chunks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import TopicPartition
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.errors import ConfigError
from recovery.fixes.publish import partition_of
from recovery.kafka.clients import consumer, producer
from recovery.pipeline.recover import recover
from recovery.sim.simulate import discrepancy_frame, simulate
from recovery.sim.ticks import FAULT_TYPES, SimulationParams
from recovery.spark.session import SparkOptions, open_session
from recovery.spec import PipelineSpec, TopicsSpec, load_spec
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, ticks

pytestmark = pytest.mark.spark

SORT = ["metric", "key", "window"]
CHUNK = 250  # offsets per chunk: a partition of ~2,000 records is read in ~8 chunks and 8 key buckets
LOCAL = SparkOptions("local[2]", chunk_records=CHUNK, driver_memory="768m")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark session for the module's tests (its JVM starts once)."""
    session = open_session(LOCAL)
    yield session
    session.stop()


def _spec(name: str, partitions: int = 3) -> PipelineSpec:
    base = load_spec(Path(__file__).resolve().parents[2] / "pipeline.toml")
    topics = TopicsSpec(
        raw=f"{name}.raw",
        output=f"{name}.out",
        corrections=f"{name}.corr",
        audit=f"{name}.audit",
        partitions=partitions,
    )
    return PipelineSpec(topics, base.fields, base.metrics)


def _resend_early_copies(settings: KafkaSettings, topic: str, *, partitions: int, count: int) -> None:
    """Re-send exact copies of each partition's first ``count`` records at its end (a producer retry long
    after): each copy lands many chunks after the copy that is kept."""
    with consumer(settings) as c:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning()
        early: list[Any] = []
        deadline = time.monotonic() + 60
        while any(c.position(tp) < count for tp in tps) and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=1_000).values():
                early.extend(r for r in records if r.offset < count)
    assert early, f"no early records of {topic} to re-send"
    with producer(settings) as p:
        for r in early:
            p.send(topic, key=r.key, value=r.value, timestamp_ms=r.timestamp, partition=r.partition)
        p.flush()


def test_spark_in_small_chunks_gives_the_fix_set_of_the_per_partition_engine_on_an_incident_with_every_fault(
    spark: Any, kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec = _spec(unique_name("spk"))
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=6, events=6_000, seed=29))
    assert {f["type"] for f in incident["faults"]} == set(FAULT_TYPES)
    lo, hi = incident["recovery_range"]["from_ms"], incident["recovery_range"]["to_ms"]
    _resend_early_copies(kafka_settings, spec.topics.raw, partitions=3, count=5)

    def run(out: str, **options: Any) -> Any:
        return recover(spec, lo, hi, out_dir=tmp_path / out, settings=kafka_settings, quiet=True, **options)

    parts = run("parts", engine="by-partition")
    on_spark = run("spark", engine="spark", spark=LOCAL)
    assert on_spark.engine == "spark"
    assert on_spark.fixset.content == parts.fixset.content
    assert on_spark.fixset.digest == parts.fixset.digest
    assert on_spark.summary.counts == parts.summary.counts

    # the simulator's prediction, from the faults it injected: every discrepancy and nothing else
    predicted = discrepancy_frame(incident["predicted"]["results"]).sort(SORT)
    found = on_spark.comparison.filter(pl.col("status") != "ok").select(predicted.columns).sort(SORT)
    assert predicted.height > 0
    assert_frame_equal(found, predicted)

    # the chunks really cut through what must meet: a duplicate and its kept copy lie in different chunks,
    # every partition was read in several chunks, and the count-window lookback read before the plan
    reads = on_spark.truth.replay.reads
    starts = pl.DataFrame({"partition": list(reads), "_start": [r.start for r in reads.values()]}).cast(
        {"partition": pl.Int32}
    )
    chunk_of = lambda column: (pl.col(column) - pl.col("_start")) // CHUNK  # noqa: E731
    duplicates = on_spark.truth.events.duplicates.join(starts, on="partition")
    assert duplicates.filter(chunk_of("offset") != chunk_of("kept_offset")).height > 0
    assert max(r.end - r.start for r in reads.values()) > 3 * CHUNK  # keys are not spread evenly over partitions
    assert {p: (r.start, r.end, r.records) for p, r in reads.items()} == {
        p: (r.start, r.end, r.records) for p, r in parts.truth.replay.reads.items()
    }

    assert_frame_equal(on_spark.truth.quarantine, parts.truth.quarantine)
    assert on_spark.truth.quarantine.height > 0
    assert_frame_equal(on_spark.outputs_quarantine, parts.outputs_quarantine)
    assert_frame_equal(on_spark.truth.events.duplicates, parts.truth.events.duplicates)
    assert_frame_equal(on_spark.truth.events.gaps, parts.truth.events.gaps.sort("key", "from_seq"))
    assert_frame_equal(on_spark.truth.events.by_key, parts.truth.events.by_key)
    assert_frame_equal(on_spark.truth.events.by_partition, parts.truth.events.by_partition)
    assert on_spark.truth.events.counts() == parts.truth.events.counts()
    assert_frame_equal(on_spark.comparison.sort(SORT), parts.comparison.sort(SORT))
    assert_frame_equal(on_spark.truth.results.sort(SORT), parts.truth.results.sort(SORT))
    assert_frame_equal(on_spark.originals.sort("partition", "offset"), parts.originals.sort("partition", "offset"))
    review = [pl.read_parquet(tmp_path / d / "review" / "comparison.parquet").sort(SORT) for d in ("parts", "spark")]
    assert_frame_equal(review[0], review[1])

    # the second half of the range with the count window alone. With every metric, the plan already starts
    # 305 s early (the 5-minute hopping window's span + grace), which holds far more than 4 events of every key,
    # so the fixed point has nothing to add; alone, sma_5 plans no time lookback (lookback_ms 0), so each key's
    # 4 earlier events must be read back before the plan, in more chunks, to the offsets one machine reads
    count_only = PipelineSpec(spec.topics, spec.fields, tuple(m for m in spec.metrics if m.lookback_events))
    assert count_only.lookback_ms == 0 and count_only.lookback_events == 4
    middle = lo + (hi - lo) // 2
    later = [
        recover(count_only, middle, hi, settings=kafka_settings, engine=engine, spark=LOCAL, quiet=True)
        for engine in ("by-partition", "spark")
    ]
    assert later[1].fixset.digest == later[0].fixset.digest
    assert later[1].summary.counts == later[0].summary.counts
    planned = {p.partition: (p.start, p.end) for p in later[1].truth.replay.snapshot.partitions}
    later_reads = later[1].truth.replay.reads
    read_back = {p: (r.start, r.end) for p, r in later_reads.items()}
    assert all(read_back[p][0] < start for p, (start, end) in planned.items() if end > start), (planned, read_back)
    assert any(end > start for start, end in planned.values())
    assert {p: (r.start, r.end, r.records) for p, r in later_reads.items()} == {
        p: (r.start, r.end, r.records) for p, r in later[0].truth.replay.reads.items()
    }


def test_spark_refuses_topics_whose_keys_are_not_partitioned_alike(
    spark: Any, kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    spec = make_spec(topic_factory, partitions=2)
    items = ticks(300, ["AAA", "BBB", "CCC"])
    produce(kafka_settings, spec.topics.raw, items)
    # a new event of key AAA written to the other partition by hand: the same key in two partitions
    stray = items[0].value().replace(b'"seq": 1', b'"seq": 999').replace(b'"AAA-1"', b'"AAA-999"')
    with producer(kafka_settings) as p:
        p.send(
            spec.topics.raw,
            key=b"AAA",
            value=stray,
            timestamp_ms=items[0].kafka_ts,
            partition=1 - partition_of("AAA", 2),
        )
        p.flush()
    with pytest.raises(ConfigError, match="cannot recover partition by partition on Spark"):
        recover(
            spec,
            BASE_MS,
            BASE_MS + 30_000,
            out_dir=tmp_path / "refused",
            settings=kafka_settings,
            engine="spark",
            spark=LOCAL,
        )
    assert not (tmp_path / "refused").exists()
