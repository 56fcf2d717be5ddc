from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recovery.config import PROJECT_ROOT
from recovery.errors import SpecError
from recovery.spec import PipelineSpec, load_spec


def spec_dict(**metric: Any) -> dict[str, Any]:
    base = {"name": "m", "kind": "mean", "window_ms": 60_000}
    return {"metrics": [base | metric]}


def test_the_committed_pipeline_toml_is_valid() -> None:
    spec = load_spec(PROJECT_ROOT / "pipeline.toml")
    assert spec.metric_names == ["sma_5", "mean_1m", "vwap_5m"]
    assert spec.metric("vwap_5m").hop_ms == 60_000
    assert spec.metric("mean_1m").hop_ms == 60_000  # tumbling: hop defaults to the window
    assert spec.lookback_events == 4
    assert spec.lookback_ms == 305_000


def test_round_trip_through_dict_keeps_spec_and_digest() -> None:
    spec = load_spec(PROJECT_ROOT / "pipeline.toml")
    again = PipelineSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert again.metrics == spec.metrics
    assert again.digest() == spec.digest()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"metrics": [{"name": "m", "kind": "sma", "n": 5}], "extra": 1}, r"unknown key\(s\) extra in the spec"),
        ({"metrics": [{"name": "m", "kind": "sma", "n": 5}], "topics": {"row": "x"}}, r"unknown key\(s\) row"),
        ({"metrics": [{"name": "m", "kind": "sma", "n": 5}], "fields": {"timestamp": "t"}}, r"unknown key"),
        (spec_dict(windw_ms=5), r"unknown key\(s\) windw_ms in \[\[metrics\]\] #1"),
        (spec_dict(grace_ms=-1), "grace_ms must be >= 0"),
        (spec_dict(hop_ms=120_000), r"hop_ms \(120000\) > window_ms \(60000\)"),
        (spec_dict(hop_ms=0), "hop_ms must be >= 1"),
        (spec_dict(window_ms=0), "needs window_ms >= 1"),
        (spec_dict(kind="median"), "unknown kind 'median'"),
        (spec_dict(field="size"), "field must be one of price, volume, got .size."),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 0}]}, r"sma needs n >= 1"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": True}]}, r"sma needs n >= 1"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 3, "window_ms": 5}]}, "sma is count-based"),
        ({"metrics": [{"name": "s", "kind": "sma"}]}, "sma needs n"),
        ({"metrics": [{"kind": "sma", "n": 2}]}, "needs a name and a kind"),
        ({"metrics": []}, "defines no"),
        ({"metrics": [{"name": "a|b", "kind": "sma", "n": 2}]}, "without '\\|'"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 2}] * 2}, "must be unique"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 2}], "topics": {"raw": "t", "output": "t"}}, "different"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 2}], "topics": {"partitions": 0}}, "partitions"),
        ({"metrics": [{"name": "s", "kind": "sma", "n": 2}], "fields": {"id": "x", "key": "x"}}, "same JSON field"),
    ],
)
def test_invalid_specs_are_clear_errors(data: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        PipelineSpec.from_dict(data)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[metrics]]\nname = "m"\nkind = "mean"\nwindow_ms = 10\ngrace_ms = -5\n')
    with pytest.raises(SpecError, match=r"bad\.toml: metric 'm': grace_ms must be >= 0"):
        load_spec(path)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "x.toml"
    bad.write_text("[[metrics]\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
