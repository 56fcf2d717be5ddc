"""Approve and publish on the real broker: exactly one committed copy, also after SIGKILL; refusals; audit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recovery.config import KafkaSettings
from recovery.errors import ApprovalError, DataError, TopicError
from recovery.fixes.approval import approve
from recovery.fixes.audit import read_audit
from recovery.fixes.fixset import APPROVAL_FILE, FixSet, build_fixset, write_fixset
from recovery.fixes.publish import CRASH_ENV, publish, transactional_id
from recovery.frames import COMPARISON
from recovery.kafka.topics import ensure_topic, partitions_for, topic_config
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import BASE_MS, make_spec, read_all

CORRECTIONS = 2_000
NEEDS_CONFLUENT = pytest.mark.skipif(
    importlib.util.find_spec("confluent_kafka") is None, reason="the confluent client needs confluent-kafka"
)


def comparison(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        status = ("missing", "wrong", "extra")[i % 3]
        corrected = None if status == "extra" else 100.0 + i / 7
        rows.append((f"K{i % 40}", "sma_5", i, BASE_MS + i, 1.0, corrected, 1, False, status))
    return pl.DataFrame(rows, schema=COMPARISON, orient="row")


def write_fix(spec: PipelineSpec, directory: Path, n: int = CORRECTIONS) -> FixSet:
    fixset = build_fixset(
        comparison(n),
        spec=spec,
        incident="INC-9",
        from_ms=BASE_MS,
        to_ms=BASE_MS + 3_600_000,
        parameters={"abs_tol": 1e-9, "rel_tol": 1e-9},
        sources={"raw": {}, "outputs": {}},
    )
    write_fixset(fixset, directory)
    return fixset


def committed_copies(settings: KafkaSettings, topic: str, digest: str, isolation: str = "read_committed") -> Counter:
    """Copies per record key carrying ``digest``, read by an independent consumer."""
    copies: Counter = Counter()
    for record in read_all(settings, topic, isolation):
        if record.value is not None and json.loads(record.value)["digest"] == digest:
            copies[record.key.decode()] += 1
    return copies


@pytest.fixture
def spec(topic_factory: Callable[..., str]) -> PipelineSpec:
    return make_spec(topic_factory, partitions=3)


def test_publishing_twice_leaves_one_committed_copy_and_one_audit_record(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    fixset = write_fix(spec, tmp_path / "fx")
    approval = approve(tmp_path / "fx", "alice", kafka_settings)
    first = publish(tmp_path / "fx", kafka_settings, approved_digest=fixset.digest)
    second = publish(tmp_path / "fx", kafka_settings)
    assert (first.status, second.status) == ("published", "already-published")
    assert first.verified and first.corrections_per_s > 0
    copies = committed_copies(kafka_settings, spec.topics.corrections, fixset.digest)
    assert len(copies) == CORRECTIONS and set(copies.values()) == {1}
    assert len(partitions_for(kafka_settings, spec.topics.corrections)) == 3
    assert "compact" in topic_config(kafka_settings, spec.topics.corrections)["cleanup.policy"]
    published = read_audit(kafka_settings, spec.topics.audit, digest=fixset.digest, event="publish")
    assert len(published) == 1
    record = published[0]
    assert record["reviewer"] == "alice" and record["approved_at"] == approval.approved_at
    assert record["counts"]["missing"] == CORRECTIONS // 3 + 1
    assert sum(n for _, _, n in record["offsets"].values()) == CORRECTIONS
    assert record["transactional_id"] == transactional_id(fixset.digest)
    assert (
        read_audit(kafka_settings, spec.topics.audit, digest=fixset.digest, event="approve")[0]["reviewer"] == "alice"
    )


@pytest.mark.parametrize(
    ("client", "crash", "rerun_status"),
    [
        ("kafka-python", "after-begin", "published"),
        ("kafka-python", "after-sends:700", "published"),
        ("kafka-python", "before-commit", "published"),
        ("kafka-python", "after-commit", "resumed"),
        ("kafka-python", "after-verify", "resumed"),
        pytest.param("confluent", "after-sends:700", "published", marks=NEEDS_CONFLUENT),
        pytest.param("confluent", "after-commit", "resumed", marks=NEEDS_CONFLUENT),
    ],
)
def test_sigkill_mid_publish_then_rerun_leaves_exactly_one_committed_copy(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path, client: str, crash: str, rerun_status: str
) -> None:
    fixset = write_fix(spec, tmp_path / "fx")
    approve(tmp_path / "fx", "bob", kafka_settings)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers, CRASH_ENV: crash}
    killed = subprocess.run(
        [sys.executable, "-m", "recovery", "publish", str(tmp_path / "fx"), "--client", client],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    written = sum(committed_copies(kafka_settings, spec.topics.corrections, fixset.digest, "read_uncommitted").values())
    assert written >= (0 if crash == "after-begin" else 700)  # the killed run did write to the log
    report = publish(tmp_path / "fx", kafka_settings, client=client)
    assert report.status == rerun_status and report.verified
    copies = committed_copies(kafka_settings, spec.topics.corrections, fixset.digest)
    assert len(copies) == CORRECTIONS and set(copies.values()) == {1}
    assert len(read_audit(kafka_settings, spec.topics.audit, digest=fixset.digest, event="publish")) == 1
    assert publish(tmp_path / "fx", kafka_settings).status == "already-published"


def test_unapproved_edited_or_forged_fix_sets_are_refused(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    directory = tmp_path / "fx"
    write_fix(spec, directory, n=30)
    with pytest.raises(ApprovalError, match="is not approved"):
        publish(directory, kafka_settings)
    approve(directory, "carol", kafka_settings)
    approval = json.loads((directory / APPROVAL_FILE).read_text())
    with pytest.raises(ApprovalError, match="not the fix set's"):
        publish(directory, kafka_settings, approved_digest="0" * 64)

    forged = {**approval, "reviewer": "mallory"}  # an approval that the audit topic never saw
    (directory / APPROVAL_FILE).write_text(json.dumps(forged))
    with pytest.raises(ApprovalError, match="not in the audit topic"):
        publish(directory, kafka_settings)
    (directory / APPROVAL_FILE).write_text(json.dumps(approval))

    corrections = pl.read_parquet(directory / "corrections.parquet")
    corrections.with_columns(pl.col("value") + 1).write_parquet(directory / "corrections.parquet")
    with pytest.raises(DataError, match="does not match its digest"):
        publish(directory, kafka_settings)

    other = tmp_path / "fx2"
    write_fix(spec, other, n=31)  # a changed fix set is a new digest: the old approval does not carry over
    (other / APPROVAL_FILE).write_text(json.dumps(approval))
    with pytest.raises(ApprovalError, match="changed since it was approved"):
        publish(other, kafka_settings)
    with pytest.raises(TopicError):
        partitions_for(kafka_settings, spec.topics.corrections)  # nothing was ever written


def test_dry_run_writes_nothing(kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path) -> None:
    fixset = write_fix(spec, tmp_path / "fx", n=50)
    report = publish(tmp_path / "fx", kafka_settings, dry_run=True)
    assert report.status == "dry-run"
    assert report.corrections == 50
    assert report.preview is not None and report.preview.height == 20
    assert report.preview.item(0, "record_key") == "K0|sma_5|0"
    assert any("NOT PUBLISHABLE YET" in note for note in report.notes)
    assert report.digest == fixset.digest
    with pytest.raises(TopicError):
        partitions_for(kafka_settings, spec.topics.corrections)


def test_an_uncompacted_corrections_topic_is_refused(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    ensure_topic(kafka_settings, spec.topics.corrections, 3, {"cleanup.policy": "delete"})
    write_fix(spec, tmp_path / "fx", n=10)
    approve(tmp_path / "fx", "dave", kafka_settings)
    with pytest.raises(TopicError, match="not compact"):
        publish(tmp_path / "fx", kafka_settings)


def test_a_second_fix_set_supersedes_the_first_on_shared_keys(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    first = write_fix(spec, tmp_path / "a", n=60)
    approve(tmp_path / "a", "erin", kafka_settings)
    assert publish(tmp_path / "a", kafka_settings).status == "published"
    second = build_fixset(
        comparison(90).with_columns(pl.col("corrected") + 1),
        spec=spec,
        incident="INC-10",
        from_ms=BASE_MS,
        to_ms=BASE_MS + 3_600_000,
        parameters={},
        sources={"raw": {}, "outputs": {}},
    )
    write_fixset(second, tmp_path / "b")
    approve(tmp_path / "b", "erin", kafka_settings)
    report = publish(tmp_path / "b", kafka_settings)
    assert report.status == "published" and report.verified
    latest: dict[str, str] = {}
    for record in read_all(kafka_settings, spec.topics.corrections):
        latest[record.key.decode()] = json.loads(record.value)["digest"]
    assert len(latest) == 90 and set(latest.values()) == {second.digest}  # later corrections win per key
    assert first.digest != second.digest
