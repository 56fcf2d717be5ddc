"""Small generated incidents and a plain per-event reference of what recovering a range of them must give.

The generator builds the full log of a raw topic (every record ever written, with partition, offset, Kafka
timestamp) and of an output topic (what a faulty live worker published), plus a range ``[from_ms, to_ms)``.
The reference derives, from that full log and the documented semantics alone, the corrections and class
counts a recovery of the range must produce, and what it may and must report as seq gaps and quarantine.

Nothing here calls the package's computations: the only imports from ``recovery`` are the spec loader
(the spec is configuration) and, in :func:`recover_files`, the system under test itself.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import tomllib
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
from hypothesis import strategies as st

from recovery.spec import PipelineSpec

SPEC_TOML = """
[topics]
raw = "diff.raw"
output = "diff.out"
corrections = "diff.corrections"
audit = "diff.audit"
partitions = 3

[fields]
id = "event_id"
key = "symbol"
time = "ts"
seq = "seq"
price = "price"
volume = "volume"

[[metrics]]
name = "sma_5"
kind = "sma"
field = "price"
n = 5

[[metrics]]
name = "mean_1m"
kind = "mean"
field = "price"
window_ms = 60_000
grace_ms = 5_000

[[metrics]]
name = "vwap_5m"
kind = "vwap"
window_ms = 300_000
hop_ms = 60_000
grace_ms = 5_000
"""

SPEC = PipelineSpec.from_dict(tomllib.loads(SPEC_TOML))

BASE_MS = 1_767_225_600_000 + 12_345  # 2026-01-01T00:00:12.345Z: nothing minute-aligned by accident
SECOND, MINUTE = 1_000, 60_000
SLACK_MS = 30 * MINUTE  # passed to recover: every record is written less late than this
MAX_LATE_MS = 15 * MINUTE  # lateness of a record's first write
MAX_RESEND_MS = 10 * MINUTE  # a re-sent duplicate comes at most this long after the first write
MAX_PUBLISH_DELAY_MS = 10 * MINUTE  # an output is published at most this long after its result could be
REL_TOL = ABS_TOL = 1e-9
STATUSES = ("ok", "missing", "wrong", "duplicate", "extra")

# The columns of an archive file (one row per record of a topic).
ARCHIVE_SCHEMA = pl.Schema(
    {"partition": pl.Int32, "offset": pl.Int64, "timestamp_ms": pl.Int64, "key": pl.Binary, "value": pl.Binary}
)


# ------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Event:
    """One raw event's content."""

    key: str
    seq: int
    ts: int
    price: float
    volume: float

    @property
    def event_id(self) -> str:
        return f"{self.key}-{self.seq}"

    def payload(self, *, without: str | None = None) -> bytes:
        data = {
            "event_id": self.event_id,
            "symbol": self.key,
            "seq": self.seq,
            "ts": self.ts,
            "price": self.price,
            "volume": self.volume,
        }
        if without is not None:
            del data[without]
        return json.dumps(data).encode()


@dataclass
class RawRecord:
    """One record of the raw topic. ``event`` is the valid event it carries (None: malformed)."""

    partition: int
    write_ms: int  # when it reached the topic (offsets follow it per partition)
    timestamp_ms: int  # the Kafka record timestamp
    key: bytes
    value: bytes
    event: Event | None
    seq: int  # the seq it belongs to (also for a malformed record)
    kind: str  # valid | duplicate | conflicting | garbage | no_price | truncated
    order: tuple[int, int] = (0, 0)  # tie-break among equal write times
    offset: int = -1


@dataclass
class OutputRecord:
    """One record of the output topic (what the live worker published)."""

    partition: int
    publish_ms: int  # the record timestamp
    key: str
    metric: str
    window: int
    time_ms: int
    value: float | None
    order: int = 0
    offset: int = -1

    def payload(self) -> bytes:
        record = {
            "metric": self.metric,
            "key": self.key,
            "window": self.window,
            "time_ms": self.time_ms,
            "value": self.value,
            "count": 1,
            "partition": self.partition,
            "first_offset": 0,
            "last_offset": 0,
            "worker": "live-0",
        }
        return json.dumps(record, separators=(",", ":")).encode()


