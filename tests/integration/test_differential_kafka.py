"""Differential tests on the real broker: a fixed sample of generated incidents (tests/unit/differential.py)
produced record by record into fresh topics, with record timestamps equal to event times (late records
included), recovered from Kafka with both clients and both engines, and checked against the plain reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from recovery.config import KafkaSettings
from recovery.kafka.clients import producer
from recovery.spec import PipelineSpec
from tests.integration.engine_helpers import make_spec
from tests.unit.pipeline import differential as diff

pytestmark = pytest.mark.kafka

SAMPLE = {
    # few sparse keys in bursts, old events written just before the range start; two partitions
    "lookback": diff.random_params(2, profile="lookback", kafka_time="event", partitions=2),
    # six keys on three partitions, late records, re-sends and traps, every class of discrepancy
    "mixed": diff.random_params(3, kafka_time="event", partitions=3, keys=6),
    # the whole history read: drops of seq 1 and runs, malformed records in the range
    "full-history": diff.random_params(1, kafka_time="event", partitions=2, keys=4, full_history=True),
}
RUNS = [
    (client, path)
    for client in ("kafka-python", "confluent")
    for path in (
        diff.EnginePath("in-memory", "in-memory"),
        diff.EnginePath("by-partition-2-workers", "by-partition", 2),
    )
]


def _produce(settings: KafkaSettings, spec: PipelineSpec, incident: diff.Incident) -> None:
    """Both logs, record by record, to the partitions and with the timestamps the generator gave them."""
    with producer(settings, linger_ms=5) as p:
        sent = []
        for r in incident.raw:
            future = p.send(
                spec.topics.raw, key=r.key, value=r.value, partition=r.partition, timestamp_ms=r.timestamp_ms
            )
            sent.append(((r.partition, r.offset), future))
        for o in incident.outputs:
            future = p.send(
                spec.topics.output,
                key=o.key.encode(),
                value=o.payload(),
                partition=o.partition,
                timestamp_ms=o.publish_ms,
            )
            sent.append(((o.partition, o.offset), future))
        p.flush(timeout=30)
        landed = [((m.partition, m.offset), where) for where, f in sent for m in [f.get(timeout=30)]]
    assert all(got == want for got, want in landed), "records did not land at the offsets the reference assumes"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(SAMPLE))
def test_generated_incident_recovered_from_kafka_matches_the_reference(
    name: str, kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    incident = diff.generate(SAMPLE[name])
    assert any(r.write_ms - r.event.ts > 60_000 for r in incident.raw if r.event is not None), "no late record"
    assert all(r.timestamp_ms == (r.event.ts if r.event else r.timestamp_ms) for r in incident.raw)
    spec = make_spec(topic_factory, partitions=incident.partitions, metrics=diff.SPEC.metrics)
    _produce(kafka_settings, spec, incident)
    want = diff.expected(incident)
    assert sum(want.counts.values()) > want.counts["ok"] > 0, "the sample incident has nothing to correct"
    failures = {}
    for client, path in RUNS:
        report = diff.recover_sources(incident, path, None, None, spec=spec, settings=kafka_settings, client=client)
        assert report.engine == path.engine
        problems = diff.all_violations(incident, report)
        if any(problems.values()):
            failures[f"{client} {path.name}"] = {k: v[:6] for k, v in problems.items() if v}
    assert not failures, f"{incident.describe()}: {failures}"


SOAK_INCIDENTS = int(os.environ.get("RECOVERY_DIFF_KAFKA_EXAMPLES", "40"))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_generated_incidents_recovered_from_kafka_match_the_reference(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    """The soak variant (make soak): many more seeds, half of them built around the lookback, both clients."""
    failures = {}
    for seed in range(SOAK_INCIDENTS):
        params = diff.random_params(1000 + seed, profile=("mixed", "lookback")[seed % 2], kafka_time="event")
        incident = diff.generate(params)
        spec = make_spec(topic_factory, partitions=incident.partitions, metrics=diff.SPEC.metrics)
        _produce(kafka_settings, spec, incident)
        for client, path in RUNS:
            report = diff.recover_sources(incident, path, None, None, spec=spec, settings=kafka_settings, client=client)
            problems = {k: v[:3] for k, v in diff.all_violations(incident, report).items() if v}
            if problems:
                failures[f"seed {1000 + seed} {client} {path.name}"] = (incident.describe(), problems)
    assert not failures, "\n".join(f"{where}: {what}" for where, what in failures.items())
