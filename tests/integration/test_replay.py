"""Bounded replay on the real broker: time ranges, offsets, lookback, snapshots, workers, groups, exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from kafka import TopicPartition
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.frames import RECORDS
from recovery.kafka.clients import consumer, producer
from recovery.metrics.recompute import recompute
from recovery.pipeline.dedup import dedup
from recovery.pipeline.recover import recover
from recovery.pipeline.steps import truth_for_range
from recovery.records.validate import validate
from recovery.replay.bounded import replay
from recovery.source import FileSource, KafkaSource
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import BASE_MS, Tick, make_spec, produce, publish_results, ticks

SYMBOLS = ["A", "B", "C", "D", "E"]


@pytest.fixture
def loaded(kafka_settings: KafkaSettings, topic_factory: Callable[..., str]) -> tuple[PipelineSpec, list[Tick]]:
    """A spec with unique topics and 3,000 ticks (5 symbols, 5 minutes) on its raw topic."""
    spec = make_spec(topic_factory)
    items = ticks(3_000, SYMBOLS)
    produce(kafka_settings, spec.topics.raw, items)
    return spec, items


def event_ids(frame: pl.DataFrame) -> list[str]:
    return sorted(json.loads(v)["event_id"] for v in frame.get_column("value").to_list())


def test_time_range_reads_the_records_whose_kafka_time_is_in_range(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]]
) -> None:
    spec, items = loaded
    lo, hi = BASE_MS + 60_000, BASE_MS + 120_000
    result = replay(KafkaSource(spec.topics.raw, kafka_settings), from_ms=lo, to_ms=hi, slack_ms=0, quiet=True)
    assert result.records is not None
    assert result.records.schema == RECORDS
    assert event_ids(result.records) == sorted(t.event_id for t in items if lo <= t.kafka_ts < hi)
    assert result.records.get_column("timestamp_ms").is_between(lo, hi, closed="left").all()
    assert result.count == result.records.height > 0
    assert {p.partition for p in result.snapshot.partitions} == {0, 1, 2}


def test_explicit_offsets_are_read_as_given(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]]
) -> None:
    spec, _ = loaded
    source = KafkaSource(spec.topics.raw, kafka_settings)
    result = replay(source, offsets={0: (10, 20), 2: (None, None)}, spec=spec, quiet=True)
    frame = result.frame()
    assert frame.filter(pl.col("partition") == 0).get_column("offset").to_list() == list(range(10, 20))
    whole = {p.partition: p.log_end for p in result.snapshot.partitions}
    assert frame.filter(pl.col("partition") == 2).get_column("offset").to_list() == list(range(whole[2]))
    assert frame.filter(pl.col("partition") == 1).height == 0


def test_lookback_gives_the_same_truth_as_the_whole_history(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    # a rare key: one event a minute, so its 4 events before the range lie beyond the time lookback (125 s)
    # and the sma lookback has to step back further
    spec = make_spec(topic_factory)
    items = ticks(3_000, SYMBOLS)
    rare = [
        Tick(f"R-{i + 1}", "RARE", i + 1, BASE_MS + i * 60_000 + 7, 50.0 + i, 1.0, BASE_MS + i * 60_000 + 7)
        for i in range(5)
    ]
    produce(kafka_settings, spec.topics.raw, sorted([*items, *rare], key=lambda t: t.kafka_ts))
    lo, hi = BASE_MS + 200_000, BASE_MS + 260_000
    truth = truth_for_range(spec, lo, hi, settings=kafka_settings, slack_ms=1_000)
    assert truth.replay.records is not None
    whole = replay(KafkaSource(spec.topics.raw, kafka_settings), quiet=True).frame()
    events, _ = validate(whole, spec)
    expected = recompute(dedup(events).events, spec, from_ms=lo, to_ms=hi)
    assert_frame_equal(truth.results.sort("metric", "key", "window"), expected.sort("metric", "key", "window"))
    assert truth.replay.count < whole.height  # it did not just read everything
    first_ts = truth.replay.records.group_by("partition").agg(pl.col("timestamp_ms").min()).get_column("timestamp_ms")
    rare_before = [v for v in truth.replay.records.get_column("value").to_list() if b'"RARE"' in v]
    assert sum(json.loads(v)["ts"] < lo for v in rare_before) >= 4
    assert first_ts.min() < lo - spec.lookback_ms  # stepped back past the time lookback for RARE


def test_replay_is_bounded_by_the_snapshot_while_a_producer_keeps_writing(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]]
) -> None:
    spec, _ = loaded
    topic = spec.topics.raw
    tps = [TopicPartition(topic, p) for p in range(3)]
    with consumer(kafka_settings) as c:
        before = sum(c.end_offsets(tps).values())
    stop = threading.Event()
    grew = threading.Event()

    def keep_writing() -> None:
        with producer(kafka_settings, linger_ms=5) as p:
            i = 0
            while not stop.is_set() and i < 200_000:
                p.send(topic, key=SYMBOLS[i % 5].encode(), value=b'{"more": true}', timestamp_ms=BASE_MS + 10**7 + i)
                i += 1
                if i % 500 == 0:
                    p.flush()
                    grew.set()

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        assert grew.wait(timeout=30)
        result = replay(KafkaSource(topic, kafka_settings), quiet=True)
        with consumer(kafka_settings) as c:
            after = c.end_offsets(tps)
    finally:
        stop.set()
        writer.join(timeout=30)
    snapshot_end = result.snapshot.end_offsets
    frame = result.frame()
    assert sum(snapshot_end.values()) > before  # the snapshot was taken while writing
    assert sum(after[tp] for tp in tps) > sum(snapshot_end.values())  # and writing went on during the replay
    for p, end in snapshot_end.items():
        offsets = frame.filter(pl.col("partition") == p).get_column("offset")
        assert offsets.to_list() == list(range(end)), f"partition {p} not read exactly up to its snapshot"


def test_two_workers_and_parquet_parts_equal_one_worker(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]], tmp_path: Path
) -> None:
    spec, _ = loaded
    source = KafkaSource(spec.topics.raw, kafka_settings)
    one = replay(source, from_ms=BASE_MS + 100_000, to_ms=BASE_MS + 200_000, spec=spec, quiet=True)
    two = replay(source, from_ms=BASE_MS + 100_000, to_ms=BASE_MS + 200_000, spec=spec, workers=2, quiet=True)
    parts = replay(
        source,
        from_ms=BASE_MS + 100_000,
        to_ms=BASE_MS + 200_000,
        spec=spec,
        out_dir=tmp_path / "p",
        batch_records=300,
        quiet=True,
    )
    assert one.records is not None and one.records.height > 0
    assert_frame_equal(two.frame(), one.records)
    assert parts.records is None
    assert len(list((tmp_path / "p").glob("*.parquet"))) > 3
    assert (tmp_path / "p" / "_replay.json").is_file()
    assert_frame_equal(FileSource(tmp_path / "p").scan().collect(), one.records)
    assert parts.offsets() == one.offsets()


def test_replay_of_an_archive_selects_the_same_records(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]], tmp_path: Path
) -> None:
    spec, _ = loaded
    whole = replay(KafkaSource(spec.topics.raw, kafka_settings), out_dir=tmp_path / "all", quiet=True)
    assert whole.count == 3_000
    options = {"from_ms": BASE_MS + 150_000, "to_ms": BASE_MS + 180_000, "spec": spec, "slack_ms": 2_000}
    from_kafka = replay(KafkaSource(spec.topics.raw, kafka_settings), quiet=True, **options)
    from_files = replay(FileSource([str(tmp_path / "all" / "*.parquet")]), quiet=True, **options)
    assert_frame_equal(from_files.frame(), from_kafka.frame())


def _member(spec_path: Path, group: str, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recovery",
            "replay",
            "--spec",
            str(spec_path),
            "--from",
            str(BASE_MS + 60_000),
            "--to",
            str(BASE_MS + 240_000),
            "--group",
            group,
            "--expect-members",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_group_mode_with_two_members_equals_one_replay(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec = make_spec(topic_factory, partitions=4)
    produce(kafka_settings, spec.topics.raw, ticks(3_000, ["A", "B", "C", "D", "E", "F", "G", "H"]))
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(_toml(spec))
    group = unique_name("grp")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    members = [_member(spec_path, group, tmp_path / f"m{i}", env) for i in range(2)]
    outputs = [m.communicate(timeout=120) for m in members]
    for member, (out, err) in zip(members, outputs, strict=True):
        assert member.returncode == 0, err
        assert "this member read partitions" in out
    read = [json.loads(next((tmp_path / f"m{i}").glob("_replay-*.json")).read_text()) for i in range(2)]
    split = [set(r["members"]["partitions"]) for r in read]
    assert split[0] and split[1], f"both members must have replayed partitions: {split}"
    assert split[0] | split[1] == {0, 1, 2, 3}
    combined = FileSource([tmp_path / "m0", tmp_path / "m1"]).scan().collect()
    single = replay(
        KafkaSource(spec.topics.raw, kafka_settings),
        from_ms=BASE_MS + 60_000,
        to_ms=BASE_MS + 240_000,
        spec=spec,
        quiet=True,
    )
    assert_frame_equal(combined, single.frame())


def _toml(spec: PipelineSpec) -> str:
    t = spec.topics
    lines = [
        "[topics]",
        *(f'{k} = "{getattr(t, k)}"' for k in ("raw", "output", "corrections", "audit")),
        f"partitions = {t.partitions}",
    ]
    for m in spec.to_dict()["metrics"]:
        lines.append("[[metrics]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in m.items())
    return "\n".join(lines) + "\n"


def perturb(results: pl.DataFrame, lo: int, hi: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """Originals with known faults inside [lo, hi): every 7th missing, every 11th wrong, every 13th twice."""
    inside = pl.col("time_ms").is_between(lo, hi - 120_000, closed="left")  # windows (<= 2 min) fully inside
    indexed = results.with_row_index("_i")
    is_in = indexed.select(inside).to_series()
    i = indexed.get_column("_i")
    missing = is_in & (i % 7 == 0)
    wrong = is_in & (i % 11 == 0) & ~missing
    twice = is_in & (i % 13 == 0) & ~missing & ~wrong
    changed = indexed.with_columns(
        pl.when(wrong).then(pl.col("value") + 1.0).otherwise(pl.col("value")).alias("value")
    ).filter(~missing)
    dup_rows = indexed.filter(twice)
    extra = pl.DataFrame(
        {"key": ["ZZZ"], "metric": ["sma_5"], "window": [1], "time_ms": [lo + 1_000], "value": [1.0]},
        schema=results.schema,
    )
    originals = pl.concat([changed.drop("_i"), dup_rows.drop("_i"), extra])
    counts = {"missing": int(missing.sum()), "wrong": int(wrong.sum()), "duplicate": int(twice.sum()), "extra": 1}
    return originals, counts


def test_recovery_from_an_export_gives_the_same_fix_set(
    kafka_settings: KafkaSettings, loaded: tuple[PipelineSpec, list[Tick]], tmp_path: Path
) -> None:
    spec, _ = loaded
    lo, hi = BASE_MS + 60_000, BASE_MS + 240_000
    whole = replay(KafkaSource(spec.topics.raw, kafka_settings), quiet=True).frame()
    events, _ = validate(whole, spec)
    truth = recompute(dedup(events).events, spec)
    originals, faults = perturb(truth, lo, hi)
    publish_results(kafka_settings, spec.topics.output, originals)

    from_kafka = recover(spec, lo, hi, out_dir=tmp_path / "fx-kafka", settings=kafka_settings, incident="INC-7")
    counts = from_kafka.fixset.counts
    assert min(faults.values()) > 0
    assert {k: counts[k] for k in faults} == faults
    assert counts["conflicting"] == 0
    assert from_kafka.fixset.content["corrections"]["total"] == faults["missing"] + faults["wrong"] + faults["extra"]

    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(_toml(spec))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    for topic, out in ((spec.topics.raw, "raw"), (spec.topics.output, "outputs")):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "recovery",
                "export",
                "--spec",
                str(spec_path),
                "--topic",
                topic,
                "--from",
                str(lo),
                "--to",
                str(hi),
                "--out",
                str(tmp_path / out),
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    from_files = recover(
        spec,
        lo,
        hi,
        out_dir=tmp_path / "fx-files",
        raw_source=[tmp_path / "raw"],
        outputs_source=[str(tmp_path / "outputs" / "*.parquet")],
        incident="INC-7",
    )
    assert from_files.fixset.digest == from_kafka.fixset.digest
    assert from_files.fixset.provenance["sources"]["raw"]["kind"] == "files"