@dataclass
class Incident:
    """The full logs of both topics, the range to recover, and what the generator knows it did."""

    raw: list[RawRecord]
    outputs: list[OutputRecord]
    from_ms: int
    to_ms: int
    dropped: dict[str, set[int]]  # seqs never written in any form, per key
    partitions: int  # partition count of the topics (keys live on 0 .. partitions-1)
    full_history: bool  # from_ms is before every event and record
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        keys = sorted({r.event.key for r in self.raw if r.event is not None})
        return (
            f"incident {self.params} range [{self.from_ms}, {self.to_ms}) keys {keys} "
            f"raw {len(self.raw)} outputs {len(self.outputs)}"
        )


def assign_offsets(incident: Incident) -> None:
    """Offsets per partition in write order (raw) and publish order (outputs); lists sorted by (partition, offset)."""
    incident.raw.sort(key=lambda r: (r.partition, r.write_ms, r.order))
    incident.outputs.sort(key=lambda o: (o.partition, o.publish_ms, o.order))
    for records in (incident.raw, incident.outputs):
        counters: dict[int, int] = defaultdict(int)
        for r in records:
            r.offset = counters[r.partition]
            counters[r.partition] += 1


# ------------------------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class Params:
    """The knobs of a generated incident (percentages: per event, per key or per published result)."""

    seed: int = 0
    keys: int = 3
    partitions: int = 1
    skewed: bool = False
    kafka_time: str = "event"  # event: record timestamp = event time; write: = write time
    sparse_pct: int = 30
    bursts_pct: int = 0  # share of the sparse keys whose events come in bursts minutes apart
    late_pct: int = 10
    dup_pct: int = 5
    conflict_pct: int = 5
    drop_pct: int = 5
    run_pct: int = 20  # per key: a run of several dropped seqs
    first_pct: int = 20  # per key: seq 1 (and maybe 2) dropped
    malformed_pct: int = 5
    missing_pct: int = 10
    wrong_pct: int = 10
    republish_pct: int = 10
    extra_pct: int = 5
    full_history: bool = False
    near_pct: int = 50  # the range starts within seconds of some event (inside a burst)
    trap_pct: int = 0  # copies of events older than the range start written just before it
    deep_start: bool = False  # the range starts after the fifth event of some key
    length_ms: int = 20 * MINUTE


def _lateness(rnd: random.Random, late_pct: int) -> int:
    if rnd.random() * 100 >= late_pct:
        return rnd.randint(0, 2 * SECOND)
    band = rnd.random()
    if band < 0.4:
        return rnd.randint(2 * SECOND, 30 * SECOND)
    if band < 0.75:
        return rnd.randint(30 * SECOND, 3 * MINUTE)
    return rnd.randint(3 * MINUTE, MAX_LATE_MS)


def _key_events(rnd: random.Random, key: str, shape: str) -> list[Event]:
    """A key's events, seq order = event-time order: dense, sparse (long gaps among short ones) or in bursts."""
    if shape == "bursts":  # bursts of a few events, minutes apart
        gaps = []
        for burst in range(rnd.randint(2, 6)):
            gaps += [rnd.randint(2 * MINUTE, 12 * MINUTE)] if burst else []
            gaps += [rnd.randint(100, 3 * SECOND) for _ in range(rnd.randint(1, 5))]
    else:
        n = rnd.randint(1, 15) if shape == "sparse" else rnd.randint(5, 60)
        long_share = rnd.uniform(0.3, 1.0) if shape == "sparse" else 0.0
        gaps = [
            rnd.randint(20 * SECOND, 8 * MINUTE) if rnd.random() < long_share else rnd.randint(100, 3 * SECOND)
            for _ in range(n - 1)
        ]
    gaps = [0 if rnd.random() < 0.03 else gap for gap in gaps]  # ties in event time: seq decides
    ts = BASE_MS + rnd.randint(0, 20 * MINUTE)
    out = []
    for seq in range(1, len(gaps) + 2):
        ts += gaps[seq - 2] if seq > 1 else 0
        price = round(100 + rnd.uniform(-5, 5), 2)
        volume = 0.0 if rnd.random() < 0.12 else float(rnd.randint(1, 9))
        out.append(Event(key, seq, ts, price, volume))
    return out


def _dropped(rnd: random.Random, events: list[Event], p: Params) -> set[int]:
    n = len(events)
    dropped = {e.seq for e in events if rnd.random() * 100 < p.drop_pct}
    if n >= 4 and rnd.random() * 100 < p.run_pct:
        length = rnd.randint(2, min(6, n - 1))
        start = rnd.randint(1, n - length + 1)
        dropped.update(range(start, start + length))
    if n >= 2 and rnd.random() * 100 < p.first_pct:
        dropped.update(range(1, 1 + (2 if n >= 3 and rnd.random() < 0.3 else 1)))
    if len(dropped) >= n:  # every key keeps at least one event
        dropped.discard(rnd.choice(sorted(dropped)))
    return dropped


