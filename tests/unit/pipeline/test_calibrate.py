"""check-spec: a spec that reproduces the pipeline passes on a clean range; a wrong window fails, with the events
behind the first mismatches shown."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from recovery.errors import ConfigError
from recovery.pipeline.calibrate import check_spec
from recovery.source import FileSource
from recovery.spec import MetricSpec

from .test_own_layouts import MINUTE, SPEC, START, _archive, _iso, _orders, _truth


def _clean_run(tmp_path: Path) -> tuple[FileSource, FileSource, dict]:  # type: ignore[type-arg]
    orders = _orders(random.Random(5))
    truth = _truth(orders)
    raw = [
        (0, i, round(o["placed_at"] * 1000), None, json.dumps(o).encode())
        for i, o in enumerate(sorted(orders, key=lambda o: o["placed_at"]))
    ]
    outputs = []
    for (key, start), (amount, items) in sorted(truth.items()):
        merchant, region = key.split("|")
        doc = {"merchant": merchant, "region": region, "window": {"end": _iso(start + MINUTE)}}
        doc.update(avg_amount=amount, avg_items=items)
        outputs.append((0, len(outputs), start + MINUTE, key.encode(), json.dumps(doc).encode()))
    raw_src = FileSource(_archive(raw, tmp_path / "raw.parquet"))
    out_src = FileSource(_archive(outputs, tmp_path / "out.parquet"))
    return raw_src, out_src, truth


@pytest.mark.timeout(60)
def test_a_spec_that_reproduces_the_pipeline_passes(tmp_path: Path) -> None:
    raw, out, truth = _clean_run(tmp_path)
    found = check_spec(SPEC, START, START + 10 * MINUTE, raw_source=raw, outputs_source=out)
    assert found.passed
    assert [(s.metric, s.results, s.ok) for s in found.shares] == [
        ("avg_amount", len(truth), len(truth)),
        ("avg_items", len(truth), len(truth)),
    ]
    assert found.mismatches == []


@pytest.mark.timeout(60)
def test_a_spec_with_a_wrong_window_fails_and_shows_the_events_behind(tmp_path: Path) -> None:
    raw, out, _ = _clean_run(tmp_path)
    wrong = replace(
        SPEC,
        metrics=(
            MetricSpec("avg_amount", "mean", field="amount", window_ms=MINUTE, hop_ms=MINUTE, grace_ms=0),
            MetricSpec("avg_items", "mean", field="items", window_ms=2 * MINUTE, hop_ms=2 * MINUTE),
        ),
    )
    found = check_spec(wrong, START, START + 10 * MINUTE, raw_source=raw, outputs_source=out, show=3)
    assert not found.passed
    amount, items = found.shares
    assert amount.ok == amount.results
    assert items.ok_pct < 99.9
    assert len(found.mismatches) == 3
    assert any(m.corrected is not None for m in found.mismatches)
    for m in found.mismatches:
        if m.corrected is not None:  # recomputed over a 2-minute window: its events span both minutes
            assert m.events.height > 0
            assert m.events.get_column("ts").min() >= m.window
            assert m.events.get_column("ts").max() < m.window + 2 * MINUTE
    assert found.lines()[-1].startswith("spec check FAILED")


@pytest.mark.timeout(60)
def test_events_behind_a_mismatch_of_an_aggregation_form_metric_no_longer_fail_an_assertion(tmp_path: Path) -> None:
    """check-spec stopped with an AssertionError (window_ms is None) on a mismatch of a metric written with
    aggregation and size_ms."""
    raw, out, _ = _clean_run(tmp_path)
    wrong = replace(
        SPEC,
        metrics=(
            MetricSpec("avg_amount", aggregation="mean", field="amount", window="tumbling", size_ms=MINUTE),
            MetricSpec("avg_items", aggregation="mean", field="items", window="tumbling", size_ms=2 * MINUTE),
        ),
    )
    found = check_spec(wrong, START, START + 10 * MINUTE, raw_source=raw, outputs_source=out, show=5)
    assert not found.passed
    shown = [m for m in found.mismatches if m.corrected is not None]
    assert shown
    for m in shown:
        assert m.events.height > 0
        assert m.events.get_column("ts").min() >= m.window
        assert m.events.get_column("ts").max() < m.window + 2 * MINUTE


def test_a_threshold_outside_a_percentage_is_refused(tmp_path: Path) -> None:
    raw, out, _ = _clean_run(tmp_path)
    with pytest.raises(ConfigError, match="percentage"):
        check_spec(SPEC, START, START + MINUTE, raw_source=raw, outputs_source=out, threshold_pct=0)
