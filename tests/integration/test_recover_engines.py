"""The per-partition engine gives the in-memory engine's fix set, and steps aside when keys are not partitioned."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.errors import ConfigError, DataError
from recovery.fixes.publish import partition_of
from recovery.kafka.clients import producer
from recovery.pipeline.recover import recover
from recovery.pipeline.steps import truth_for_range
from recovery.records.outputs import encode_result
from recovery.sim.simulate import simulate
from recovery.sim.ticks import SimulationParams
from recovery.spec import PipelineSpec, TopicsSpec, load_spec
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, ticks

pytestmark = pytest.mark.kafka

SORT = ["metric", "key", "window"]


def test_partition_by_partition_gives_the_same_fix_set_as_in_memory(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    base = load_spec(Path(__file__).resolve().parents[2] / "pipeline.toml")
    name = unique_name("eng")
    topics = TopicsSpec(
        raw=f"{name}.raw", output=f"{name}.out", corrections=f"{name}.corr", audit=f"{name}.audit", partitions=3
    )
    spec = PipelineSpec(topics, base.fields, base.metrics)
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=6, events=6_000, seed=23))
    lo, hi = incident["recovery_range"]["from_ms"], incident["recovery_range"]["to_ms"]

    def run(out: str, **options: object) -> object:
        return recover(spec, lo, hi, out_dir=tmp_path / out, settings=kafka_settings, quiet=True, **options)

    parts = run("parts", engine="by-partition", workers=2)
    memory = run("memory", engine="in-memory")
    auto = run("auto")  # one worker: partitions one after the other in this process
    assert (parts.engine, memory.engine, auto.engine) == ("by-partition", "in-memory", "by-partition")
    assert parts.fixset.digest == memory.fixset.digest == auto.fixset.digest
    assert parts.fixset.content == memory.fixset.content
    assert parts.summary.counts == memory.summary.counts and memory.summary.counts["missing"] > 0
    for name in ("by_key", "by_metric", "by_bucket"):
        assert_frame_equal(getattr(parts.summary, name), getattr(memory.summary, name))
    assert_frame_equal(parts.comparison.sort(SORT), memory.comparison.sort(SORT))
    assert_frame_equal(parts.truth.results.sort(SORT), memory.truth.results.sort(SORT))
    assert_frame_equal(parts.originals.sort("partition", "offset"), memory.originals.sort("partition", "offset"))
    assert parts.originals_count == memory.originals.height
    assert_frame_equal(parts.truth.quarantine, memory.truth.quarantine)
    assert parts.truth.quarantine.height > 0 and parts.truth.events.gaps.height > 0
    gaps = [r.truth.events.gaps.sort("key", "from_seq") for r in (parts, memory)]
    assert_frame_equal(gaps[0], gaps[1])
    assert_frame_equal(parts.truth.events.duplicates, memory.truth.events.duplicates)
    assert_frame_equal(parts.truth.events.by_key, memory.truth.events.by_key.sort("key"))
    assert parts.truth.events.counts() == memory.truth.events.counts()
    review = [pl.read_parquet(tmp_path / d / "review" / "comparison.parquet").sort(SORT) for d in ("parts", "memory")]
    assert_frame_equal(review[0], review[1])
    with pytest.raises(DataError, match="not kept"):
        parts.truth.replay.frame()
    # truth alone (recovery recompute) partition by partition: the in-memory engine's results and quality
    alone = truth_for_range(spec, lo, hi, settings=kafka_settings, workers=2, by_partition=True, work_near=tmp_path)
    assert alone.events.event_count is not None  # ran partition by partition (the events were not kept)
    assert_frame_equal(alone.lazy_results().collect().sort(SORT), memory.truth.results.sort(SORT))
    assert alone.events.counts() == memory.truth.events.counts()
    assert_frame_equal(alone.quarantine, memory.truth.quarantine)
    del alone
    work_dirs = list(tmp_path.glob(".recover-parts-*"))
    assert len(work_dirs) == 2  # the parts live as long as the reports that read them
    del parts, auto
    gc.collect()
    assert all(not d.exists() for d in work_dirs)  # removed with the reports that read them


def publish_to(settings: KafkaSettings, topic: str, rows: list[tuple[str, int, int]]) -> None:
    """Publish sma results (key, seq, ts) to explicit partitions: ``partition_of(key) + 1``, the wrong one."""
    with producer(settings) as p:
        for key, seq, ts in rows:
            value = encode_result(
                metric="sma_5",
                key=key,
                window=seq,
                time_ms=ts,
                value=100.0,
                count=1,
                partition=0,
                first_offset=0,
                last_offset=0,
                worker="test",
            )
            p.send(topic, key=key.encode(), value=value, timestamp_ms=ts, partition=(partition_of(key, 3) + 1) % 3)
        p.flush()


def test_outputs_in_other_partitions_than_their_raw_events_are_recovered_in_memory(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    spec = make_spec(topic_factory, partitions=3)
    items = ticks(600, ["AAA", "BBB", "CCC", "DDD"])
    produce(kafka_settings, spec.topics.raw, items)
    publish_to(kafka_settings, spec.topics.output, [(t.symbol, t.seq, t.ts) for t in items[:200]])
    lo, hi = BASE_MS, BASE_MS + 60_000

    auto = recover(spec, lo, hi, out_dir=tmp_path / "auto", settings=kafka_settings)
    memory = recover(spec, lo, hi, out_dir=tmp_path / "memory", settings=kafka_settings, engine="in-memory")
    assert auto.engine == "in-memory" and auto.fixset.digest == memory.fixset.digest
    assert any("recovered in memory: key" in line and "has outputs in partition" in line for line in auto.lines())
    with pytest.raises(ConfigError, match="cannot recover partition by partition: key"):
        recover(spec, lo, hi, out_dir=tmp_path / "refused", settings=kafka_settings, engine="by-partition")
    assert not (tmp_path / "refused").exists()
    assert not list(tmp_path.glob(".recover-parts-*"))


def test_topics_with_other_partition_counts_are_recovered_in_memory(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    spec = make_spec(topic_factory, partitions=3)
    narrow = topic_factory("out2", partitions=2)
    spec = PipelineSpec(
        TopicsSpec(spec.topics.raw, narrow, f"{narrow}.corr", f"{narrow}.audit", 3), spec.fields, spec.metrics
    )
    items = ticks(300, ["AAA", "BBB"])
    produce(kafka_settings, spec.topics.raw, items)
    report = recover(spec, BASE_MS, BASE_MS + 30_000, out_dir=tmp_path / "fx", settings=kafka_settings)
    assert report.engine == "in-memory"
    assert any("partitions [0, 1, 2]" in line and "[0, 1]" in line for line in report.lines())
    assert report.summary.counts["missing"] > 0 and report.summary.counts["ok"] == 0
