"""Chunked publish on the real broker: the plan and every chunk in the audit topic, SIGKILL at chunk
boundaries and inside chunks then a rerun (exactly one committed copy), a partly published set shown as such,
and a publish killed and never rerun holding back read_committed readers only until its timeout."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.audit import read_audit
from recovery.fixes.chunks import unfinished
from recovery.fixes.publish import CRASH_ENV, publish, transactional_id
from recovery.kafka.transactions import open_transactions
from recovery.notebook import review
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import make_spec
from tests.integration.test_publish import committed_copies, write_fix

CORRECTIONS, CHUNK = 2_000, 300  # 7 chunks: 6 of 300 and one of 200
BOUNDARIES = [0, 300, 600, 900, 1200, 1500, 1800, 2000]
SOAK_TRIALS = int(os.environ.get("RECOVERY_SOAK_TRIALS", "20"))
FIGURES = os.environ.get("RECOVERY_SOAK_FIGURES")


def record_figure(name: str, **figures: Any) -> None:
    if FIGURES:
        with Path(FIGURES).open("a") as f:
            f.write(json.dumps({"test": name, **figures}) + "\n")


@pytest.fixture
def spec(topic_factory: Callable[..., str]) -> PipelineSpec:
    return make_spec(topic_factory, partitions=3)


def publish_cli(directory: Path, settings: KafkaSettings, crash: str | None, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, **env}
    if crash:
        environment[CRASH_ENV] = crash
    return subprocess.run(
        [sys.executable, "-m", "recovery", "publish", str(directory), "--chunk-size", str(CHUNK)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def first_uncommitted(crash: str) -> int:
    """The chunk a rerun must start at, from the injected fault alone."""
    point, _, arg = crash.partition(":")
    if point == "after-begin":
        return 0
    if point == "after-sends":
        return next(i for i in range(7) if int(arg) <= BOUNDARIES[i + 1])
    index = int(arg) if arg else 6  # without an index: the last chunk
    return index + 1 if point == "after-commit" else index


def kill_and_rerun(settings: KafkaSettings, spec: PipelineSpec, directory: Path, crash: str) -> dict[str, Any]:
    fixset = write_fix(spec, directory)
    approve(directory, "chunky", settings)
    killed = publish_cli(directory, settings, crash)
    assert killed.returncode == -9, killed.stderr[-2000:]
    expected_first = first_uncommitted(crash)
    dry = publish(directory, settings, dry_run=True)
    assert dry.progress is not None and dry.progress.chunks_committed == expected_first
    if 0 < expected_first < 7:
        partly = f"PARTLY PUBLISHED: {expected_first} of 7 chunks"
        assert any(partly in line for line in dry.lines())
        # notebook 03 (its dry run) and the reconciliation (unfinished publishes in the audit topic) say so too
        shown = review.report_text(review.release(str(directory), "", True, settings.bootstrap_servers))
        assert partly in shown
        assert partly in unfinished(read_audit(settings, spec.topics.audit))[fixset.digest].line()
    started = time.monotonic()
    rerun = publish(directory, settings, chunk_size=999)  # a rerun follows the recorded plan, not its own
    rerun_s = time.monotonic() - started
    assert rerun.verified and rerun.chunks == 7 and rerun.first_chunk == expected_first
    assert rerun.sent == CORRECTIONS - BOUNDARIES[expected_first]
    copies = committed_copies(settings, spec.topics.corrections, fixset.digest)  # an independent reader
    lost, duplicated = CORRECTIONS - len(copies), sum(n - 1 for n in copies.values())
    assert (lost, duplicated) == (0, 0)
    history = read_audit(settings, spec.topics.audit, digest=fixset.digest)
    chunks = sorted(r["chunk"] for r in history if r["event"] == "publish-chunk")
    assert chunks == list(range(7))  # every chunk committed exactly once
    assert [r["boundaries"] for r in history if r["event"] == "publish-begin"] == [BOUNDARIES]
    assert len([r for r in history if r["event"] == "publish"]) == 1
    return {"crash": crash, "first_chunk": expected_first, "rerun": rerun.status, "rerun_s": round(rerun_s, 1),
            "lost": lost, "duplicated": duplicated}  # fmt: skip


def test_a_chunked_publish_records_its_plan_and_every_chunk(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    fixset = write_fix(spec, tmp_path / "fx")
    approve(tmp_path / "fx", "chunky", kafka_settings)
    report = publish(tmp_path / "fx", kafka_settings, chunk_size=CHUNK)
    assert (report.status, report.chunks, report.sent, report.verified) == ("published", 7, CORRECTIONS, True)
    copies = committed_copies(kafka_settings, spec.topics.corrections, fixset.digest)
    assert len(copies) == CORRECTIONS and set(copies.values()) == {1}
    history = read_audit(kafka_settings, spec.topics.audit, digest=fixset.digest)
    assert [r["boundaries"] for r in history if r["event"] == "publish-begin"] == [BOUNDARIES]
    chunks = [r for r in history if r["event"] == "publish-chunk"]
    assert [(r["chunk"], r["start"], r["end"]) for r in chunks] == list(
        zip(range(7), BOUNDARIES, BOUNDARIES[1:], strict=False)
    )
    assert [r["event"] for r in history][-1] == "publish"
    dry = publish(tmp_path / "fx", kafka_settings, dry_run=True)
    assert dry.progress is not None and dry.progress.state == "published"


@pytest.mark.parametrize(
    "crash", ["after-begin", "before-commit:0", "after-commit:2", "after-sends:1000", "before-commit", "after-commit"]
)
def test_sigkill_at_chunk_boundaries_and_inside_chunks_then_rerun(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path, crash: str
) -> None:
    figures = kill_and_rerun(kafka_settings, spec, tmp_path / "fx", crash)
    record_figure("publish-chunk-kill", **figures)


def random_crash(rng: random.Random) -> str:
    """A chunk boundary (after a commit) or a point inside a chunk (after some sends, or before the commit)."""
    kind = rng.choice(["boundary", "inside", "before-commit"])
    if kind == "boundary":
        return f"after-commit:{rng.randrange(7)}"
    if kind == "before-commit":
        return f"before-commit:{rng.randrange(7)}"
    return f"after-sends:{rng.randrange(1, CORRECTIONS)}"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(SOAK_TRIALS))
def test_sigkill_at_random_chunk_points_then_rerun_soak(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path, trial: int
) -> None:
    crash = random_crash(random.Random(5000 + trial))
    figures = kill_and_rerun(kafka_settings, spec, tmp_path / "fx", crash)
    record_figure("publish-chunk-kill-soak", trial=trial, **figures)


def test_a_publish_killed_and_never_rerun_holds_readers_back_only_until_its_timeout(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    """Killed inside chunk 3 with a 5 s transaction timeout; a marker written after the open transaction on
    every partition reaches a read_committed reader once the broker has aborted it (< 60 s asserted)."""
    fixset = write_fix(spec, tmp_path / "fx")
    approve(tmp_path / "fx", "chunky", kafka_settings)
    killed = publish_cli(tmp_path / "fx", kafka_settings, "after-sends:1000", KAFKA_TRANSACTION_TIMEOUT_MS="5000")
    killed_at = time.monotonic()
    assert killed.returncode == -9, killed.stderr[-2000:]
    topic = spec.topics.corrections
    hanging = open_transactions(kafka_settings, topic)
    assert hanging, "the killed publish left no open transaction"
    assert {t.transactional_id for t in hanging} == {transactional_id(fixset.digest)}
    assert {t.timeout_ms for t in hanging} == {5000}

    producer = KafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    for partition in range(3):
        producer.send(topic, key=b"marker", value=None, partition=partition)
    producer.flush()
    producer.close()
    reader = KafkaConsumer(bootstrap_servers=kafka_settings.bootstrap_servers, isolation_level="read_committed")
    tps = [TopicPartition(topic, p) for p in range(3)]
    reader.assign(tps)
    reader.seek_to_beginning(*tps)
    seen: set[int] = set()
    try:
        while len(seen) < 3 and time.monotonic() - killed_at < 90:
            for tp, records in reader.poll(timeout_ms=200).items():
                if any(r.key == b"marker" for r in records):
                    seen.add(tp.partition)
    finally:
        reader.close()
    moved_on_s = time.monotonic() - killed_at
    assert seen == {0, 1, 2} and moved_on_s < 60, f"readers held back {moved_on_s:.1f} s"
    assert open_transactions(kafka_settings, topic) == []
    copies = committed_copies(kafka_settings, topic, fixset.digest)
    assert len(copies) == BOUNDARIES[3]  # chunks 0-2 committed, chunk 3 aborted by the broker
    record_figure("reader-moves-on", timeout_ms=5000, moved_on_s=round(moved_on_s, 1))
    print(f"read_committed reader moved on {moved_on_s:.1f} s after the kill (timeout 5 s)")
