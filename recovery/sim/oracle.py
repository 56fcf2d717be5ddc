"""The simulator's own reference: truth and the class of every published result, one event at a time.

The incident file is the ground truth of the recall/precision tests, so its predictions must not come from
the code those tests check (the vectorised recompute and compare). This module works them out again from
the documented semantics (docs/semantics.md), in plain Python over the simulator's small streams:

- **Truth** comes from the valid events, deduplicated by event id (the first copy by (partition, offset)
  is the event), each key's events taken in (event time, seq) order.
  ``sma``: the mean of the key's last ``n`` values (fewer at the start of the key), summed oldest first.
  ``mean`` / ``vwap``: windows ``[start, start + window_ms)`` with ``start`` a multiple of ``hop_ms``; an
  event belongs to every window that covers its event time; mean = sum / count, vwap = sum(x * volume) /
  sum(volume), null over zero volume.
- **Classes** of each (key, metric, window) of either side: ``missing`` (in truth, never published),
  ``extra`` (published, not in truth), ``wrong`` (the last published copy differs from truth),
  ``duplicate`` (published more than once, the last copy right), ``ok``. ``conflicting``: some copy of a
  result published more than once differs from its last copy. Two values differ when exactly one is null
  or they are apart by more than ``max(abs_tol, rel_tol * max(|a|, |b|))``.
- Both sides are **trimmed** to ``[from_ms, to_ms)``: an sma result by its event time, a time window when
  it lies wholly inside.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import polars as pl

from recovery.spec import MetricSpec, PipelineSpec

ABS_TOL = 1e-9
REL_TOL = 1e-9
STATUSES: tuple[str, ...] = ("ok", "missing", "wrong", "duplicate", "extra")

Identity = tuple[str, str, int]  # (key, metric, window): window is the seq for sma, the start otherwise


class Event(NamedTuple):
    """One valid raw event, where it was read from."""

    partition: int
    offset: int
    event_id: str
    key: str
    seq: int
    ts: int
    price: float
    volume: float


class Published(NamedTuple):
    """One published result, in publish order."""

    key: str
    metric: str
    window: int
    time_ms: int
    value: float | None


class Verdict(NamedTuple):
    """The class of one (key, metric, window)."""

    status: str
    copies: int
    conflicting: bool


@dataclass(frozen=True)
class Prediction:
    """Counts per class, and every result that is not ``ok`` as [key, metric, window, status, copies,
    conflicting], sorted by metric, key, window (the incident file's layout)."""

    counts: dict[str, int]
    results: list[list[Any]]


# ----------------------------------------------------------------------------------------------------------
# Truth


def first_copies(events: Iterable[Event]) -> list[Event]:
    """One event per event id: the copy with the lowest (partition, offset)."""
    kept: dict[str, Event] = {}
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        kept.setdefault(e.event_id, e)
    return list(kept.values())


def by_key_in_event_time(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Each key's events in (event time, seq) order."""
    per_key: dict[str, list[Event]] = {}
    for e in events:
        per_key.setdefault(e.key, []).append(e)
    return {k: sorted(es, key=lambda e: (e.ts, e.seq)) for k, es in sorted(per_key.items())}


def window_starts(ts: int, window_ms: int, hop_ms: int) -> list[int]:
    """Starts of the windows covering ``ts``: multiples of ``hop_ms`` in (ts - window_ms, ts]."""
    starts = []
    start = ts // hop_ms * hop_ms
    while start > ts - window_ms:
        starts.append(start)
        start -= hop_ms
    return starts


def in_range(metric: MetricSpec, window: int, time_ms: int, from_ms: int | None, to_ms: int | None) -> bool:
    """Whether a result belongs to ``[from_ms, to_ms)``: sma by its event time, a time window wholly inside."""
    if metric.kind == "sma":
        return (from_ms is None or time_ms >= from_ms) and (to_ms is None or time_ms < to_ms)
    assert metric.window_ms is not None
    return (from_ms is None or window >= from_ms) and (to_ms is None or window + metric.window_ms <= to_ms)


Result = tuple[int, int, float | None]  # (window, time_ms, value) of one key and metric


def _sma(events: Sequence[Event], metric: MetricSpec) -> list[Result]:
    assert metric.n is not None
    out: list[Result] = []
    last: deque[float] = deque(maxlen=metric.n)
    for e in events:
        last.append(getattr(e, metric.field))
        total = 0.0
        for x in last:  # oldest first
            total += x
        out.append((e.seq, e.ts, total / len(last)))
    return out


def _windows(events: Sequence[Event], metric: MetricSpec) -> list[Result]:
    assert metric.window_ms is not None and metric.hop_ms is not None
    sums: dict[int, list[float]] = {}  # window start -> [count, sum of x, sum of x * volume, sum of volume]
    for e in events:
        x = getattr(e, metric.field)
        for start in window_starts(e.ts, metric.window_ms, metric.hop_ms):
            s = sums.setdefault(start, [0.0, 0.0, 0.0, 0.0])
            s[0] += 1
            s[1] += x
            s[2] += x * e.volume
            s[3] += e.volume
    out: list[Result] = []
    for start, (count, total, weighted, volume) in sorted(sums.items()):
        if metric.kind == "mean":
            out.append((start, start, total / count))
        else:
            out.append((start, start, weighted / volume if volume != 0 else None))
    return out


def truth(
    events: Iterable[Event], spec: PipelineSpec, from_ms: int | None = None, to_ms: int | None = None
) -> dict[Identity, float | None]:
    """Truth of every metric of ``spec`` over valid events (copies included: the first counts), in the range."""
    out: dict[Identity, float | None] = {}
    for key, key_events in by_key_in_event_time(first_copies(events)).items():
        for metric in spec.metrics:
            results = _sma(key_events, metric) if metric.kind == "sma" else _windows(key_events, metric)
            for window, time_ms, value in results:
                if in_range(metric, window, time_ms, from_ms, to_ms):
                    out[(key, metric.name, window)] = value
    return out


# ----------------------------------------------------------------------------------------------------------
# Classes


def differ(a: float | None, b: float | None, abs_tol: float = ABS_TOL, rel_tol: float = REL_TOL) -> bool:
    """Exactly one is null, or both are numbers apart beyond the tolerance."""
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(a - b) > max(abs_tol, rel_tol * max(abs(a), abs(b)))


def classify(
    published: Iterable[Published],
    expected: dict[Identity, float | None],
    spec: PipelineSpec,
    from_ms: int | None = None,
    to_ms: int | None = None,
) -> dict[Identity, Verdict]:
    """The class of every (key, metric, window) of the published results (in publish order) and of truth.

    ``expected`` is truth already trimmed to the range (as :func:`truth` returns it); published results are
    trimmed here, and results of metrics the spec does not define are ignored.
    """
    metrics = {m.name: m for m in spec.metrics}
    copies: dict[Identity, list[float | None]] = {}
    for r in published:
        metric = metrics.get(r.metric)
        if metric is not None and in_range(metric, r.window, r.time_ms, from_ms, to_ms):
            copies.setdefault((r.key, r.metric, r.window), []).append(r.value)
    verdicts: dict[Identity, Verdict] = {}
    for ident in expected.keys() | copies.keys():
        values = copies.get(ident, [])
        if not values:
            verdicts[ident] = Verdict("missing", 0, False)
            continue
        last = values[-1]
        conflicting = len(values) > 1 and any(differ(v, last) for v in values)
        if ident not in expected:
            status = "extra"
        elif differ(last, expected[ident]):
            status = "wrong"
        elif len(values) > 1:
            status = "duplicate"
        else:
            status = "ok"
        verdicts[ident] = Verdict(status, len(values), conflicting)
    return verdicts


def summarize(verdicts: dict[Identity, Verdict]) -> Prediction:
    """Counts per class and the rows that are not ``ok``, in the incident file's layout."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = []
    for (key, metric, window), v in verdicts.items():
        counts[v.status] += 1
        if v.status != "ok":
            rows.append([key, metric, window, v.status, v.copies, v.conflicting])
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    return Prediction(counts, rows)


# ----------------------------------------------------------------------------------------------------------
# From the simulator's frames


def events_of(frame: pl.DataFrame) -> list[Event]:
    """Events from an EVENTS frame."""
    return [Event(*row) for row in frame.select(Event._fields).iter_rows()]


def published_of(frame: pl.DataFrame) -> list[Published]:
    """Published results from a frame of results in publish order (the live worker's LIVE_RESULTS)."""
    return [Published(*row) for row in frame.select(Published._fields).iter_rows()]


def predict_discrepancies(
    events: pl.DataFrame, published: pl.DataFrame, spec: PipelineSpec, from_ms: int, to_ms: int
) -> Prediction:
    """The class of every result in ``[from_ms, to_ms)``: ``published`` (in publish order) against the truth
    of ``events`` (every valid event read, duplicates included)."""
    expected = truth(events_of(events), spec, from_ms, to_ms)
    return summarize(classify(published_of(published), expected, spec, from_ms, to_ms))
