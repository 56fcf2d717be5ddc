"""Seeded sensor readings, and the same stream with the input faults of an incident (duplicates, late readings).

Each device reports every few seconds with pauses that end its sessions; some pauses are exactly the session
gap (the reading still joins) or one ms more (a new session starts), to pin the edges. Readings are in
event-time order; a record's Kafka timestamp is the time it was written: its event time in the clean stream,
the stream's time where it was inserted for a duplicate or a late reading.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

T0_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z
SITES = ("lyon", "oslo", "pune")


@dataclass(frozen=True)
class Record:
    """One Kafka record of the raw topic."""

    key: str  # site|id
    value: bytes
    timestamp_ms: int  # when it was written
    event_ms: int  # the reading's own time


@dataclass(frozen=True)
class InputFault:
    """A fault injected into the raw stream: a re-sent record or a reading written late."""

    kind: str  # duplicate | late
    key: str
    event_ms: int
    written_ms: int


def readings(seed: int, devices: int, events: int, gap_ms: int = 30_000) -> list[Record]:
    """``events`` readings of ``devices`` devices in event-time order (ties by device), unique times per device."""
    rng = random.Random(seed)
    # every device reports until the same end, so each key's last sessions in a range close (Quix closes a
    # key's session only when that key's own later readings move its watermark 2 gaps + grace past it)
    end_ms = T0_MS + (events // devices) * 7_500
    out: list[Record] = []
    for d in range(devices):
        site, ident = SITES[d % len(SITES)], f"d-{d:03d}"
        key = f"{site}|{ident}"
        t = T0_MS + rng.randrange(0, 5_000)
        temp = rng.uniform(15, 25)
        while t < end_ms:
            roll = rng.random()
            if roll < 0.04:
                step = rng.randrange(gap_ms + 1, 3 * gap_ms)  # a pause: the session ends
            elif roll < 0.05:
                step = gap_ms  # exactly the gap: still the same session
            elif roll < 0.06:
                step = gap_ms + 1  # one ms more: a new session
            else:
                step = rng.randrange(500, 9_000)
            t += step
            temp = min(45.0, max(-10.0, temp + rng.gauss(0, 0.6)))
            value = {"device": {"id": ident, "site": site}, "reading": {"at": t / 1000, "temp_c": round(temp, 2)}}
            out.append(Record(key, json.dumps(value, separators=(",", ":")).encode(), t, t))
    out.sort(key=lambda r: (r.event_ms, r.key))
    return out


def with_input_faults(
    clean: list[Record],
    seed: int,
    from_ms: int,
    to_ms: int,
    rate: float = 0.01,
    late_ms: tuple[int, int] = (90_000, 180_000),
) -> tuple[list[Record], list[InputFault]]:
    """The stream as the incident wrote it: some records re-sent a little later, some readings written
    ``late_ms`` after their time (beyond the session gap + grace), all inside ``[from_ms, to_ms)``.
    """
    rng = random.Random(seed + 1)
    kept: list[Record] = []
    inserts: list[tuple[int, Record, str]] = []  # (written at, record, kind)
    faults: list[InputFault] = []
    for r in clean:
        inside = from_ms + late_ms[1] <= r.event_ms < to_ms - late_ms[1]
        roll = rng.random() if inside else 1.0
        if roll < rate:  # late: written well after its time
            inserts.append((r.event_ms + rng.randrange(*late_ms), r, "late"))
            continue
        kept.append(r)
        if roll < 2 * rate:  # duplicate: re-sent a few seconds later
            inserts.append((r.event_ms + rng.randrange(1_000, 20_000), r, "duplicate"))
    merged: list[tuple[int, int, Record]] = [(r.timestamp_ms, 0, r) for r in kept]
    for written, r, kind in inserts:
        merged.append((written, 1, Record(r.key, r.value, written, r.event_ms)))
        faults.append(InputFault(kind, r.key, r.event_ms, written))
    merged.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in merged], faults


def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Write ``records`` in order, each with its Kafka timestamp, keyed by device (idempotent producer)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for r in records:
        while True:
            try:
                producer.produce(topic, key=r.key.encode(), value=r.value, timestamp=r.timestamp_ms)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(30)
    if left:
        raise RuntimeError(f"{left} records to {topic} not delivered within 30 s: is the broker at {bootstrap} up?")