def generate(p: Params) -> Incident:
    """One incident drawn from ``p`` (deterministic for a given ``p``)."""
    rnd = random.Random(p.seed)
    weights = [8, 1, 1][: p.partitions] if p.skewed else [1] * p.partitions
    keys = []
    for i in range(p.keys):
        partition = rnd.choices(range(p.partitions), weights)[0]
        shape = "dense" if rnd.random() * 100 >= p.sparse_pct else "sparse"
        shape = "bursts" if shape == "sparse" and rnd.random() * 100 < p.bursts_pct else shape
        events = _key_events(rnd, f"K{i}", shape)
        keys.append((partition, events, _dropped(rnd, events, p)))
    from_ms, to_ms = _choose_range(rnd, [e for _, evs, drop in keys for e in evs if e.seq not in drop], p)
    raw: list[RawRecord] = []
    counter = 0

    def add(event: Event, kind: str, write_ms: int, partition: int, *, first: bool = False, value: bytes = b"") -> None:
        nonlocal counter
        counter += 1
        ts = event.ts if p.kafka_time == "event" else write_ms
        carried = event if kind in ("valid", "duplicate", "conflicting") else None
        body = value or event.payload()
        order = (0 if first else 1, counter)
        raw.append(RawRecord(partition, write_ms, ts, event.key.encode(), body, carried, event.seq, kind, order))

    def trapped(e: Event, write: int, latest: int) -> int | None:
        """A write time just before the range start, when ``e`` is older than it (a lookback trap). A key's
        first event more often: reading seq 1 tells a replay that it reached the key's history start."""
        chance = p.trap_pct if e.seq > 1 or not p.trap_pct else max(p.trap_pct, 50)
        if rnd.random() * 100 >= chance or not e.ts + 5 * SECOND < from_ms <= latest:
            return None
        return max(write, from_ms - rnd.randint(0, 30 * SECOND))

    for partition, events, dropped in keys:
        kept_valid = max(e.seq for e in events if e.seq not in dropped)  # every key keeps a valid event
        for e in events:
            if e.seq in dropped:
                continue
            write = e.ts + _lateness(rnd, p.late_pct)
            write = trapped(e, e.ts, e.ts + MAX_LATE_MS) or write
            malformed = rnd.random() * 100 < p.malformed_pct
            replaced = malformed and rnd.random() < 0.5 and e.seq != kept_valid
            if malformed:
                kind = rnd.choice(["garbage", "no_price", "truncated"])
                if kind == "garbage":
                    body = rnd.choice([b"\xff\xfe\x00garbage", b"not json {", b"[1, 2, 3]", b"{}"])
                elif kind == "no_price":
                    body = e.payload(without="price")
                else:
                    whole = e.payload()
                    body = whole[: rnd.randint(1, len(whole) - 1)]
                at = write if replaced else e.ts + _lateness(rnd, p.late_pct)
                add(e, kind, at, partition, value=body)
            if replaced:
                continue
            add(e, "valid", write, partition)
            if rnd.random() * 100 < p.dup_pct:
                again = trapped(e, write + 1, write + MAX_RESEND_MS) or write + rnd.randint(SECOND, MAX_RESEND_MS)
                add(e, "duplicate", again, partition)
            if rnd.random() * 100 < p.conflict_pct:
                other = Event(
                    e.key, e.seq, e.ts, round(e.price + rnd.choice([-1, 1]) * rnd.uniform(0.5, 5), 2), e.volume
                )
                if rnd.random() < 0.5:  # the conflicting copy arrives first and wins
                    add(other, "conflicting", max(e.ts, write - rnd.randint(0, 5 * SECOND)), partition, first=True)
                else:
                    again = trapped(e, write, write + MAX_RESEND_MS) or write + rnd.randint(0, MAX_RESEND_MS)
                    add(other, "conflicting", again, partition)

    from_ms = min(from_ms, max(r.timestamp_ms for r in raw))  # not after every record
    first_kafka = min(r.timestamp_ms for r in raw if r.timestamp_ms >= from_ms)
    to_ms = max(to_ms, first_kafka - SLACK_MS + 1)  # a record with a Kafka time in [from, to + slack): not empty
    earliest = min(e.ts for _, evs, drop in keys for e in evs if e.seq not in drop)
    dropped_by_key = {evs[0].key: drop for _, evs, drop in keys}
    incident = Incident(raw, [], from_ms, to_ms, dropped_by_key, p.partitions, from_ms < earliest, params=_short(p))
    incident.outputs = _publish(rnd, incident, p)
    assign_offsets(incident)
    return incident


