"""Regression tests of the lookback and seq-gap defects of issue 11, on archive files.

Each scenario is written out record by record (partition, offset, Kafka timestamp) and the live worker's
outputs are the correct results of the scenario, computed by the plain reference of tests/unit/differential.py.
Expected values come from the scenario itself: which events exist, which were dropped, their prices.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from . import differential as diff
from .differential import SECOND, EnginePath, Event, Incident, OutputRecord, RawRecord

ENGINES = [
    diff.EnginePath("in-memory", "in-memory"),
    diff.EnginePath("by-partition", "by-partition"),
    diff.EnginePath("tiny-key-groups", "by-partition", group_rows=3),
]
IDS = [p.name for p in ENGINES]
LOOKBACK_MS = 5 * 60_000 + 5_000  # one vwap window plus grace: the replay starts at F minus this (Kafka time)
F = diff.BASE_MS + 2 * 3_600_000 + 7_250  # the range start, not minute-aligned


class Scenario:
    """Records of one partition, written in the order of their write times; outputs = the correct results."""

    def __init__(self) -> None:
        self.raw: list[RawRecord] = []
        self.written: set[tuple[str, int]] = set()

    def event(self, key: str, seq: int, ts: int, *, price: float | None = None, written: int | None = None) -> Event:
        """Write one event (record timestamp = event time), at ``written`` (default: its event time)."""
        e = Event(key, seq, ts, 100.0 + seq if price is None else price, 1.0)
        self.write(e, ts if written is None else written)
        return e

    def write(self, e: Event, at: int, kind: str = "valid") -> None:
        order = (1, len(self.raw))
        self.raw.append(RawRecord(0, at, e.ts, e.key.encode(), e.payload(), e, e.seq, kind, order))
        self.written.add((e.key, e.seq))

    def filler(self, start: int, end: int) -> None:
        """Key A: one event per second in [start, end), on time."""
        for i, ts in enumerate(range(start, end, SECOND)):
            self.event("A", i + 1, ts, price=100.0 + i % 7)

    def incident(self, from_ms: int, to_ms: int, dropped: dict[str, set[int]] | None = None) -> Incident:
        incident = Incident(self.raw, [], from_ms, to_ms, dropped or {}, 1, False, params={"scenario": True})
        incident.full_history = from_ms < min(r.event.ts for r in self.raw if r.event is not None)
        results = diff.full_truth(diff.valid_events(self.raw))
        for i, ((key, metric, window), (time_ms, value)) in enumerate(sorted(results.items())):
            m = diff.SPEC.metric(metric)
            published = time_ms if m.kind == "sma" else time_ms + (m.window_ms or 0) + m.grace_ms
            incident.outputs.append(OutputRecord(0, published, key, metric, window, time_ms, value, i))
        diff.assign_offsets(incident)
        return incident


def _recover(incident: Incident, path: EnginePath) -> Any:
    return diff.recover_files(incident, path)


def _lost(report: Any, key: str) -> list[tuple[int, int]]:
    """(from_seq, to_seq) of the key's gaps reported as lost upstream."""
    gaps = diff.lost_gaps(report.truth.events.gaps).filter(pl.col("key") == key)
    return list(gaps.select("from_seq", "to_seq").iter_rows())


# ------------------------------------------------------------------------------------------------- 1


def lookback_trap() -> tuple[Incident, dict[str, list[Event]]]:
    """One partition; filler key A every second from F - 1100 s; sparse keys B and C with events at F-1000 s,
    F-900 s, F-400 s, F-350 s, F-3 s, F-2 s, F-1 s, F+1 s, F+2 s (seq 1..9, price 100 + seq). B's seq 3 is
    written late, just before F; C's seq 3 is written on time and re-sent just before F."""
    s = Scenario()
    s.filler(F - 1_100 * SECOND, F + 150 * SECOND)
    offsets_s = (-1000, -900, -400, -350, -3, -2, -1, 1, 2)
    events: dict[str, list[Event]] = {}
    for key in ("B", "C"):
        events[key] = [
            s.event(key, seq, F + at * SECOND, written=F - 500 if (key, seq) == ("B", 3) else None)
            for seq, at in enumerate(offsets_s, start=1)
        ]
    s.write(events["C"][2], F - 400, kind="duplicate")
    incident = s.incident(F, F + 2 * 60_000)
    start = next(r for r in incident.raw if r.timestamp_ms >= F - LOOKBACK_MS)
    seq4 = next(r for r in incident.raw if r.event == events["B"][3])
    assert seq4.offset < start.offset, "the replay's first read must lie after seq 4 of B and C"
    return incident, events


@pytest.mark.parametrize("path", ENGINES, ids=IDS)
def test_sma_lookback_reads_past_a_late_copy_of_an_older_event(path: EnginePath) -> None:
    incident, events = lookback_trap()
    report = _recover(incident, path)
    assert report.fixset.corrections.height == 0, report.fixset.corrections
    counts = report.summary.counts
    assert counts["ok"] > 0 and {k: v for k, v in counts.items() if k != "ok"} == dict.fromkeys(
        ("missing", "wrong", "duplicate", "extra", "conflicting"), 0
    ), counts
    # seq 8 of B and of C: the mean of seqs 4..8 (104 .. 108), not of 3, 5, 6, 7, 8
    truth = report.truth.results.filter(pl.col("metric") == "sma_5", pl.col("window") == 8)
    assert dict(truth.select("key", "value").iter_rows()) == {"B": 106.0, "C": 106.0}
    assert sum(e.price for e in events["B"][3:8]) / 5 == 106.0
    # no seq of B or C is missing upstream (folded in: seq 4 of the late keys is not lost)
    assert _lost(report, "B") == [] and _lost(report, "C") == []
    assert diff.expected(incident).corrections == {}  # the reference agrees: nothing to correct


