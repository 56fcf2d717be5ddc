"""End to end on a simulated incident with every fault type: find every discrepancy, publish, apply, get truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.fixset import apply_corrections
from recovery.fixes.publish import publish
from recovery.frames import CORRECTIONS, RECORDS, conform
from recovery.pipeline.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, trim_to_range
from recovery.pipeline.recover import recover
from recovery.records.outputs import decode_outputs
from recovery.sim.simulate import discrepancy_frame, simulate
from recovery.sim.ticks import FAULT_TYPES, SimulationParams
from recovery.spec import PipelineSpec, TopicsSpec, load_spec
from tests.integration.engine_helpers import read_all


def as_records(records: list) -> pl.DataFrame:
    """RECORDS from kafka-python ConsumerRecords (read by an independent consumer)."""
    return pl.DataFrame(
        {
            "partition": [r.partition for r in records],
            "offset": [r.offset for r in records],
            "timestamp_ms": [r.timestamp for r in records],
            "key": [r.key for r in records],
            "value": [r.value for r in records],
        },
        schema=RECORDS,
    )


def test_simulated_incident_is_found_exactly_and_the_published_corrections_restore_truth(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    base = load_spec(Path(__file__).resolve().parents[2] / "pipeline.toml")
    name = unique_name("inc")
    topics = TopicsSpec(
        raw=f"{name}.raw", output=f"{name}.out", corrections=f"{name}.corr", audit=f"{name}.audit", partitions=3
    )
    spec = PipelineSpec(topics, base.fields, base.metrics)
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=5, events=6_000, seed=11))
    assert {f["type"] for f in incident["faults"]} == set(FAULT_TYPES)
    lo, hi = incident["recovery_range"]["from_ms"], incident["recovery_range"]["to_ms"]

    report = recover(spec, lo, hi, out_dir=tmp_path / "fx", settings=kafka_settings, incident=incident["incident"])

    # every predicted discrepancy found, nothing else (recall and precision 100%)
    predicted = discrepancy_frame(incident["predicted"]["results"]).sort("metric", "key", "window")
    found = report.comparison.filter(pl.col("status") != "ok").select(predicted.columns).sort("metric", "key", "window")
    assert predicted.height > 0
    assert_frame_equal(found, predicted)
    assert report.fixset.counts["missing"] == incident["predicted"]["counts"]["missing"]

    # dropped events are reported as gaps (lost upstream), malformed ones are not counted as lost
    dropped = {(e["key"], e["seq"]) for f in incident["faults"] if f["type"] == "drop" for e in f["events"]}
    gaps = report.truth.events.gaps
    in_gaps = {(k, s) for k, a, b in gaps.select("key", "from_seq", "to_seq").rows() for s in range(a, b + 1)}
    assert dropped and dropped <= in_gaps
    assert report.truth.events.counts()["lost_events"] == len(dropped)
    malformed = sum(f["count"] for f in incident["faults"] if f["type"] == "malformed")
    assert report.truth.quarantine.height == malformed

    # approve, publish, then apply what an independent read_committed consumer sees to the original outputs
    approve(tmp_path / "fx", "incident-reviewer", kafka_settings)
    assert publish(tmp_path / "fx", kafka_settings).verified
    committed = read_all(kafka_settings, spec.topics.corrections, "read_committed")
    values = [json.loads(r.value) for r in committed]
    assert {v["digest"] for v in values} == {report.fixset.digest}
    corrections = conform(pl.DataFrame(values), CORRECTIONS)
    assert corrections.height == report.fixset.corrections.height > 0
    originals, bad = decode_outputs(as_records(read_all(kafka_settings, spec.topics.output, "read_committed")))
    assert bad.height == 0
    applied = trim_to_range(apply_corrections(originals, corrections), spec, lo, hi).sort("metric", "key", "window")
    truth = report.truth.results.sort("metric", "key", "window")
    assert_frame_equal(applied, truth, check_exact=False, rel_tol=DEFAULT_REL_TOL, abs_tol=DEFAULT_ABS_TOL)
