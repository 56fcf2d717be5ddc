"""The four runbooks, run by `recovery report`'s runner on a simulated incident on the real broker.

One story per module, in the order an on-call engineer follows it: the reconciliation alerts, 01 explores,
02 recomputes and writes the fix set, 03 refuses an unapproved or mismatched digest and publishes the
approved one, the reconciliation is all clear again. Each report is then opened in headless Chromium.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.chunks import DEFAULT_CHUNK_SIZE
from recovery.fixes.fixset import load_fixset
from recovery.fixes.publish import read_corrections
from recovery.kafka.clients import consumer
from recovery.notebook import runbook
from recovery.sim.simulate import simulate
from recovery.sim.ticks import SimulationParams
from recovery.spec import PipelineSpec, load_spec
from tests.browser import Chromium, find_chromium

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(900)]

REVIEWER = "notebook-test"
MAX_REPORT_BYTES = 5_000_000
SPARK_CHUNK = 700  # offsets per Spark task: each partition of the story's incident is read in several chunks


@dataclass
class Story:
    root: Path
    settings: KafkaSettings
    spec: PipelineSpec
    spec_path: Path
    incident_path: Path
    incident: dict[str, Any]
    fixset: Path
    runs: dict[str, runbook.RunRecord] = field(default_factory=dict)

    def run(self, label: str, notebook: str, **parameters: Any) -> runbook.RunRecord:
        record = runbook.run_notebook(notebook, parameters, out_dir=self.root / "reports", run_id=label)
        self.runs[label] = record
        return record

    def report(self, label: str) -> Path:
        record = self.runs[label]
        assert record.html, f"{label} wrote no report: {record.error}"
        return self.root / "reports" / record.run_id / record.html


def spec_toml(spec: PipelineSpec) -> str:
    data = spec.to_dict()
    lines = ["[topics]", *(f"{k} = {json.dumps(v)}" for k, v in data["topics"].items())]
    lines += ["[fields]", *(f"{k} = {json.dumps(v)}" for k, v in data["fields"].items())]
    for metric in data["metrics"]:
        lines += ["[[metrics]]", *(f"{k} = {json.dumps(v)}" for k, v in metric.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def story(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("story")
    settings = KafkaSettings.from_env({"bootstrap_servers": kafka_bootstrap})
    data = load_spec(PROJECT_ROOT / "pipeline.toml").to_dict()
    suffix = uuid.uuid4().hex[:8]
    data["topics"].update(
        raw=f"story-{suffix}", output=f"story-{suffix}.sma", corrections=f"story-{suffix}.fix", audit=f"audit-{suffix}"
    )
    spec_path = root / "pipeline.toml"
    spec_path.write_text(spec_toml(PipelineSpec.from_dict(data)))
    spec = load_spec(spec_path)
    incident_path = root / "incident.json"
    incident = simulate(settings, spec, SimulationParams(symbols=3, events=6000, seed=11), out=incident_path)
    s = Story(root, settings, spec, spec_path, incident_path, incident, root / "fixes" / "story")

    s.run("00-before", "00_reconciliation", spec_path=str(spec_path))
    s.run("01", "01_explore_incident", incident_file=str(incident_path))
    s.run("02", "02_recompute_compare", incident_file=str(incident_path), fixset_dir=str(s.fixset), reviewer=REVIEWER)
    s.run(
        "02-spark",
        "02_recompute_compare",
        incident_file=str(incident_path),
        fixset_dir=str(root / "fixes" / "story-spark"),
        engine="spark",
        spark_master="local[1]",
        spark_chunk_records=SPARK_CHUNK,
    )
    digest = load_fixset(s.fixset).digest
    s.run("03-unapproved", "03_publish_fixes", fixset=str(s.fixset), approved_digest=digest, dry_run=False)
    approve(s.fixset, REVIEWER, settings)
    s.run("03-other-digest", "03_publish_fixes", fixset=str(s.fixset), approved_digest="f" * 64, dry_run=False)
    s.run("03-dry-run", "03_publish_fixes", fixset=str(s.fixset))
    s.run("03", "03_publish_fixes", fixset=str(s.fixset), approved_digest=digest, reviewer=REVIEWER, dry_run=False)
    s.run("00-after", "00_reconciliation", spec_path=str(spec_path))
    yield s


def expected_discrepancies(counts: dict[str, int]) -> int:
    return counts["missing"] + counts["wrong"] + counts["extra"] + counts.get("conflicting", 0)


def test_reconciliation_alerts_on_the_uncorrected_incident(story: Story) -> None:
    run = story.runs["00-before"]
    assert (run.status, run.exit_code) == ("alert", runbook.EXIT_ALERT), run.error
    predicted = story.incident["predicted"]["counts"]
    assert run.results["discrepancies"] == expected_discrepancies(predicted)
    assert run.results["alert"] is True
    assert "Open an incident" in story.report("00-before").read_text()


def test_exploration_finds_what_the_simulator_injected(story: Story) -> None:
    run = story.runs["01"]
    assert run.status == "ok", run.error
    counts = story.incident["counts"]
    assert run.results["quarantined"] == counts["malformed"]
    assert run.results["duplicates"] == counts["duplicated"]
    # dropped events are gaps; so are malformed records whose seq cannot be read
    assert counts["dropped"] <= run.results["missing_events"] <= counts["dropped"] + counts["malformed"]
    assert run.results["late"] > 0 and run.results["out_of_order"] > 0
    assert run.results["republished"] > 0 and run.results["unpublished_sma"] > 0
    html = story.report("01").read_text()
    assert "What looks wrong in" in html and "never reached the raw topic" in html


def test_recompute_compare_counts_equal_the_incident_file(story: Story) -> None:
    run = story.runs["02"]
    assert run.status == "ok", run.error
    predicted = story.incident["predicted"]["counts"]
    found = run.results["counts"]
    assert {s: found[s] for s in predicted} == predicted
    assert run.results["expected_counts_match"] is True
    fixset = load_fixset(story.fixset)
    assert run.results["digest"] == run.digest == fixset.digest
    assert run.results["corrections"] == fixset.corrections.height == expected_discrepancies(found)
    html = story.report("02").read_text()
    assert f"recovery approve {story.fixset} --reviewer {REVIEWER}" in html
    assert f"-p approved_digest {fixset.digest}" in html


@pytest.mark.spark
def test_recompute_compare_on_spark_writes_the_fix_set_of_the_default_engine(story: Story) -> None:
    run, default = story.runs["02-spark"], story.runs["02"]
    assert run.status == "ok", run.error
    assert (run.results["engine"], default.results["engine"]) == ("spark", "by-partition")
    assert run.results["digest"] == default.results["digest"] == load_fixset(story.fixset).digest
    assert run.results["counts"] == default.results["counts"]
    assert run.results["expected_counts_match"] is True
    # the largest partition of the raw topic spans several chunks (keys and duplicates cut by chunk borders)
    with consumer(story.settings) as c:
        partitions = [TopicPartition(story.spec.topics.raw, p) for p in range(story.spec.topics.partitions)]
        assert max(c.end_offsets(partitions).values()) > 2 * SPARK_CHUNK


def test_publish_refuses_an_unapproved_fix_set(story: Story) -> None:
    run = story.runs["03-unapproved"]
    assert (run.status, run.exit_code) == ("failed", runbook.EXIT_FAILED)
    assert run.error and "ApprovalError" in run.error and "is not approved" in run.error


def test_publish_refuses_a_digest_that_is_not_the_fix_sets(story: Story) -> None:
    run = story.runs["03-other-digest"]
    assert run.status == "failed"
    assert run.error and "refusing: approved_digest ffffffffffff..." in run.error


def test_dry_run_writes_nothing(story: Story) -> None:
    run = story.runs["03-dry-run"]
    assert run.status == "ok", run.error
    assert run.results["status"] == "dry-run" and run.results["verified"] is False


def test_publish_of_the_approved_digest_is_verified_and_audited(story: Story) -> None:
    run = story.runs["03"]
    assert run.status == "ok", run.error
    fixset = load_fixset(story.fixset)
    assert run.results == {
        "digest": fixset.digest,
        "status": "published",
        "dry_run": False,
        "corrections": fixset.corrections.height,
        "verified": True,
        "reviewer": REVIEWER,
        "chunks": -(-fixset.corrections.height // DEFAULT_CHUNK_SIZE),
        "publication_before": "not-started",
    }
    committed = read_corrections(story.settings, story.spec.topics.corrections, digest=fixset.digest)
    assert committed.height == fixset.corrections.height
    html = story.report("03").read_text()
    assert "publish" in html and REVIEWER in html


def test_reconciliation_is_all_clear_after_the_corrections(story: Story) -> None:
    run = story.runs["00-after"]
    assert (run.status, run.exit_code) == ("ok", runbook.EXIT_OK), run.error
    assert run.results["discrepancies"] == 0
    assert run.results["corrections_applied"] == load_fixset(story.fixset).corrections.height
    assert "All clear" in story.report("00-after").read_text()


def test_reports_are_small_and_listed_in_the_index(story: Story) -> None:
    sizes = {label: story.report(label).stat().st_size for label in story.runs}
    assert max(sizes.values()) < MAX_REPORT_BYTES, sizes
    index = (story.root / "reports" / "index.html").read_text()
    for label, run in story.runs.items():
        assert f'href="{label}/{run.html}"' in index
    assert load_fixset(story.fixset).digest in index


def test_every_chart_of_every_report_renders_in_chromium(story: Story, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: `make setup` installs it (apt-get install -y chromium)")
    drawn: dict[str, int] = {}
    with Chromium(user_data_dir=tmp_path / "profile") as browser:
        for label in story.runs:
            page = browser.open_report(story.report(label), screenshot=tmp_path / f"{label}.png")
            assert page.undrawn == [], (label, page.undrawn)
            assert page.errors == [], (label, page.errors)
            assert page.screenshot is not None and page.screenshot.stat().st_size > 10_000
            drawn[label] = len(page.charts)
        index = browser.open_report(story.root / "reports" / "index.html")
        assert index.errors == []
    assert drawn["01"] >= 5 and drawn["02"] >= 4 and drawn["00-before"] >= 2, drawn