def _short(p: Params) -> dict[str, Any]:
    default = Params()
    return {k: v for k, v in vars(p).items() if k == "seed" or v != getattr(default, k)}


def _choose_range(rnd: random.Random, events: list[Event], p: Params) -> tuple[int, int]:
    """[from, to): before every event (the full history), or around some event, often inside its key's burst."""
    if p.full_history:
        start = min(e.ts for e in events) - rnd.randint(1, 10 * MINUTE)
    else:
        deep = [e for e in events if e.seq > 5] if p.deep_start else []  # several earlier events: a lookback
        anchor = rnd.choice(deep or events).ts
        near = rnd.random() * 100 < p.near_pct
        start = anchor - (rnd.randint(-3 * SECOND, 5 * SECOND) if near else rnd.randint(0, 25 * MINUTE))
    return start, start + max(1, p.length_ms)


def _other_value(rnd: random.Random, value: float | None) -> float | None:
    if value is None:
        return round(100 + rnd.uniform(-5, 5), 3)
    if rnd.random() < 0.1:
        return None
    return value + rnd.choice([-1, 1]) * rnd.uniform(0.01, 5)


def _publish(rnd: random.Random, incident: Incident, p: Params) -> list[OutputRecord]:
    """What a faulty live worker published: truth over the whole history, with faults, plus extras."""
    results = full_truth(valid_events(incident.raw))
    home = {r.event.key: r.partition for r in incident.raw if r.event is not None}
    metrics = {m.name: m for m in SPEC.metrics}
    out: list[OutputRecord] = []
    counter = 0

    def ready(metric: str, start: int) -> int:
        m = metrics[metric]
        return start if m.kind == "sma" else start + (m.window_ms or 0) + m.grace_ms

    def delay() -> int:
        return rnd.randint(0, 3 * SECOND) if rnd.random() < 0.8 else rnd.randint(3 * SECOND, MAX_PUBLISH_DELAY_MS)

    def emit(key: str, metric: str, window: int, time_ms: int, value: float | None, at: int) -> None:
        nonlocal counter
        counter += 1
        out.append(OutputRecord(home[key], at, key, metric, window, time_ms, value, counter))

    for (key, metric, window), (time_ms, value) in sorted(results.items()):
        at = ready(metric, time_ms) + delay()
        u = rnd.random() * 100
        if u < p.missing_pct:
            continue
        if u < p.missing_pct + p.wrong_pct:
            emit(key, metric, window, time_ms, _other_value(rnd, value), at)
            continue
        if u < p.missing_pct + p.wrong_pct + p.republish_pct:
            later = at + rnd.randint(1, MAX_PUBLISH_DELAY_MS)
            variant = rnd.choice(["same", "first-wrong", "last-wrong"])
            first = _other_value(rnd, value) if variant == "first-wrong" else value
            last = _other_value(rnd, value) if variant == "last-wrong" else value
            emit(key, metric, window, time_ms, first, at)
            emit(key, metric, window, time_ms, last, later)
            continue
        emit(key, metric, window, time_ms, value, at)
    # extras: results of seqs and windows that do not exist
    by_key: dict[str, list[Event]] = defaultdict(list)
    for e in valid_events(incident.raw).values():
        by_key[e.key].append(e)
    for key, events in sorted(by_key.items()):
        events.sort(key=lambda e: (e.ts, e.seq))
        seqs = {e.seq for e in events}
        used: set[tuple[str, int]] = set()
        for _ in range(sum(rnd.random() * 100 < p.extra_pct for _ in range(len(events)))):
            metric = rnd.choice(list(metrics))
            m = metrics[metric]
            if m.kind == "sma":
                seq = rnd.randint(1, max(seqs) + 3)
                if seq in seqs or (metric, seq) in used:
                    continue
                used.add((metric, seq))
                before = [e.ts for e in events if e.seq < seq]
                time_ms = (max(before) if before else events[0].ts) + rnd.randint(0, 2 * SECOND)
                emit(key, metric, seq, time_ms, round(100 + rnd.uniform(-5, 5), 3), time_ms + delay())
            else:
                assert m.window_ms is not None and m.hop_ms is not None
                lo, hi = events[0].ts - 10 * MINUTE, events[-1].ts + 10 * MINUTE
                start = rnd.randint(lo, hi) // m.hop_ms * m.hop_ms
                if (metric, start) in used or any(start <= e.ts < start + m.window_ms for e in events):
                    continue
                used.add((metric, start))
                emit(key, metric, start, start, round(100 + rnd.uniform(-5, 5), 3), ready(metric, start) + delay())
    # each partition with raw records has outputs (the topics are partitioned alike)
    published = {o.partition for o in out}
    for key, partition in sorted(home.items()):
        if partition not in published:
            (k, metric, window), (time_ms, value) = next((r, v) for r, v in sorted(results.items()) if r[0] == key)
            emit(k, metric, window, time_ms, value, ready(metric, time_ms))
            published.add(partition)
    return out


