"""Bad parameters and state from the command line: each a one-line error (exit 2) that says what to do, and
nothing written (no fix set directory, no record on the corrections topic).

Complements tests/integration/test_recover_cli.py (ranges of `recover`, missing raw topic, existing fix set)
and tests/integration/test_publish.py (the same refusals of `publish` through the API).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recovery.cli import main
from recovery.config import KafkaSettings
from recovery.errors import TopicError
from recovery.fixes.approval import approve
from recovery.fixes.fixset import APPROVAL_FILE
from recovery.kafka.topics import ensure_topic, offsets, partitions_for
from recovery.metrics.recompute import recompute
from recovery.records.validate import validate
from recovery.spec import MetricSpec, PipelineSpec
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, publish_results, ticks
from tests.integration.readback import read_topic
from tests.integration.test_publish import write_fix
from tests.integration.test_recover_cli import one_line_error, write_spec

RANGE = ["--from", str(BASE_MS), "--to", str(BASE_MS + 120_000)]


@pytest.fixture
def spec(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> PipelineSpec:
    """A spec whose raw topic holds ticks and whose output topic holds their true results."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    found = make_spec(topic_factory)
    produce(kafka_settings, found.topics.raw, ticks(1_500, ["A", "B", "C"]))
    events, _ = validate(read_topic(kafka_settings, found.topics.raw), found)
    publish_results(kafka_settings, found.topics.output, recompute(events, found))
    return found


def corrections_written(settings: KafkaSettings, spec: PipelineSpec) -> int:
    try:
        partitions_for(settings, spec.topics.corrections)
    except TopicError:
        return 0
    return sum(offsets(settings, spec.topics.corrections).end_offsets.values())


@pytest.mark.parametrize("verb", ["recover", "compare"])
def test_metric_names_not_matching_the_output_topic_are_refused(
    spec: PipelineSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    renamed = dataclasses.replace(
        spec, metrics=tuple(dataclasses.replace(m, name=m.name.replace("_", "")) for m in spec.metrics)
    )
    path = write_spec(renamed, tmp_path / "renamed.toml")
    out = tmp_path / "fx"
    extra = ["--out", str(out)] if verb == "recover" else []
    err = one_line_error(capsys, [verb, "--spec", str(path), *RANGE, *extra, "--quiet"])
    assert "metrics the spec does not define (mean_1m, sma_5, vwap_2m)" in err and "spec's mean1m" in err
    assert "make the metric names in the spec match" in err
    assert not out.exists()
    # the spec as written works, and a spec with a subset of the metrics is not a mismatch
    subset = dataclasses.replace(spec, metrics=(MetricSpec("sma_5", "sma", n=5),))
    argv = ["recover", "--spec", str(write_spec(subset, tmp_path / "subset.toml")), *RANGE, "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ok")]) == 0


def test_a_missing_output_topic_is_a_one_line_error(
    spec: PipelineSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(
        dataclasses.replace(spec, topics=dataclasses.replace(spec.topics, output="nope-out")), tmp_path / "s.toml"
    )
    out = tmp_path / "fx"
    err = one_line_error(capsys, ["recover", "--spec", str(path), *RANGE, "--out", str(out), "--quiet"])
    assert "nope-out" in err
    assert not out.exists()


@pytest.mark.parametrize("verb", ["recompute", "compare"])
@pytest.mark.parametrize(
    ("from_", "to", "message"),
    [
        (str(BASE_MS + 60_000), str(BASE_MS), "is after --to"),
        (str(BASE_MS), str(BASE_MS), "is empty"),
        ("2999-01-01T00:00", "2999-01-02T00:00", "starts in the future"),
        ("2025-01-01T00:00", "2025-01-01T01:00", "no raw events in"),
    ],
)
def test_bad_ranges_of_recompute_and_compare_write_nothing(
    spec: PipelineSpec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    from_: str,
    to: str,
    message: str,
) -> None:
    path = write_spec(spec, tmp_path / "spec.toml")
    out = tmp_path / "out.parquet"
    err = one_line_error(capsys, [verb, "--spec", str(path), "--from", from_, "--to", to, "--out", str(out), "--quiet"])
    assert message in err
    assert not out.exists()


@pytest.fixture
def approved(spec: PipelineSpec, kafka_settings: KafkaSettings, tmp_path: Path) -> Path:
    directory = tmp_path / "fx"
    write_fix(spec, directory, n=30)
    approve(directory, "carol", kafka_settings)
    return directory


def test_publishing_an_edited_fix_set_is_refused_and_writes_nothing(
    approved: Path, spec: PipelineSpec, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    corrections = pl.read_parquet(approved / "corrections.parquet")
    corrections.with_columns(pl.col("value") + 1).write_parquet(approved / "corrections.parquet")
    err = one_line_error(capsys, ["publish", str(approved)])
    assert "does not match its digest" in err
    assert corrections_written(kafka_settings, spec) == 0


def test_publishing_with_an_edited_approval_is_refused_and_writes_nothing(
    approved: Path, spec: PipelineSpec, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    approval = json.loads((approved / APPROVAL_FILE).read_text())
    (approved / APPROVAL_FILE).write_text(json.dumps({**approval, "reviewer": "mallory"}))
    err = one_line_error(capsys, ["publish", str(approved)])
    assert "not in the audit topic" in err and "recovery approve" in err
    assert corrections_written(kafka_settings, spec) == 0


def test_an_uncompacted_corrections_topic_is_refused_and_gets_nothing(
    approved: Path, spec: PipelineSpec, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_topic(kafka_settings, spec.topics.corrections, 3, {"cleanup.policy": "delete"})
    err = one_line_error(capsys, ["publish", str(approved)])
    assert "not compact" in err and "cleanup.policy=compact" in err
    assert corrections_written(kafka_settings, spec) == 0
