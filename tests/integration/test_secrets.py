"""Secrets never leave memory: the whole flow over SASL with a known password, and a search for it in every
artifact (fix set files, manifest, approval, executed notebook, HTML report, run record, index, audit and
correction records, CLI output, logs and error messages).

Uses a broker of its own with a SASL listener (the ``cluster`` fixture of test_security.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recovery.config import PROJECT_ROOT
from recovery.kafka.topics import ensure_topic
from recovery.metrics.recompute import recompute
from recovery.notebook import runbook
from recovery.records.validate import validate
from recovery.spec import load_spec
from tests.integration.engine_helpers import BASE_MS, produce, publish_results, read_all, ticks
from tests.integration.readback import read_topic, write_spec
from tests.integration.test_security import SaslCluster, cluster  # noqa: F401  (module-scoped fixture)

pytestmark = pytest.mark.timeout(600)
USER = "admin"


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recovery", *args],
        cwd=cwd,
        env={**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_password_appears_in_no_artifact(
    cluster: SaslCluster,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = cluster.passwords[USER]
    env = cluster.env(USER)
    settings = cluster.settings(USER)
    spec_path = write_spec(tmp_path, f"sec-s-{os.urandom(4).hex()}", partitions=2)
    spec = load_spec(spec_path)
    for topic in (spec.topics.raw, spec.topics.output):
        ensure_topic(settings, topic, 2)
    produce(settings, spec.topics.raw, ticks(900, ["A", "B", "C"]))
    events, _ = validate(read_topic(settings, spec.topics.raw), spec)
    truth = recompute(events, spec)
    publish_results(settings, spec.topics.output, truth.filter(truth.get_column("window") % 7 != 0))  # some missing

    rng = ["--from", str(BASE_MS), "--to", str(BASE_MS + 60_000)]
    outputs: list[str] = []
    runs = [
        run_cli(env, tmp_path, "recover", "--spec", str(spec_path), *rng, "--out", "fx", "--quiet"),
        run_cli(env, tmp_path, "approve", "fx", "--reviewer", "sec"),
        run_cli(env, tmp_path, "kafka", "status"),
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]
    failing = [  # errors after a successful login: a bad range, a missing fix set, a bad broker address
        run_cli(env, tmp_path, "recover", "--spec", str(spec_path), "--from", rng[3], "--to", rng[1], "--out", "x"),
        run_cli(env, tmp_path, "publish", "nothing-here"),
        run_cli(
            {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFKA_REQUEST_TIMEOUT_MS": "2000"},
            tmp_path,
            "kafka",
            "status",
        ),
    ]
    for proc in failing:
        assert proc.returncode == 2, proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]

    digest = (tmp_path / "fx" / "manifest.json").read_text().split('"digest": "')[1].split('"')[0]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    record = runbook.run_notebook(
        "03_publish_fixes",
        {"fixset": str(tmp_path / "fx"), "approved_digest": digest, "reviewer": "sec", "dry_run": False},
        out_dir=tmp_path / "reports",
        run_id="publish",
        cwd=tmp_path,
    )
    assert record.status == "ok", record.error
    assert record.html and record.ipynb

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"manifest.json", "approval.json", "run.json", "index.html", record.html, record.ipynb} <= names
    leaked = [str(p.relative_to(tmp_path)) for p in files if password.encode() in p.read_bytes()]
    assert leaked == []
    assert not any(password in text for text in outputs)
    kafka_values = [r.value or b"" for t in (spec.topics.audit, spec.topics.corrections) for r in read_all(settings, t)]
    assert len(kafka_values) > 2  # approve, publish-begin, publish and the corrections
    assert not any(password.encode() in v for v in kafka_values)
