"""`recovery export` reads the bounds `recover` reads: a recovery from the archives has the digest of the
recovery from Kafka, and an archive cut shorter than that is refused instead of giving another digest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from recovery.cli import main
from recovery.config import KafkaSettings
from recovery.sim.simulate import simulate
from recovery.sim.ticks import SimulationParams
from recovery.spec import PipelineSpec, TopicsSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]


def spec_toml(spec: PipelineSpec) -> str:
    t = spec.topics
    lines = ["[topics]", *(f'{k} = "{getattr(t, k)}"' for k in ("raw", "output", "corrections", "audit"))]
    lines.append(f"partitions = {t.partitions}")
    for m in spec.to_dict()["metrics"]:
        lines.append("[[metrics]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in m.items() if v is not None)
    return "\n".join(lines) + "\n"


def manifest(fixset: Path) -> dict:
    return json.loads((fixset / "manifest.json").read_text())


def exported(directory: Path) -> int:
    return int(json.loads((directory / "_replay.json").read_text())["records"])


@pytest.fixture
def incident_spec(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[PipelineSpec, list[str]]:
    """A simulated incident on topics of this test; the spec is ./pipeline.toml of the working directory."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    base = load_spec(ROOT / "pipeline.toml")
    name = unique_name("exp")
    topics = TopicsSpec(f"{name}.raw", f"{name}.out", f"{name}.corr", f"{name}.audit", partitions=3)
    spec = PipelineSpec(topics, base.fields, base.metrics)
    incident = simulate(kafka_settings, spec, SimulationParams(symbols=4, events=3_000, seed=5))
    lo = incident["recovery_range"]["from_ms"]
    # the events cover [lo + 5 min, lo + 10 min): a minute inside them, with a slack of one minute, so records
    # follow the range beyond the slack and the bounds of each read matter
    (tmp_path / "pipeline.toml").write_text(spec_toml(spec))
    monkeypatch.chdir(tmp_path)
    return spec, ["--from", str(lo + 360_000), "--to", str(lo + 420_000), "--slack-ms", "60000", "--quiet"]


def test_a_recovery_from_the_exports_has_the_digest_of_the_recovery_from_kafka(
    incident_spec: tuple[PipelineSpec, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, rng = incident_spec
    assert main(["recover", "--spec", "pipeline.toml", *rng, "--out", "from-kafka"]) == 0
    assert main(["export", *rng, "--out", "raw"]) == 0  # the spec's raw topic, with its lookback
    assert main(["export", "--topic", spec.topics.output, *rng, "--out", "outputs"]) == 0
    from_files = ["--source-raw", "raw", "--source-outputs", "outputs/*.parquet"]
    assert main(["recover", "--spec", "pipeline.toml", *rng, *from_files, "--out", "from-files"]) == 0
    kafka, files = manifest(tmp_path / "from-kafka"), manifest(tmp_path / "from-files")
    assert kafka["content"]["corrections"]["total"] > 0
    assert files["content"]["sources"] == kafka["content"]["sources"]
    assert files["digest"] == kafka["digest"]
    # what the outputs' export read is exactly what the recovery from Kafka read of the output topic
    assert exported(tmp_path / "outputs") == sum(n for _, _, n in kafka["content"]["sources"]["outputs"].values())

    # the same export cut at --to plus --slack-ms only (no spec): fewer records, and a recovery refuses it
    (tmp_path / "pipeline.toml").rename(tmp_path / "spec.toml")
    capsys.readouterr()
    assert main(["export", "--topic", spec.topics.output, *rng, "--out", "short"]) == 0
    assert "not a topic of a spec" in capsys.readouterr().err
    assert exported(tmp_path / "short") < exported(tmp_path / "outputs")
    short = ["--source-raw", "raw", "--source-outputs", "short"]
    assert main(["recover", "--spec", "spec.toml", *rng, *short, "--out", "from-short"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds its records up to Kafka time" in err and "--spec" in err, err
    assert not (tmp_path / "from-short").exists()