LENGTHS_MS = (30 * SECOND, 2 * MINUTE, 10 * MINUTE, 40 * MINUTE, 180 * MINUTE)


def random_params(seed: int, *, profile: str = "mixed", **fixed: Any) -> Params:
    """Incident parameters drawn from ``seed``; ``fixed`` overrides. The ``lookback`` profile builds the incident
    around the lookback: few sparse keys, often in bursts, a range starting after several events of a key,
    older events often written just before the range start."""
    rnd = random.Random(f"params-{seed}")
    partitions = rnd.randint(1, 3)
    drawn = Params(
        seed=seed,
        keys=rnd.randint(1, 8),
        partitions=partitions,
        skewed=partitions > 1 and rnd.random() < 0.5,
        kafka_time=rnd.choice(["event", "write"]),
        sparse_pct=rnd.randint(0, 100),
        bursts_pct=rnd.choice([0, 50, 100]),
        late_pct=rnd.randint(0, 30),
        dup_pct=rnd.randint(0, 30),
        conflict_pct=rnd.randint(0, 30),
        drop_pct=rnd.randint(0, 30),
        run_pct=rnd.randint(0, 60),
        first_pct=rnd.randint(0, 60),
        malformed_pct=rnd.randint(0, 30),
        missing_pct=rnd.randint(0, 30),
        wrong_pct=rnd.randint(0, 30),
        republish_pct=rnd.randint(0, 30),
        extra_pct=rnd.randint(0, 30),
        full_history=rnd.random() < 0.25,
        near_pct=rnd.choice([0, 50, 100]),
        trap_pct=rnd.choice([0, 0, 10, 30, 60]),
        length_ms=rnd.choice([1, *LENGTHS_MS]) + rnd.randint(0, MINUTE),
    )
    if profile == "lookback":
        drawn = replace(
            drawn,
            keys=min(drawn.keys, 3),
            sparse_pct=100,
            bursts_pct=max(drawn.bursts_pct, 50),
            trap_pct=rnd.choice([30, 60]),
            near_pct=max(drawn.near_pct, 50),
            drop_pct=min(drawn.drop_pct, 10),
            run_pct=min(drawn.run_pct, 20),
            first_pct=min(drawn.first_pct, 20),
            malformed_pct=min(drawn.malformed_pct, 10),
            deep_start=True,
            full_history=False,
            length_ms=rnd.choice(LENGTHS_MS) + rnd.randint(0, MINUTE),
        )
    return replace(drawn, **fixed)


@st.composite
def params(draw: Any, **fixed: Any) -> Params:
    """Hypothesis strategy of incident parameters: a seed and a profile (mixed, or built around the lookback,
    one in two), the shape of the topics drawn by hypothesis, the other knobs drawn from the seed (varied
    examples; a failure prints every knob, and ``generate(Params(...))`` reproduces it)."""
    profile = draw(st.sampled_from(["mixed", "lookback"]))
    shape = {
        "keys": draw(st.integers(1, 8)),
        "partitions": draw(st.integers(1, 3)),
        "kafka_time": draw(st.sampled_from(["event", "write"])),
    }
    p = random_params(draw(st.integers(0, 2**32 - 1)), profile=profile, **{**shape, **fixed})
    return replace(p, keys=min(p.keys, 3)) if profile == "lookback" else p


def incidents(**fixed: Any) -> st.SearchStrategy[Incident]:
    """Hypothesis strategy of generated incidents (``fixed``: parameters to hold, e.g. kafka_time="event")."""
    return params(**fixed).map(generate)


