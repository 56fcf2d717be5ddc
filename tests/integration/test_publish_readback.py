"""The read-back a publish verifies: exactly the fix set's corrections, once each, with their content."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recovery.config import KafkaSettings
from recovery.fixes.approval import approve
from recovery.fixes.publish import VerificationError, partition_of, publish, verify
from recovery.kafka.clients import producer
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import make_spec
from tests.integration.test_publish import write_fix

pytestmark = pytest.mark.kafka


@pytest.fixture
def spec(topic_factory: Callable[..., str]) -> PipelineSpec:
    return make_spec(topic_factory, partitions=3)


def test_a_stray_copy_with_other_content_fails_the_read_back(
    kafka_settings: KafkaSettings, spec: PipelineSpec, tmp_path: Path
) -> None:
    fixset = write_fix(spec, tmp_path / "fx", n=300)
    approve(tmp_path / "fx", "alice", kafka_settings)
    report = publish(tmp_path / "fx", kafka_settings)
    topic = spec.topics.corrections
    assert report.verified and verify(kafka_settings, topic, fixset) == report.offsets
    assert sum(n for _, _, n in report.offsets.values()) == 300
    # a second committed copy of one correction, carrying the digest but another value
    row = fixset.corrections.filter(pl.col("action") == "upsert").row(0, named=True)
    stray = {**row, "value": row["value"] + 1.0, "digest": fixset.digest}
    with producer(kafka_settings) as p:
        key = f"{row['key']}|{row['metric']}|{row['window']}".encode()
        p.send(topic, key=key, value=json.dumps(stray).encode(), partition=partition_of(row["key"], 3))
        p.flush()
    with pytest.raises(VerificationError, match="0 missing, 1 with other content, 1 committed more than once"):
        verify(kafka_settings, topic, fixset)
