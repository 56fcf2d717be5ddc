"""The manifest sections built from a run's plain facts."""

from __future__ import annotations

import polars as pl

from recovery.fixes.manifest import RunFacts, parameters, provenance, quality
from recovery.frames import QUARANTINE
from recovery.spec import MetricSpec, PipelineSpec


def _facts() -> RunFacts:
    quarantine = pl.DataFrame(
        {
            "partition": [0, 1, 1],
            "offset": [3, 4, 9],
            "timestamp_ms": [1, 2, 3],
            "key": ["a", None, "b"],
            "value": ["{", "", "{}"],
            "reason": ["bad JSON: x", "empty value: no bytes", "bad JSON: y"],
        },
        schema=QUARANTINE,
    )
    return RunFacts(
        event_counts={"events": 10, "duplicates": 2},
        records=15,
        quarantine=quarantine,
        outputs=7,
        outputs_quarantined=1,
        raw_source={"topic": "ticks"},
        outputs_source={"topic": "ticks.sma"},
        raw_end_offsets={0: 10, 1: 5},
        outputs_end_offsets={0: 7},
        engine="by-partition",
        timings_s={"total": 1.23456},
    )


def test_quality_counts_records_and_groups_quarantine_reasons_by_category() -> None:
    assert quality(_facts()) == {
        "events": 10,
        "duplicates": 2,
        "records": 15,
        "quarantined": 3,
        "quarantine_reasons": {"bad JSON": 2, "empty value": 1},
        "outputs": 7,
        "outputs_quarantined": 1,
    }


def test_provenance_names_partitions_as_strings_and_rounds_timings() -> None:
    found = provenance(_facts())
    assert found["snapshots"] == {"raw_end_offsets": {"0": 10, "1": 5}, "outputs_end_offsets": {"0": 7}}
    assert found["timings_s"] == {"total": 1.235}
    assert found["sources"] == {"raw": {"topic": "ticks"}, "outputs": {"topic": "ticks.sma"}}
    assert found["engine"] == "by-partition"


def test_parameters_carry_the_lookback_the_spec_needs() -> None:
    spec = PipelineSpec(
        metrics=(
            MetricSpec(name="s", kind="sma", n=4),
            MetricSpec(name="m", kind="mean", window_ms=60_000, grace_ms=5_000),
        )
    )
    found = parameters(spec, abs_tol=1e-9, rel_tol=0.0, slack_ms=100, emulate_grace=False)
    assert found["lookback_events"] == 3
    assert found["lookback_ms"] == 65_000
    assert (found["abs_tol"], found["rel_tol"], found["slack_ms"], found["emulate_grace"]) == (1e-9, 0.0, 100, False)