# ------------------------------------------------------------------------------------------- reference


def parse(value: bytes) -> Event | None:
    """The event a raw record value carries, or None when it is not a valid event."""
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    names = ("event_id", "symbol", "seq", "ts", "price", "volume")
    if any(data.get(n) is None for n in names):
        return None
    event_id, key, seq, ts, price, volume = (data[n] for n in names)
    if not (isinstance(event_id, str) and event_id and isinstance(key, str) and key):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (seq, ts)):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf for v in (price, volume)):
        return None
    assert event_id == f"{key}-{seq}", "generated event ids are key-seq"
    return Event(key, seq, ts, float(price), float(volume))


def valid_events(raw: Iterable[RawRecord]) -> dict[str, Event]:
    """The first valid copy of each event id by (partition, offset) of the full log."""
    kept: dict[str, Event] = {}
    for r in sorted(raw, key=lambda r: (r.partition, r.offset, r.write_ms, r.order)):
        event = parse(r.value)
        assert (event is None) == (r.event is None), f"record kind {r.kind} does not parse as generated"
        if event is not None and event.event_id not in kept:
            kept[event.event_id] = event
    return kept


Identity = tuple[str, str, int]  # key, metric, window
Result = tuple[int, float | None]  # time_ms, value


def window_starts(ts: int, window_ms: int, hop_ms: int) -> list[int]:
    """Epoch-aligned starts of the windows [s, s + window_ms) that contain ts."""
    s = ts // hop_ms * hop_ms
    out = []
    while s > ts - window_ms:
        out.append(s)
        s -= hop_ms
    return out


def full_truth(events: dict[str, Event]) -> dict[Identity, Result]:
    """Every result of every metric over all ``events``, each key's events in (ts, seq) order."""
    by_key: dict[str, list[Event]] = defaultdict(list)
    for e in events.values():
        by_key[e.key].append(e)
    out: dict[Identity, Result] = {}
    for key, evs in by_key.items():
        evs.sort(key=lambda e: (e.ts, e.seq))
        for m in SPEC.metrics:
            if m.kind == "sma":
                assert m.n is not None
                last: deque[float] = deque(maxlen=m.n)
                for e in evs:
                    last.append(getattr(e, m.field))
                    out[(key, m.name, e.seq)] = (e.ts, sum(last) / len(last))
                continue
            assert m.window_ms is not None and m.hop_ms is not None
            members: dict[int, list[Event]] = defaultdict(list)
            for e in evs:
                for s in window_starts(e.ts, m.window_ms, m.hop_ms):
                    members[s].append(e)
            for s, inside in members.items():
                if m.kind == "mean":
                    value: float | None = sum(getattr(e, m.field) for e in inside) / len(inside)
                else:
                    volume = sum(e.volume for e in inside)
                    value = None if volume == 0 else sum(getattr(e, m.field) * e.volume for e in inside) / volume
                out[(key, m.name, s)] = (s, value)
    return out


def in_range(metric: str, window: int, time_ms: int, from_ms: int, to_ms: int) -> bool:
    m = SPEC.metric(metric)
    if m.kind == "sma":
        return from_ms <= time_ms < to_ms
    assert m.window_ms is not None
    return window >= from_ms and window + m.window_ms <= to_ms


