"""The audit trail in Kafka: one record per approval and per publish, on ``spec.topics.audit``.

Records are keyed by the fix set digest and hold JSON: ``{"event", "digest", "time", ...}`` with the event
``approve`` (reviewer, approved_at), ``publish-begin`` (the plan: chunk boundaries in the fix set's sorted
order, and the corrections topic's end offsets before sending), ``publish-chunk`` (one per committed chunk,
written in the chunk's own transaction) or ``publish`` (reviewer, counts, offsets of the corrections: the
whole set is committed and verified). The topic has one partition (a total order
of the history) and keeps records forever. Reads are bounded by the end offset snapshotted when they start.
"""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer

from recovery.config import KafkaSettings
from recovery.errors import TopicError
from recovery.kafka.clients import guarded, producer
from recovery.kafka.small import read_topic
from recovery.kafka.topics import ensure_topic, partitions_for
from recovery.source import KafkaSource
from recovery.timerange import format_ms, now_ms

AUDIT_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}
EVENTS = ("approve", "publish-begin", "publish-chunk", "publish")


def ensure_audit_topic(settings: KafkaSettings, topic: str) -> bool:
    """Create the audit topic if missing (one partition, kept forever); True when created."""
    return ensure_topic(settings, topic, 1, AUDIT_CONFIG)


def audit_record(event: str, digest: str, **fields: Any) -> dict[str, Any]:
    """An audit record with the event, the digest and the time it was written."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    return {"event": event, "digest": digest, "time": format_ms(now_ms()), **fields}


def append_audit(
    settings: KafkaSettings, topic: str, record: dict[str, Any], *, via: KafkaProducer | None = None
) -> dict[str, Any]:
    """Append ``record`` (acknowledged by the broker); returns where it went: topic, partition, offset.

    With ``via`` (a transactional producer inside a transaction) the record is part of that transaction.
    """
    value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    key = str(record["digest"]).encode()

    def send(p: KafkaProducer) -> Any:
        return guarded(settings, f"writing to the audit topic {topic}", lambda: p.send(topic, key=key, value=value))

    if via is not None:
        future = send(via)
        via.flush()
    else:
        with producer(settings) as p:
            future = send(p)
            p.flush()
    meta = guarded(settings, f"writing to the audit topic {topic}", lambda: future.get(timeout=30))
    return {"topic": topic, "partition": meta.partition, "offset": meta.offset}


def read_audit(
    settings: KafkaSettings, topic: str, *, digest: str | None = None, event: str | None = None
) -> list[dict[str, Any]]:
    """Audit records (committed ones: read_committed, oldest first), optionally only those of ``digest`` and ``event``.

    A missing audit topic reads as an empty history.
    """
    try:
        partitions_for(settings, topic)
    except TopicError:
        return []
    frame = read_topic(KafkaSource(topic, settings))
    found = []
    for partition, offset, value in frame.select("partition", "offset", "value").iter_rows():
        try:
            record = json.loads(value)
        except (TypeError, ValueError):
            continue  # not ours: the audit topic may be shared; unreadable records are ignored
        if not isinstance(record, dict):
            continue
        if digest is not None and record.get("digest") != digest:
            continue
        if event is not None and record.get("event") != event:
            continue
        found.append({**record, "_partition": partition, "_offset": offset})
    return found
