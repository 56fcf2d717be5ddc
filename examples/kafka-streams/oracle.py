"""The oracle of the example, independent of the toolkit: what the faulty run got wrong, read off the clean run.

Results are (merchant, metric, window start in ms). The job's records map onto them by the fields they carry:
``revenue`` and ``orders`` (5-minute tumbling windows), ``avg_amount`` (15-minute windows hopping by 5).
A result belongs to a range when its whole window is inside it. Per result, with downstream holding the last
copy published: ``missing`` (the clean run has it, the faulty run never published it), ``extra`` (the other way
round), ``wrong`` (the last copy differs), ``duplicate`` (published more than once, last copy right), ``ok``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

CLASSES = ("missing", "wrong", "duplicate", "extra", "ok")
SIZES_MS = {"revenue_5m": 300_000, "orders_5m": 300_000, "avg_amount_15m": 900_000}
FIELDS = {"revenue": "revenue_5m", "orders": "orders_5m", "avg_amount": "avg_amount_15m"}
REL_TOL = 1e-9

Result = tuple[str, str, int]  # merchant, metric, window start (ms)


def parse_iso(text: str) -> int:
    """ISO-8601 with a Z (as Java's Instant prints it) -> epoch ms."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def results_of(value: bytes) -> list[tuple[Result, float | None]]:
    """The results one record of the job's layout (or a correction in it) carries."""
    doc = json.loads(value)
    start = parse_iso(doc["window_start"])
    return [((doc["merchant"], metric, start), doc[name]) for name, metric in FIELDS.items() if name in doc]


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its end offsets taken now: (partition, offset, key, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[tuple[int, int, bytes | None, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=1000).values():
                out.extend(
                    (r.partition, r.offset, r.key, r.value)
                    for r in batch
                    if r.offset < ends[TopicPartition(topic, r.partition)]
                )
        return sorted(out, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def copies(records: list[tuple[int, int, bytes | None, bytes | None]]) -> dict[Result, list[float | None]]:
    """Every published copy of each result, in log order (a merchant's results are in one partition)."""
    found: dict[Result, list[float | None]] = defaultdict(list)
    for _, _, _, value in records:
        if value is not None:
            for result, v in results_of(value):
                found[result].append(v)
    return found


def in_range(result: Result, from_ms: int, to_ms: int) -> bool:
    """The whole window is inside [from_ms, to_ms)."""
    start = result[2]
    return from_ms <= start and start + SIZES_MS[result[1]] <= to_ms


def same(a: float | None, b: float | None) -> bool:
    """Equal values (both null, or within a relative 1e-9: sums in another order)."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)


def expected(
    faulty: dict[Result, list[float | None]], clean: dict[Result, list[float | None]], from_ms: int, to_ms: int
) -> dict[str, set[Result]]:
    """class -> results: the faulty run's outputs against the clean run's, inside the range."""
    out: dict[str, set[Result]] = {c: set() for c in CLASSES}
    for result in set(faulty) | set(clean):
        if not in_range(result, from_ms, to_ms):
            continue
        published, truth = faulty.get(result, []), clean.get(result, [])
        if not published:
            out["missing"].add(result)
        elif not truth:
            out["extra"].add(result)
        elif not same(published[-1], truth[-1]):
            out["wrong"].add(result)
        elif len(published) > 1:
            out["duplicate"].add(result)
        else:
            out["ok"].add(result)
    return out


def found_by_recovery(fixset: Path) -> dict[str, set[Result]]:
    """class -> results as the fix set's review comparison classifies them."""
    import polars as pl

    rows = pl.read_parquet(fixset / "review" / "comparison.parquet").select("key", "metric", "window", "status")
    out: dict[str, set[Result]] = {c: set() for c in CLASSES}
    for key, metric, window, status in rows.iter_rows():
        out[status].add((key, metric, window))
    return out


@dataclass(frozen=True)
class ClassCheck:
    """Expected vs found for one class."""

    name: str
    expected: int
    found: int
    both: int

    @property
    def precision(self) -> float:
        return 1.0 if self.found == 0 else self.both / self.found

    @property
    def recall(self) -> float:
        return 1.0 if self.expected == 0 else self.both / self.expected


def check(expect: dict[str, set[Result]], found: dict[str, set[Result]]) -> list[ClassCheck]:
    """Precision and recall of the found classes against the expected ones."""
    return [ClassCheck(c, len(expect[c]), len(found[c]), len(expect[c] & found[c])) for c in CLASSES]


def table(checks: list[ClassCheck]) -> str:
    """The oracle check as a text table."""
    lines = [f"{'class':<10} {'expected':>9} {'found':>7} {'both':>7} {'precision':>10} {'recall':>8}"]
    for c in checks:
        lines.append(f"{c.name:<10} {c.expected:>9,} {c.found:>7,} {c.both:>7,} {c.precision:>10.1%} {c.recall:>8.1%}")
    return "\n".join(lines)


def apply_corrections(
    faulty: dict[Result, list[float | None]], corrections: list[tuple[bytes | None, bytes | None]]
) -> dict[Result, float | None]:
    """What downstream holds after applying correction records in the job's layout to the faulty outputs.

    Downstream keeps the last copy of each result; a correction overwrites it, one flagged ``retracted``
    deletes it. A tombstone names only the merchant, not the window, so it cannot be applied: refused.
    """
    held = {result: values[-1] for result, values in faulty.items()}
    for key, value in corrections:
        if value is None:
            raise ValueError(f"a tombstone under {key!r} does not say which window it retracts")
        doc = json.loads(value)
        for result, v in results_of(value):
            if doc.get("retracted"):
                held.pop(result, None)
            else:
                held[result] = v
    return held


def mismatches(
    held: dict[Result, float | None], clean: dict[Result, list[float | None]], from_ms: int, to_ms: int
) -> list[str]:
    """Where corrected downstream still differs from the clean run inside the range (empty: identical)."""
    out = []
    for result in sorted({r for r in set(held) | set(clean) if in_range(r, from_ms, to_ms)}):
        mine, truth = held.get(result), clean.get(result)
        if truth is None or result not in held or not same(mine, truth[-1]):
            out.append(f"{result}: downstream {mine!r}, clean run {truth[-1] if truth else 'absent'!r}")
    return out
