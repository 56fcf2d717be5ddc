"""A straightforward, per-event reference of every metric kind: the definition the vectorised code must meet.

Deliberately written like the design note's worker (a deque per key, a dict of open windows) and sharing
no code with recovery.metrics.windows.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from recovery.spec import MetricSpec, PipelineSpec

Result = tuple[str, str, int, int, float | None]  # key, metric, window, time_ms, value


def starts_of(ts: int, metric: MetricSpec) -> list[int]:
    """Window starts containing ts: multiples of hop_ms in (ts - window_ms, ts]."""
    assert metric.window_ms is not None and metric.hop_ms is not None
    s = ts - ts % metric.hop_ms
    out = []
    while s > ts - metric.window_ms:
        out.append(s)
        s -= metric.hop_ms
    return out


def value_of(metric: MetricSpec, events: list[dict[str, Any]]) -> float | None:
    if metric.kind == "mean":
        return sum(e[metric.field] for e in events) / len(events)
    volume = sum(e["volume"] for e in events)
    if volume == 0:
        return None
    return sum(e[metric.field] * e["volume"] for e in events) / volume


def sma_in_order(events: list[dict[str, Any]], metric: MetricSpec) -> list[Result]:
    """sma results over events taken in the given order (per key)."""
    assert metric.n is not None
    windows: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=metric.n))
    out = []
    for e in events:
        d = windows[e["key"]]
        d.append(e[metric.field])
        out.append((e["key"], metric.name, e["seq"], e["ts"], sum(d) / len(d)))
    return out


def truth(events: list[dict[str, Any]], spec: PipelineSpec) -> list[Result]:
    """Every result of every metric, each key's events in (ts, seq) order, all windows."""
    ordered = sorted(events, key=lambda e: (e["key"], e["ts"], e["seq"]))
    out: list[Result] = []
    for m in spec.metrics:
        if m.kind == "sma":
            out += sma_in_order(ordered, m)
            continue
        members: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for e in ordered:
            for s in starts_of(e["ts"], m):
                members[(e["key"], s)].append(e)
        out += [(k, m.name, s, s, value_of(m, evs)) for (k, s), evs in members.items()]
    return out


def live(events_in_arrival_order: list[dict[str, Any]], spec: PipelineSpec) -> tuple[list[Result], list[Result]]:
    """(published, still open at the end) of a per-event live worker with the grace policy."""
    published: list[Result] = []
    for m in spec.metrics:
        if m.kind == "sma":
            published += sma_in_order(events_in_arrival_order, m)
    open_at_end: list[Result] = []
    for m in spec.metrics:
        if m.kind == "sma":
            continue
        assert m.window_ms is not None
        max_ts: dict[int, int] = {}
        open_: dict[tuple[str, int], tuple[int, list[dict[str, Any]]]] = {}
        closed: set[tuple[str, int]] = set()
        for e in events_in_arrival_order:
            p = e["partition"]
            watermark = max_ts[p] - m.grace_ms if p in max_ts else None
            for s in starts_of(e["ts"], m):
                if watermark is not None and s + m.window_ms <= watermark:
                    continue  # closed: this event is late for this window
                assert (e["key"], s) not in closed
                open_.setdefault((e["key"], s), (p, []))[1].append(e)
            max_ts[p] = max(max_ts.get(p, e["ts"]), e["ts"])
            watermark = max_ts[p] - m.grace_ms
            for (k, s), (wp, evs) in sorted(open_.items()):
                if wp == p and s + m.window_ms <= watermark:
                    published.append((k, m.name, s, s, value_of(m, evs)))
                    closed.add((k, s))
                    del open_[(k, s)]
        open_at_end += [(k, m.name, s, s, value_of(m, evs)) for (k, s), (_, evs) in open_.items()]
    return published, open_at_end
