"""Nested-JSON sensor readings with seconds timestamps and per-device session windows, on the real broker.

Outputs in the team's layout: {"device": {"id": ...}, "session": {"start": <epoch s>}, "max_temp": ...}. The
expected sessions come from a plain loop over the generated readings (split where two readings of a device are
more than the gap apart); the faults (a lost session result, a wrong one) are injected here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from recovery.config import KafkaSettings
from recovery.kafka.clients import producer
from recovery.pipeline.calibrate import check_spec
from recovery.pipeline.recover import recover
from recovery.spec import PipelineSpec

pytestmark = pytest.mark.kafka

START_S = 1_767_603_600  # 2026-01-05T09:00:00Z
GAP_S = 30


def _readings(rng: random.Random) -> list[dict]:  # type: ignore[type-arg]
    readings = []
    for device in ("d1", "d2", "d3"):
        at = START_S + rng.uniform(0, 20)
        for _ in range(60):
            at += rng.choice([rng.uniform(1, 20), rng.uniform(31, 120)])  # inside a session, or a new one
            if at > START_S + 3000:
                break
            readings.append({"device": {"id": device}, "reading": {"at": round(at, 3), "temp_c": rng.uniform(-5, 35)}})
    return readings


def _sessions(readings: list[dict]) -> dict[tuple[str, int], float]:  # type: ignore[type-arg]
    """(device, session start ms) -> max temperature: consecutive readings at most GAP_S apart share a session."""
    out: dict[tuple[str, int], float] = {}
    by_device: dict[str, list[tuple[int, float]]] = {}
    for r in readings:
        by_device.setdefault(r["device"]["id"], []).append((round(r["reading"]["at"] * 1000), r["reading"]["temp_c"]))
    for device, items in by_device.items():
        items.sort()
        start, last, top = items[0][0], items[0][0], items[0][1]
        for at, temp in items[1:]:
            if at - last > GAP_S * 1000:
                out[(device, start)] = top
                start, top = at, temp
            last, top = at, max(top, temp)
        out[(device, start)] = top
    return out


@pytest.mark.timeout(240)
def test_session_windows_of_a_nested_json_pipeline_are_recovered(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    raw, out = topic_factory("sensors", partitions=2), topic_factory("sessions", partitions=2)
    spec = PipelineSpec.from_dict(
        {
            "topics": {"raw": raw, "output": out, "corrections": f"{out}.fix", "audit": f"{out}.audit"},
            "events": {
                "key": "device.id",
                "time": "reading.at",
                "time_unit": "s",
                "values": {"temp": "reading.temp_c"},
            },
            "outputs": {
                "key": "device.id",
                "window": "session.start",
                "window_unit": "s",
                "metrics": {"max_temp": "max_temp"},
            },
            "metrics": [
                {"name": "max_temp", "aggregation": "max", "field": "temp", "window": "session", "gap_ms": GAP_S * 1000}
            ],
        }
    )
    readings = _readings(random.Random(17))
    sessions = _sessions(readings)
    ordered = sorted(sessions)
    lost, wrong = ordered[2], ordered[-3]
    with producer(kafka_settings, linger_ms=5) as p:
        for r in sorted(readings, key=lambda r: r["reading"]["at"]):
            key = r["device"]["id"].encode()
            p.send(raw, key=key, value=json.dumps(r).encode(), timestamp_ms=round(r["reading"]["at"] * 1000))
        for device, start in ordered:
            if (device, start) == lost:
                continue
            top = sessions[(device, start)] + (1.5 if (device, start) == wrong else 0.0)
            doc = {"device": {"id": device}, "session": {"start": start / 1000}, "max_temp": top}
            p.send(out, key=device.encode(), value=json.dumps(doc).encode(), timestamp_ms=start)
        p.flush()
    lo, hi = START_S * 1000, (START_S + 3600) * 1000
    report = recover(spec, lo, hi, settings=kafka_settings, out_dir=tmp_path / "fx", now=hi + 86_400_000)
    fixes = {(k, w): v for k, w, v in report.fixset.corrections.select("key", "window", "value").rows()}
    in_range = {s for s in sessions if lo <= s[1]}  # every session ends well before hi
    assert report.summary.counts["ok"] == len(in_range) - 2
    assert fixes == {lost: pytest.approx(sessions[lost]), wrong: pytest.approx(sessions[wrong])}
    wrong_gap = PipelineSpec.from_dict(
        {**spec.to_dict(), "metrics": [{**spec.to_dict()["metrics"][0], "gap_ms": 10_000}]}
    )
    assert not check_spec(wrong_gap, lo, hi, settings=kafka_settings).passed