def differ(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(a - b) > max(ABS_TOL, REL_TOL * max(abs(a), abs(b)))


@dataclass(frozen=True)
class Expected:
    """What recovering the incident's range must give."""

    corrections: dict[Identity, tuple[int, str, float | None, str]]  # -> time_ms, action, value, reason
    counts: dict[str, int]
    statuses: dict[Identity, str]


def expected(incident: Incident) -> Expected:
    """Classes and corrections of the range, from the full logs by the documented rules."""
    lo, hi = incident.from_ms, incident.to_ms
    truth = {
        ident: result
        for ident, result in full_truth(valid_events(incident.raw)).items()
        if in_range(ident[1], ident[2], result[0], lo, hi)
    }
    copies: dict[Identity, list[Result]] = defaultdict(list)
    for o in sorted(incident.outputs, key=lambda o: (o.partition, o.offset)):
        if in_range(o.metric, o.window, o.time_ms, lo, hi):
            copies[(o.key, o.metric, o.window)].append((o.time_ms, o.value))
    counts = dict.fromkeys((*STATUSES, "conflicting"), 0)
    corrections: dict[Identity, tuple[int, str, float | None, str]] = {}
    statuses: dict[Identity, str] = {}
    for ident in set(truth) | set(copies):
        published = copies.get(ident, [])
        if not published:
            status = "missing"
        elif ident not in truth:
            status = "extra"
        elif differ(published[-1][1], truth[ident][1]):
            status = "wrong"
        elif len(published) > 1:
            status = "duplicate"
        else:
            status = "ok"
        conflicting = status == "duplicate" and any(differ(v, published[-1][1]) for _, v in published)
        counts[status] += 1
        counts["conflicting"] += conflicting
        statuses[ident] = status
        time_ms = truth[ident][0] if ident in truth else published[-1][0]
        if status == "extra":
            corrections[ident] = (time_ms, "retract", None, status)
        elif status in ("missing", "wrong") or conflicting:
            corrections[ident] = (time_ms, "upsert", truth[ident][1], status)
    return Expected(corrections, counts, statuses)


# ---------------------------------------------------------------------------- seq gaps and quarantine


@dataclass(frozen=True)
class SeqFacts:
    """Per key, from the full raw log: valid seqs with their event time, seqs written in any form, drops."""

    valid: dict[str, dict[int, int]]  # key -> seq -> event time
    dropped: dict[str, set[int]]


def seq_facts(incident: Incident) -> SeqFacts:
    valid: dict[str, dict[int, int]] = defaultdict(dict)
    for e in valid_events(incident.raw).values():
        valid[e.key][e.seq] = e.ts
    written: dict[str, set[int]] = defaultdict(set)
    for r in incident.raw:
        written[r.key.decode()].add(r.seq)
    for key, seqs in incident.dropped.items():
        assert not seqs & written[key], "a dropped seq was written"
    return SeqFacts(dict(valid), incident.dropped)


def lost_gaps(gaps: pl.DataFrame) -> pl.DataFrame:
    """Gap rows reported as lost upstream: ``outside_range`` false (every row, where the column is absent)."""
    if "outside_range" in gaps.columns:
        return gaps.filter(~pl.col("outside_range").fill_null(False))
    return gaps


def gap_violations(incident: Incident, gaps: pl.DataFrame) -> list[str]:
    """What is wrong with the reported seq gaps: seqs reported lost that are in the log (precision), and
    dropped seqs the range's reads must reveal that are not reported lost (recall)."""
    facts = seq_facts(incident)
    lo, hi = incident.from_ms, incident.to_ms
    lost = lost_gaps(gaps)
    reported: dict[str, set[int]] = defaultdict(set)
    problems = []
    for key, first, last in lost.select("key", "from_seq", "to_seq").iter_rows():
        seqs = set(range(first, last + 1))
        reported[key] |= seqs
        present = sorted(seqs & set(facts.valid.get(key, {})))
        if present:
            problems.append(
                f"{key}: seqs {present} reported lost (gap {first}..{last}) but are valid events in the log"
            )
    for key, dropped in sorted(facts.dropped.items()):
        times = facts.valid.get(key, {})
        for m in sorted(dropped):
            before = [s for s in times if s < m]
            after = [s for s in times if s > m]
            if not after:
                continue  # nothing after it: no read can tell it is missing
            b = min(after)
            # both neighbours inside the range: every record that could carry m was read
            must = bool(before) and lo <= times[max(before)] < hi and lo <= times[b] < hi
            # the whole history was read: a leading run counts too, as long as its next event is in the range
            must = must or (incident.full_history and times[b] < hi)
            if must and m not in reported[key]:
                problems.append(f"{key}: seq {m} was never written but is not reported lost")
    return problems


def quarantine_violations(incident: Incident, quarantine: pl.DataFrame) -> list[str]:
    """Malformed records with a Kafka time in the range that were not quarantined; valid ones that were."""
    got = set(quarantine.select("partition", "offset").iter_rows())
    problems = []
    for r in incident.raw:
        where = (r.partition, r.offset)
        if r.event is None and incident.from_ms <= r.timestamp_ms < incident.to_ms and where not in got:
            problems.append(f"malformed record {where} ({r.kind}, key {r.key!r}) was not quarantined")
        if r.event is not None and where in got:
            problems.append(f"valid record {where} ({r.kind}) was quarantined")
    return problems


def correction_violations(incident: Incident, report: Any, want: Expected) -> list[str]:
    """Differences between the report's corrections and class counts and the reference's."""
    frame = report.fixset.corrections
    got = {
        (k, m, w): (t, a, v, r)
        for k, m, w, t, a, v, r in frame.select(
            "key", "metric", "window", "time_ms", "action", "value", "reason"
        ).iter_rows()
    }
    problems = []
    if frame.height != len(got):
        problems.append(f"{frame.height - len(got)} corrections repeat a (key, metric, window)")
    for ident in sorted(set(got) | set(want.corrections)):
        g, w = got.get(ident), want.corrections.get(ident)
        if g is None or w is None:
            status = want.statuses.get(ident, "absent (neither side in range)")
            problems.append(f"{ident}: correction {g} but expected {w} (reference class {status})")
            continue
        if g[0] != w[0] or g[1] != w[1] or g[3] != w[3] or differ(g[2], w[2]):
            problems.append(f"{ident}: correction {g} but expected {w}")
    counts = {k: int(v) for k, v in report.summary.counts.items()}
    if counts != want.counts:
        problems.append(f"class counts {counts} but expected {want.counts}")
    manifest = {k: int(v) for k, v in report.fixset.content["counts"].items()}
    if manifest != want.counts:
        problems.append(f"manifest counts {manifest} but expected {want.counts}")
    return problems


# ------------------------------------------------------------------------------------- system under test


def archive_frame(rows: list[tuple[int, int, int, bytes, bytes]]) -> pl.DataFrame:
    """An archive file's rows: (partition, offset, timestamp_ms, key, value) per record."""
    return pl.DataFrame(rows, schema=ARCHIVE_SCHEMA, orient="row")


def write_archives(incident: Incident, directory: Path) -> tuple[Path, Path]:
    """The raw and output topics' full logs as Parquet archive files."""
    raw = directory / "raw.parquet"
    out = directory / "outputs.parquet"
    archive_frame([(r.partition, r.offset, r.timestamp_ms, r.key, r.value) for r in incident.raw]).write_parquet(raw)
    archive_frame(
        [(o.partition, o.offset, o.publish_ms, o.key.encode(), o.payload()) for o in incident.outputs]
    ).write_parquet(out)
    return raw, out


@dataclass(frozen=True)
class EnginePath:
    """One way of running the recovery."""

    name: str
    engine: str
    workers: int = 1
    group_rows: int | None = None  # forces tiny key groups in the per-partition engine


ENGINE_PATHS = (
    EnginePath("in-memory", "in-memory"),
    EnginePath("by-partition-1-worker", "by-partition", 1),
    EnginePath("by-partition-2-workers", "by-partition", 2),
    EnginePath("tiny-key-groups", "by-partition", 1, group_rows=3),
)


@contextmanager
def engine_setting(path: EnginePath) -> Iterator[None]:
    if path.group_rows is None:
        yield
        return
    with mock.patch("recovery.pipeline.partitioned.GROUP_ROWS", path.group_rows):
        yield


def recover_sources(incident: Incident, path: EnginePath, raw_source: Any, outputs_source: Any, **options: Any) -> Any:
    """Run the system under test on the incident's range."""
    from recovery.pipeline.recover import recover

    latest = max(max(r.write_ms for r in incident.raw), max(o.publish_ms for o in incident.outputs))
    with engine_setting(path):
        return recover(
            SPEC if "spec" not in options else options.pop("spec"),
            incident.from_ms,
            incident.to_ms,
            raw_source=raw_source,
            outputs_source=outputs_source,
            engine=path.engine,
            workers=path.workers,
            slack_ms=SLACK_MS,
            quiet=True,
            now=latest + 24 * 60 * MINUTE,
            **options,
        )


def recover_files(incident: Incident, path: EnginePath) -> Any:
    """Write the incident to archive files and recover its range from them."""
    from recovery.source import FileSource

    with tempfile.TemporaryDirectory(prefix="diff-") as tmp:
        raw, out = write_archives(incident, Path(tmp))
        report = recover_sources(incident, path, FileSource(raw), FileSource(out))
        # everything the checks read, before the files go away
        _ = report.fixset.corrections, report.summary.counts, report.truth.events.gaps, report.truth.quarantine
        return report


def all_violations(incident: Incident, report: Any) -> dict[str, list[str]]:
    """Every check of a recovery report against the reference, by kind."""
    return {
        "corrections": correction_violations(incident, report, expected(incident)),
        "gaps": gap_violations(incident, report.truth.events.gaps),
        "quarantine": quarantine_violations(incident, report.truth.quarantine),
    }
