"""A team's own pipeline on the real broker: nested JSON orders (seconds timestamps, composite key, no seq) and
outputs in the team's layout (two metrics per record, ISO window ends), recovered from Kafka by both engines;
check-spec passes on the clean topic and fails on a spec with the wrong window.

Expected values: a plain loop over the generated orders (tests/unit/pipeline/test_own_layouts.py) and the
faults injected here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.publish import publish
from recovery.kafka.clients import producer
from recovery.pipeline.calibrate import check_spec
from recovery.pipeline.recover import recover
from recovery.spec import MetricSpec, TopicsSpec
from tests.integration.engine_helpers import read_all
from tests.unit.pipeline.test_own_layouts import MINUTE, SPEC, START, _iso, _orders, _truth

pytestmark = pytest.mark.kafka


def _setup(settings: KafkaSettings, topic_factory: Callable[..., str], faults: bool) -> tuple[object, dict, list]:  # type: ignore[type-arg]
    raw_topic = topic_factory("orders", partitions=3)
    out_topic = topic_factory("stats", partitions=3)
    spec = replace(
        SPEC,
        topics=TopicsSpec(raw=raw_topic, output=out_topic, corrections=f"{out_topic}.fix", audit=f"{out_topic}.audit"),
    )
    orders = _orders(random.Random(29))
    truth = _truth(orders)
    windows = sorted(truth)
    dropped, wrong = (windows[2], windows[9]) if faults else (None, None)
    with producer(settings, linger_ms=5) as p:
        for o in sorted(orders, key=lambda o: o["placed_at"]):
            key = f"{o['shop']['merchant']}|{o['shop']['region']}".encode()
            p.send(raw_topic, key=key, value=json.dumps(o).encode(), timestamp_ms=round(o["placed_at"] * 1000))
        for key, start in windows:
            if (key, start) == dropped:
                continue
            amount, items = truth[(key, start)]
            merchant, region = key.split("|")
            doc = {"merchant": merchant, "region": region, "window": {"end": _iso(start + MINUTE)}}
            doc.update(avg_amount=amount, avg_items=items + (1.0 if (key, start) == wrong else 0.0))
            p.send(out_topic, key=key.encode(), value=json.dumps(doc).encode(), timestamp_ms=start + MINUTE)
        p.flush()
    return spec, truth, [dropped, wrong]


@pytest.mark.timeout(180)
def test_a_team_pipeline_is_recovered_from_kafka_by_both_engines(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    spec, truth, (dropped, wrong) = _setup(kafka_settings, topic_factory, faults=True)
    reports = {
        engine: recover(
            spec,
            START,
            START + 10 * MINUTE,
            settings=kafka_settings,
            engine=engine,
            out_dir=tmp_path / engine,
            now=START + 24 * 60 * MINUTE,
        )
        for engine in ("by-partition", "in-memory")
    }
    parts, memory = reports["by-partition"], reports["in-memory"]
    assert parts.engine == "by-partition"
    assert parts.fixset.digest == memory.fixset.digest
    counts = parts.summary.counts
    assert (counts["missing"], counts["wrong"], counts["ok"]) == (2, 1, 2 * len(truth) - 3)
    fixes = parts.fixset.corrections.sort("metric", "key")
    assert fixes.select("key", "metric", "window").rows() == sorted(
        [
            (dropped[0], "avg_amount", dropped[1]),
            (dropped[0], "avg_items", dropped[1]),
            (wrong[0], "avg_items", wrong[1]),
        ],
        key=lambda r: (r[1], r[0]),
    )


@pytest.mark.timeout(180)
def test_check_spec_passes_on_a_clean_range_and_fails_on_a_wrong_window(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    spec, truth, _ = _setup(kafka_settings, topic_factory, faults=False)
    clean = check_spec(spec, START, START + 10 * MINUTE, settings=kafka_settings)
    assert clean.passed
    assert [s.ok for s in clean.shares] == [len(truth), len(truth)]
    wrong = replace(
        spec,
        metrics=(
            MetricSpec("avg_amount", "mean", field="amount", window_ms=MINUTE),
            MetricSpec("avg_items", "mean", field="items", window_ms=5 * MINUTE),
        ),
    )
    found = check_spec(wrong, START, START + 10 * MINUTE, settings=kafka_settings)
    assert not found.passed
    assert found.shares[0].ok_pct == 100.0 and found.shares[1].ok_pct < 50.0


@pytest.mark.timeout(240)
def test_corrections_published_in_the_outputs_layout_restore_the_clean_outputs(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    spec, truth, (dropped, wrong) = _setup(kafka_settings, topic_factory, faults=True)
    out = tmp_path / "fx"
    recover(spec, START, START + 10 * MINUTE, settings=kafka_settings, out_dir=out, now=START + 24 * 60 * MINUTE)
    approve(out, "layout-reviewer", kafka_settings)
    report = publish(out, kafka_settings, chunk_size=2)  # two transactions
    assert report.verified and report.chunks == 2
    again = publish(out, kafka_settings)
    assert again.status == "already-published"

    # an independent reader: a plain consumer and json, not the toolkit's decoders
    held: dict[tuple[str, int], dict[str, float]] = {}
    for r in read_all(kafka_settings, spec.topics.output):
        doc = json.loads(r.value)
        end = datetime.fromisoformat(doc["window"]["end"].replace("Z", "+00:00"))
        start = int(end.timestamp() * 1000) - MINUTE
        held[(f"{doc['merchant']}|{doc['region']}", start)] = {
            "avg_amount": doc["avg_amount"],
            "avg_items": doc["avg_items"],
        }
    corrections = read_all(kafka_settings, spec.topics.corrections)
    assert len(corrections) == 3  # each correction committed exactly once
    for r in corrections:
        doc = json.loads(r.value)
        assert r.key.decode().rsplit("|", 2)[1] in doc  # the record key names the corrected metric
        end = datetime.fromisoformat(doc["window"]["end"].replace("Z", "+00:00"))
        start = int(end.timestamp() * 1000) - MINUTE
        slot = held.setdefault((f"{doc['merchant']}|{doc['region']}", start), {})
        slot.update({m: doc[m] for m in ("avg_amount", "avg_items") if m in doc})
    assert set(held) == set(truth)
    for window, (amount, items) in truth.items():
        assert held[window]["avg_amount"] == pytest.approx(amount, rel=1e-12)
        assert held[window]["avg_items"] == pytest.approx(items, rel=1e-12)
    assert dropped in held and wrong in held
