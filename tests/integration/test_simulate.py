"""The simulator on the real broker: every fault shows the symptom its incident file predicts."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recovery.config import KafkaSettings
from recovery.metrics.recompute import recompute
from recovery.pipeline.compare import compare
from recovery.records.events import parse_event
from recovery.records.outputs import decode_outputs
from recovery.sim.simulate import discrepancy_frame, read_incident, simulate
from recovery.sim.ticks import MALFORMED_KINDS, SimulationParams
from recovery.spec import PipelineSpec, load_spec

from .readback import read_topic, valid_events, write_spec

PARAMS = SimulationParams(symbols=4, events=4000, seed=21, rate_per_s=4.0)
KEY = ["key", "metric", "window"]


@dataclass
class Incident:
    data: dict[str, Any]
    spec: PipelineSpec
    spec_path: Path
    raw: pl.DataFrame  # RECORDS of the raw topic
    actual: pl.DataFrame  # COMPARISON of the output topic with truth, in the recovery range

    def fault(self, fault_id: str) -> dict[str, Any]:
        return next(f for f in self.data["faults"] if f["id"] == fault_id)

    def predicted(self, fault_id: str | None = None) -> pl.DataFrame:
        source = self.data["predicted"] if fault_id is None else self.fault(fault_id)["predicted"]
        return discrepancy_frame(source["results"])

    def actual_status(self, status: str) -> set[tuple[str, str, int]]:
        return set(self.actual.filter(pl.col("status") == status).select(KEY).rows())

    def raw_at(self, partition: int, offset: int) -> dict[str, Any]:
        return self.raw.filter((pl.col("partition") == partition) & (pl.col("offset") == offset)).row(0, named=True)


@pytest.fixture(scope="module")
def incident(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    settings = KafkaSettings.from_env({"bootstrap_servers": kafka_bootstrap})
    directory = tmp_path_factory.mktemp("sim")
    spec_path = write_spec(directory, f"sim-{uuid.uuid4().hex[:8]}", partitions=3)
    spec = load_spec(spec_path)
    data = simulate(settings, spec, PARAMS, out=directory / "incident.json")
    raw = read_topic(settings, spec.topics.raw)
    outputs, quarantine = decode_outputs(read_topic(settings, spec.topics.output))
    assert quarantine.height == 0
    r = data["recovery_range"]
    truth = recompute(valid_events(raw, spec), spec, from_ms=r["from_ms"], to_ms=r["to_ms"])
    actual = compare(outputs, truth, spec, from_ms=r["from_ms"], to_ms=r["to_ms"])
    yield Incident(data, spec, spec_path, raw, actual)


def test_output_topic_shows_exactly_the_predicted_discrepancies(incident: Incident) -> None:
    actual = incident.actual.filter(pl.col("status") != "ok").select(discrepancy_frame([]).columns)
    expected = incident.predicted()
    assert expected.height > 0
    assert actual.sort(KEY).to_dicts() == expected.sort(KEY).to_dicts()
    assert incident.data["predicted"]["outputs"] == sum(
        int(e) - int(s)
        for s, e in zip(
            incident.data["run"]["output_offsets"]["start"].values(),
            incident.data["run"]["output_offsets"]["end"].values(),
            strict=True,
        )
    )
    workers = incident.data["run"]["workers"]
    assert [w["exit_code"] for w in workers] == [-9, -9, 0], "two SIGKILLed runs, then one to the end"


def test_crash_commit_before_loses_exactly_the_predicted_outputs(incident: Incident) -> None:
    fault = incident.fault("crash-commit-before")
    hook = fault["hook"]
    predicted = incident.predicted("crash-commit-before")
    missing = set(predicted.filter(pl.col("status") == "missing").select(KEY).rows())
    # every tick of the span (committed, never processed) lost its sma output; windows followed suit
    span = incident.raw.filter(
        (pl.col("partition") == hook["partition"])
        & pl.col("offset").is_between(hook["offset"], hook["offset"] + hook["span"] - 1)
    )
    events = [parse_event(v, incident.spec.fields) for v in span.get_column("value").to_list()]
    lost_sma = {(e["key"], "sma_5", e["seq"]) for e in events if isinstance(e, dict)}
    assert len(lost_sma) == fault["count"] == hook["span"]
    assert {k for k in missing if k[1] == "sma_5"} == lost_sma
    assert missing <= incident.actual_status("missing")


def test_crash_commit_after_publishes_the_span_twice(incident: Incident) -> None:
    predicted = incident.predicted("crash-commit-after")
    duplicated = predicted.filter(pl.col("status") == "duplicate")
    assert duplicated.height > 0 and (duplicated["copies"] == 2).all()
    actual = incident.actual.filter(pl.col("status") == "duplicate")
    assert set(duplicated.select(KEY).rows()) <= set(actual.select(KEY).rows())


def test_duplicates_are_in_the_raw_topic_where_predicted(incident: Incident) -> None:
    events = incident.fault("duplicate")["events"]
    assert events
    for e in events:
        partition, offsets = e["partition"], e["offsets"]
        assert len(offsets) == 2
        first, second = (incident.raw_at(partition, o) for o in offsets)
        assert first["value"] == second["value"]
        assert json.loads(first["value"])["event_id"] == e["event_id"]
    assert incident.fault("duplicate")["predicted"]["counts"]["wrong"] > 0


def test_late_events_arrive_beyond_grace_and_their_windows_differ_from_truth(incident: Incident) -> None:
    fault = incident.fault("late")
    for e in fault["events"]:
        record = incident.raw_at(e["partition"], e["offsets"][0])
        assert record["timestamp_ms"] - e["ts"] == e["delay_ms"] > 5_000
    predicted = incident.predicted("late")
    windows = predicted.filter(pl.col("metric").is_in(["mean_1m", "vwap_5m"]))
    assert windows.height > 0
    assert set(windows.select(KEY).rows()) <= incident.actual_status("wrong") | incident.actual_status("missing")


def test_malformed_records_carry_the_predicted_reasons(incident: Incident) -> None:
    fault = incident.fault("malformed")
    assert {e["kind"] for e in fault["events"]} == set(MALFORMED_KINDS)
    for e in fault["events"]:
        value = incident.raw_at(e["partition"], e["offsets"][0])["value"]
        assert parse_event(value, incident.spec.fields) == e["reason"]
    live = incident.data["predicted"]["live"]
    assert live["malformed_total"] == len(fault["events"])
    assert fault["predicted"]["counts"]["missing"] == fault["predicted"]["counts"]["wrong"] == 0


def test_dropped_events_leave_seq_gaps_and_reordered_events_arrive_out_of_order(incident: Incident) -> None:
    events = valid_events(incident.raw, incident.spec)
    present = set(events.select("key", "seq").rows())
    dropped = incident.fault("drop")["events"]
    assert dropped and not any((e["key"], e["seq"]) in present for e in dropped)
    assert all((e["key"], e["seq"] - 1) in present or e["seq"] == 1 for e in dropped[:1])
    order = events.sort("partition", "offset").group_by("key", maintain_order=True).agg("seq")
    arrival = {k: seqs for k, seqs in order.rows()}
    for e in incident.fault("reorder")["events"]:
        seqs = arrival[e["key"]]
        assert any(s > e["seq"] for s in seqs[: seqs.index(e["seq"])]), "a later tick arrived first"
    assert incident.fault("reorder")["predicted"]["counts"]["wrong"] > 0


def test_bad_deploys_make_results_in_their_range_wrong(incident: Incident) -> None:
    for fault_id in ("bad-deploy-short-window", "bad-deploy-cents"):
        wrong = incident.predicted(fault_id).filter(pl.col("status") == "wrong")
        assert wrong.height > 0
        assert set(wrong.select(KEY).rows()) <= incident.actual_status("wrong") | incident.actual_status("missing")
    short = incident.predicted("bad-deploy-short-window")
    assert set(short["metric"]) == {"sma_5"}, "one event short touches the sma only"


def test_same_seed_same_incident_and_the_cli_loads_raw_events_only(
    incident: Incident, kafka_bootstrap: str, tmp_path: Path
) -> None:
    spec_path = write_spec(tmp_path, f"sim2-{uuid.uuid4().hex[:8]}", partitions=3)
    out = tmp_path / "again.json"
    args = ["--symbols", "4", "--events", "4000", "--seed", "21", "--rate", "4", "--out", str(out), "--no-live"]
    proc = subprocess.run(
        [sys.executable, "-m", "recovery", "simulate", "--spec", str(spec_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = read_incident(out)
    assert "predicted" not in again and "workers" not in again["run"]
    original = incident.data
    for part in ("seed", "params", "symbols", "partition_of_key", "time_range", "raw_offsets", "counts"):
        assert again[part] == original[part], part
    strip = [{k: v for k, v in f.items() if k != "predicted"} for f in original["faults"]]
    assert again["faults"] == strip
