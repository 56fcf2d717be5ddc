"""The live worker on the real broker: results, malformed input, consumer-group scaling, stop on SIGTERM."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from kafka import TopicPartition

from recovery.config import KafkaSettings
from recovery.kafka.clients import admin, consumer, producer
from recovery.kafka.topics import ensure_topic, offsets
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import compare
from recovery.records.outputs import decode_outputs
from recovery.spec import PipelineSpec, load_spec

from .readback import read_topic, run_live_cli, valid_events, write_spec

BASE_MS = 1_767_603_600_000
SYMBOLS = [f"K{i:02d}" for i in range(12)]


def make_topics(settings: KafkaSettings, spec: PipelineSpec) -> None:
    for topic in (spec.topics.raw, spec.topics.output):
        ensure_topic(settings, topic, spec.topics.partitions)


def tick(symbol: str, seq: int, ts: int, price: float, volume: float) -> bytes:
    return json.dumps(
        {"event_id": f"{symbol}-{seq}", "symbol": symbol, "seq": seq, "ts": ts, "price": price, "volume": volume}
    ).encode()


def produce_ticks(settings: KafkaSettings, topic: str, count: int, symbols: list[str], seed: int = 1) -> None:
    rng = random.Random(seed)
    seqs = dict.fromkeys(symbols, 0)
    ts = BASE_MS
    with producer(settings, linger_ms=10) as p:
        for _ in range(count):
            symbol = rng.choice(symbols)
            seqs[symbol] += 1
            ts += rng.randrange(0, 400)
            price = round(100 + rng.gauss(0, 2), 2)
            volume = 0.0 if rng.random() < 0.05 else float(rng.randrange(1, 500))
            p.send(topic, key=symbol.encode(), value=tick(symbol, seqs[symbol], ts, price, volume), timestamp_ms=ts)
        p.flush()


def comparison(settings: KafkaSettings, spec: PipelineSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(COMPARISON of the output topic with truth, decoded outputs)."""
    outputs, quarantine = decode_outputs(read_topic(settings, spec.topics.output))
    assert quarantine.height == 0
    truth = recompute(valid_events(read_topic(settings, spec.topics.raw), spec), spec)
    return compare(outputs, truth, spec), outputs


