"""The recovery verbs from the command line: one-line errors that say what to do, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recovery.cli import main
from recovery.config import KafkaSettings
from recovery.frames import COMPARISON, RESULTS
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, ticks


def write_spec(spec: PipelineSpec, path: Path) -> Path:
    t = spec.topics
    lines = ["[topics]", *(f'{k} = "{getattr(t, k)}"' for k in ("raw", "output", "corrections", "audit"))]
    for m in spec.to_dict()["metrics"]:
        lines.append("[[metrics]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in m.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def spec_file(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    spec = make_spec(topic_factory)
    produce(kafka_settings, spec.topics.raw, ticks(1_500, ["A", "B", "C"]))
    return write_spec(spec, tmp_path / "spec.toml")


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("recovery: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("from_", "to", "message"),
    [
        (str(BASE_MS + 60_000), str(BASE_MS), "is after --to"),
        (str(BASE_MS), str(BASE_MS), "is empty"),
        ("2999-01-01T00:00", "2999-01-02T00:00", "starts in the future"),
        ("yesterday", str(BASE_MS), "neither ISO-8601 nor epoch milliseconds"),
        ("1767225600", "1767229200", "looks like epoch seconds"),
        ("2025-01-01T00:00", "2025-01-01T01:00", "no raw events in"),
    ],
)
def test_bad_ranges_are_one_line_errors_and_write_nothing(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], from_: str, to: str, message: str
) -> None:
    out = tmp_path / "fx"
    argv = ["recover", "--spec", str(spec_file), "--from", from_, "--to", to, "--out", str(out), "--quiet"]
    assert message in one_line_error(capsys, argv)
    assert not out.exists()


def test_missing_topic_and_unreachable_broker_are_one_line_errors(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.toml"
    missing.write_text(spec_file.read_text().replace('raw = "', 'raw = "nope-', 1))
    out = tmp_path / "fx"
    argv = ["recover", "--from", str(BASE_MS), "--to", str(BASE_MS + 60_000), "--out", str(out), "--quiet"]
    err = one_line_error(capsys, [*argv, "--spec", str(missing)])
    assert "does not exist" in err and "nope-" in err
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("KAFKA_REQUEST_TIMEOUT_MS", "2000")
    err = one_line_error(capsys, [*argv, "--spec", str(spec_file)])
    assert "127.0.0.1:1" in err and "make kafka-up" in err
    assert not out.exists()


def test_an_existing_fix_set_is_not_overwritten(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["recover", "--spec", str(spec_file), "--from", str(BASE_MS), "--to", str(BASE_MS + 60_000)]
    assert "already exists" in one_line_error(capsys, [*argv, "--out", str(out), "--quiet"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_recompute_and_compare_verbs_write_their_frames(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = ["--from", str(BASE_MS + 30_000), "--to", str(BASE_MS + 90_000)]
    assert main(["recompute", "--spec", str(spec_file), *rng, "--out", str(tmp_path / "t.parquet"), "--quiet"]) == 0
    truth = pl.read_parquet(tmp_path / "t.parquet")
    assert truth.schema == RESULTS and truth.height > 0
    argv = ["compare", "--spec", str(spec_file), *rng, "--truth", str(tmp_path / "t.parquet")]
    assert main([*argv, "--out", str(tmp_path / "c.parquet"), "--quiet"]) == 0
    comparison = pl.read_parquet(tmp_path / "c.parquet")
    assert comparison.schema == COMPARISON
    assert comparison.get_column("status").unique().to_list() == ["missing"]  # nothing was ever published
    assert f"missing {truth.height:,}" in capsys.readouterr().out


def test_compare_without_truth_recomputes_it_and_finds_every_unpublished_result_missing(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = ["--from", str(BASE_MS + 30_000), "--to", str(BASE_MS + 90_000)]
    assert main(["recompute", "--spec", str(spec_file), *rng, "--out", str(tmp_path / "t.parquet"), "--quiet"]) == 0
    assert main(["compare", "--spec", str(spec_file), *rng, "--out", str(tmp_path / "c.parquet"), "--quiet"]) == 0
    truth = pl.read_parquet(tmp_path / "t.parquet")
    comparison = pl.read_parquet(tmp_path / "c.parquet")
    assert comparison.schema == COMPARISON and truth.height > 0
    assert comparison.get_column("status").unique().to_list() == ["missing"]  # nothing was ever published
    order = ["metric", "key", "window"]
    expected = truth.select(*order, pl.col("value").alias("corrected")).sort(order)
    assert comparison.select(*order, "corrected").sort(order).equals(expected)
    assert f"missing {truth.height:,}" in capsys.readouterr().out
