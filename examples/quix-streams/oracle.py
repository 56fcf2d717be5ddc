"""The oracle: the discrepancies between the faulty run's outputs and the clean run's, by the app's own layout.

Independent of the toolkit: it reads both output topics with a plain consumer and classifies every result
(device, metric, window) the way downstream sees it, restating the documented classes:

- ``missing``: the clean run published it, the faulty run did not;
- ``extra``: the faulty run published it, the clean run did not;
- ``wrong``: the last copy the faulty run published differs from the clean run's;
- ``duplicate``: published more than once by the faulty run, the last copy right.

Only results inside ``[from, to)`` count: a session when it starts at or after ``from`` and its last reading
+ the gap is before ``to``; a moving average when its reading's time is in the range.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

GAP_MS = 30_000
REL_TOL = 1e-9
ABS_TOL = 1e-9
# metric name -> the field of the app's output record that holds it
METRIC_FIELDS = {"max_temp": "max_temp_c", "readings": "readings", "avg_temp": "avg_temp_c"}
CLASSES = ("missing", "wrong", "duplicate", "extra")

ResultId = tuple[str, str, int]  # (site|id, metric, window start or reading time in ms)


@dataclass(frozen=True)
class Published:
    """One output record as published: where, and its decoded value."""

    partition: int
    offset: int
    key: str | None
    value: dict[str, Any] | None


def read_topic(bootstrap: str, topic: str) -> list[Published]:
    """Every record of ``topic`` up to the end offsets taken when the read starts, partition by partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "oracle-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    out: list[Published] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            tp = TopicPartition(topic, p, low)
            consumer.assign([tp])
            # the position passes transaction markers too, which are never delivered as messages
            while consumer.position([tp])[0].offset < high:
                for msg in consumer.consume(1000, timeout=1):
                    if msg.error():
                        raise RuntimeError(f"reading {topic}[{p}]: {msg.error()}")
                    if msg.offset() >= high:
                        continue
                    raw = msg.value()
                    key = msg.key().decode() if msg.key() is not None else None
                    out.append(Published(p, msg.offset(), key, json.loads(raw) if raw is not None else None))
            consumer.unassign()
    finally:
        consumer.close()
    return out


def ms(seconds: float) -> int:
    """Epoch seconds (as the app writes them) in ms."""
    return round(seconds * 1000)


def results(record: dict[str, Any]) -> list[tuple[ResultId, float | None, int]]:
    """(result id, value, last reading time) of each metric an output record carries."""
    key = f"{record['device']['site']}|{record['device']['id']}"
    out = []
    for metric, path in METRIC_FIELDS.items():
        if path not in record:
            continue
        if metric == "avg_temp":
            window = last = ms(record["at"])
        else:
            window, last = ms(record["session"]["start"]), ms(record["session"]["end"]) - 1
        value = record[path]
        out.append(((key, metric, window), None if value is None else float(value), last))
    return out


def in_range(rid: ResultId, last: int, from_ms: int, to_ms: int) -> bool:
    """The range rule of each window kind."""
    if rid[1] == "avg_temp":
        return from_ms <= rid[2] < to_ms
    return rid[2] >= from_ms and last + GAP_MS < to_ms


def copies(records: list[Published], from_ms: int, to_ms: int) -> dict[ResultId, list[float | None]]:
    """Every published value of each result in range, in publication order (a key's records share a partition)."""
    found: dict[ResultId, list[float | None]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        if rec.value is None:
            continue
        for rid, value, last in results(rec.value):
            if in_range(rid, last, from_ms, to_ms):
                found[rid].append(value)
    return found


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(ABS_TOL, REL_TOL * max(abs(a), abs(b)))


def expected(faulty: list[Published], clean: list[Published], from_ms: int, to_ms: int) -> dict[str, set[ResultId]]:
    """The expected discrepancies by class: the faulty run's outputs against the clean run's."""
    got, truth = copies(faulty, from_ms, to_ms), copies(clean, from_ms, to_ms)
    dupes_in_truth = [rid for rid, values in truth.items() if len(values) > 1]
    if dupes_in_truth:
        raise RuntimeError(f"the clean run published {len(dupes_in_truth)} results twice, e.g. {dupes_in_truth[0]}")
    classes: dict[str, set[ResultId]] = {c: set() for c in CLASSES}
    for rid, (value,) in truth.items():
        if rid not in got:
            classes["missing"].add(rid)
        elif not same(got[rid][-1], value):
            classes["wrong"].add(rid)
        elif len(got[rid]) > 1:
            classes["duplicate"].add(rid)
    classes["extra"] = set(got) - set(truth)
    return classes


def downstream(records: list[Published]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """What a downstream table holds: per (device, kind, window) the fields of the last record."""
    table: dict[tuple[str, str, int], dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        if rec.value is None:
            continue
        row_key = row_id(rec.value)
        table[row_key] = rec.value
    return table


def row_id(record: dict[str, Any]) -> tuple[str, str, int]:
    """(device, record kind, window) of an output record."""
    key = f"{record['device']['site']}|{record['device']['id']}"
    if "session" in record:
        return key, "session", ms(record["session"]["start"])
    return key, "moving", ms(record["at"])