def test_fault_free_stream_gives_truth_except_windows_still_open(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec_path = write_spec(tmp_path, unique_name("live"), partitions=3)
    spec = load_spec(spec_path)
    make_topics(kafka_settings, spec)
    produce_ticks(kafka_settings, spec.topics.raw, 3000, SYMBOLS[:4])
    stats = run_live_cli(spec_path, unique_name("g"))
    assert (stats["records"], stats["events"], stats["malformed_total"], stats["late_events"]) == (3000, 3000, 0, 0)
    result, outputs = comparison(kafka_settings, spec)
    counts = dict(result.group_by("status").len().rows())
    assert counts.get("wrong", 0) == counts.get("duplicate", 0) == counts.get("extra", 0) == 0
    missing = result.filter(pl.col("status") == "missing")
    assert missing.height == stats["open_windows"] and set(missing["metric"]) <= {"mean_1m", "vwap_5m"}
    assert stats["outputs"] == outputs.height == counts["ok"]
    # the record carries what it covers: sma over min(n, seq) events ending at its own offset
    raw = read_topic(kafka_settings, spec.topics.output)
    first = json.loads(raw.filter(pl.col("key") == b"K00").row(0, named=True)["value"])
    assert first["metric"] == "sma_5" and first["window"] == 1 and first["count"] == 1
    assert first["first_offset"] == first["last_offset"]
    sma = [json.loads(v) for v in raw.get_column("value").to_list()]
    assert all(r["count"] == min(5, r["window"]) for r in sma if r["metric"] == "sma_5")
    assert raw.get_column("timestamp_ms").to_list() == [r["time_ms"] for r in sma]


def test_every_malformed_kind_is_skipped_and_counted(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec_path = write_spec(tmp_path, unique_name("bad"), partitions=1)
    spec = load_spec(spec_path)
    make_topics(kafka_settings, spec)
    good = {"event_id": "A-2", "symbol": "A", "seq": 2, "ts": BASE_MS + 10, "price": 10.0, "volume": 1.0}
    malformed: list[tuple[bytes | None, str]] = [
        (b'{"event_id": "A-2", "symbol": ', "bad JSON"),
        (b"\xff\xfe\x00garbage", "bad encoding"),
        (None, "empty value"),
        (b"", "empty value"),
        (b"[1, 2, 3]", "not an object"),
        (json.dumps({k: v for k, v in good.items() if k != "price"}).encode(), "missing field"),
        (json.dumps(good | {"price": "10.0"}).encode(), "wrong type"),
        (json.dumps(good | {"seq": "2"}).encode(), "wrong type"),
        (json.dumps(good | {"ts": 1.5e12}).encode(), "wrong type"),
        (json.dumps(good | {"price": -10.0}).encode(), "bad value"),
        (json.dumps(good | {"price": math.nan}).encode(), "bad value"),
        (json.dumps(good | {"volume": math.inf}).encode(), "bad value"),
    ]
    with producer(kafka_settings) as p:
        p.send(spec.topics.raw, key=b"A", value=tick("A", 1, BASE_MS, 10.0, 1.0), timestamp_ms=BASE_MS)
        for value, _ in malformed:
            p.send(spec.topics.raw, key=b"A", value=value, timestamp_ms=BASE_MS + 5)
        p.send(spec.topics.raw, key=b"A", value=tick("A", 2, BASE_MS + 10, 20.0, 1.0), timestamp_ms=BASE_MS + 10)
        p.flush()
    stats = run_live_cli(spec_path, unique_name("g"))
    expected: dict[str, int] = {}
    for _, category in malformed:
        expected[category] = expected.get(category, 0) + 1
    assert stats["malformed"] == expected
    assert (stats["records"], stats["events"]) == (len(malformed) + 2, 2)
    outputs, _ = decode_outputs(read_topic(kafka_settings, spec.topics.output))
    assert outputs.filter(pl.col("metric") == "sma_5").select("window", "value").rows() == [(1, 10.0), (2, 15.0)]


def _group_members(settings: KafkaSettings, group: str) -> dict[str, list[int]]:
    with admin(settings) as a:
        info = a.describe_groups([group])[group]
    if info["group_state"] != "Stable":
        return {}
    members = {}
    for m in info["members"]:
        assigned = m["member_assignment"]["assigned_partitions"] if m["member_assignment"] else []
        members[m["client_id"]] = sorted(p for t in assigned for p in t["partitions"])
    return members


def _wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)  # polling a condition with a deadline, not synchronisation by sleeping
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def test_workers_in_one_group_split_partitions_and_stop_on_sigterm(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    spec_path = write_spec(tmp_path, unique_name("split"), partitions=6)
    spec = load_spec(spec_path)
    make_topics(kafka_settings, spec)
    group = unique_name("g")
    env = dict(os.environ)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "recovery", "live", "--spec", str(spec_path), "--group", group, "--json"]
            + ["--worker-id", f"w{i}", "--log-level", "WARNING"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        members = _wait_for(
            lambda: (m := _group_members(kafka_settings, group)) and len(m) == 2 and all(m.values()) and m,
            60,
            "two members with partitions",
        )
        assigned = list(members.values())
        assert sorted(assigned[0] + assigned[1]) == list(range(6)) and not set(assigned[0]) & set(assigned[1])
        produce_ticks(kafka_settings, spec.topics.raw, 2400, SYMBOLS, seed=3)
        raw_end = offsets(kafka_settings, spec.topics.raw).end_offsets
        with consumer(kafka_settings, group_id=group) as c:
            parts = [TopicPartition(spec.topics.raw, p) for p in range(6)]
            _wait_for(
                lambda: all((c.committed(tp) or 0) >= raw_end[tp.partition] for tp in parts),
                90,
                "the group to commit the end offsets",
            )
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-1500:] for _, err in results]
    stats = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert sum(s["records"] for s in stats) == 2400 and all(s["records"] > 0 for s in stats)
    result, outputs = comparison(kafka_settings, spec)
    statuses = dict(result.group_by("status").len().rows())
    assert statuses.get("wrong", 0) == statuses.get("duplicate", 0) == statuses.get("extra", 0) == 0
    by_worker = [json.loads(v) for v in read_topic(kafka_settings, spec.topics.output).get_column("value").to_list()]
    partitions_of: dict[str, set[int]] = {}
    for r in by_worker:
        partitions_of.setdefault(r["worker"], set()).add(r["partition"])
    assert set(partitions_of) == {"w0", "w1"}
    assert not partitions_of["w0"] & partitions_of["w1"], "each raw partition is processed by one worker"
    assert outputs.filter(pl.col("metric") == "sma_5").height == 2400