# ------------------------------------------------------------------------------------------------- 2


@pytest.mark.parametrize("path", ENGINES, ids=IDS)
def test_seqs_before_the_read_start_are_not_reported_lost(path: EnginePath) -> None:
    """Key D: seq 1 (F - 1000 s) is written late, just before F, so the replay reads it; seqs 2..8 were written
    on time before the read start; seqs 9..11 are in the range. Key E: events in the range, then seq 4 just
    before the read end (to + slack) written late, after a record of the filler past the read end, and seq 5
    after it written on time: E's seq 4 is read by no replay of the range. Nothing was dropped."""
    to_ms = F + 2 * 60_000
    end = to_ms + diff.SLACK_MS  # the replay stops at the first record with a Kafka time >= this
    s = Scenario()
    s.filler(F - 1_100 * SECOND, end + 150 * SECOND)
    s.event("D", 1, F - 1_000 * SECOND, written=F - 500)
    for seq, at in zip(range(2, 9), (-900, -850, -800, -700, -600, -500, -400), strict=True):
        s.event("D", seq, F + at * SECOND)
    for seq, at in zip(range(9, 12), (1, 5, 30), strict=True):
        s.event("D", seq, F + at * SECOND)
    for seq, at in zip(range(1, 4), (10, 20, 30), strict=True):
        s.event("E", seq, F + at * SECOND)
    s.event("E", 4, end - 60 * SECOND, written=end + 60 * SECOND)
    s.event("E", 5, end - 30 * SECOND)
    incident = s.incident(F, to_ms)
    report = _recover(incident, path)
    assert _lost(report, "D") == []
    assert _lost(report, "E") == []
    assert diff.gap_violations(incident, report.truth.events.gaps) == []


# ------------------------------------------------------------------------------------------------- 3


@pytest.mark.parametrize("path", ENGINES, ids=IDS)
def test_missing_first_event_is_reported_when_read_from_the_start(path: EnginePath) -> None:
    """Key K never wrote seq 1, key M never wrote seqs 1 and 2, key L is complete; the range covers the log."""
    s = Scenario()
    start = F - 30 * 60_000
    for key, first in (("K", 2), ("L", 1), ("M", 3)):
        for seq in range(first, 11):
            s.event(key, seq, start + seq * 7 * SECOND + ord(key))
    incident = s.incident(start - 60_000, start + 20 * 60_000, dropped={"K": {1}, "L": set(), "M": {1, 2}})
    assert incident.full_history
    report = _recover(incident, path)
    assert _lost(report, "K") == [(1, 1)]
    assert _lost(report, "M") == [(1, 2)]
    assert _lost(report, "L") == []
    gaps = report.truth.events.gaps
    if "outside_range" in gaps.columns:
        first = gaps.filter(pl.col("key").is_in(["K", "M"]))
        assert first.get_column("outside_range").to_list() == [False, False]
    assert report.fixset.corrections.height == 0


# ------------------------------------------------------------------------- found by the differential harness


@pytest.mark.parametrize("copy", ["extra-copy", "only-copy"])
@pytest.mark.parametrize("path", ENGINES, ids=IDS)
def test_a_malformed_record_of_a_seq_does_not_hide_a_lost_seq_after_it(path: EnginePath, copy: str) -> None:
    """Key X: seqs 1..4 in the 40 s before F, seqs 5, 6, 8, 9 in the range, seq 7 never written; a record of
    seq 6 whose JSON lacks the price (its seq still readable) is written next to seq 6's valid record
    (extra-copy) or instead of it (only-copy). The valid seqs around the run (6 or 5, and 8) lie in the range,
    so every record of seq 7 would have been read: it is lost upstream. The filler key A makes the read start
    well after the partition's start."""
    s = Scenario()
    s.filler(F - 3_000 * SECOND, F + 120 * SECOND)
    times_s = {1: -40, 2: -30, 3: -20, 4: -10, 5: 1, 6: 2, 8: 4, 9: 5}
    events = {seq: Event("X", seq, F + at * SECOND, 100.0 + seq, 1.0) for seq, at in times_s.items()}
    for seq, e in events.items():
        if seq != 6 or copy == "extra-copy":
            s.write(e, e.ts)
    six = events[6]
    malformed = RawRecord(0, six.ts + 500, six.ts, b"X", six.payload(without="price"), None, 6, "no_price")
    malformed.order = (1, len(s.raw))
    s.raw.append(malformed)
    incident = s.incident(F, F + 60 * SECOND, dropped={"A": set(), "X": {7}})
    report = _recover(incident, path)
    assert _lost(report, "X") == [(7, 7)]
    assert diff.gap_violations(incident, report.truth.events.gaps) == []
