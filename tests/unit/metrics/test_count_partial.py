"""Count windows with ``partial = false``: a result only once the window holds n events (Quix Streams'
``sliding_count_window(n).final()``, Flink's ``countWindow(n, 1)``), checked against a per-event reference."""

from __future__ import annotations

import random

import polars as pl
import pytest

from recovery.errors import SpecError
from recovery.frames import EVENTS
from recovery.metrics.recompute import recompute
from recovery.spec import PipelineSpec


def _spec(partial: bool | None, n: int = 3) -> PipelineSpec:
    metric = {"name": "avg", "aggregation": "mean", "field": "price", "window": "count", "n": n}
    if partial is not None:
        metric["partial"] = partial
    return PipelineSpec.from_dict({"metrics": [metric]})


def _events(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    """EVENTS from (key, ts, price); no seq, so a count window is named by its event's time."""
    return pl.DataFrame(
        {
            "partition": [0] * len(rows),
            "offset": list(range(len(rows))),
            "timestamp_ms": [ts for _, ts, _ in rows],
            "event_id": [f"{k}-{ts}" for k, ts, _ in rows],
            "key": [k for k, _, _ in rows],
            "seq": [None] * len(rows),
            "ts": [ts for _, ts, _ in rows],
            "price": [p for _, _, p in rows],
            "volume": [1.0] * len(rows),
        },
        schema=EVENTS,
    )


def _reference(rows: list[tuple[str, int, float]], n: int, partial: bool) -> set[tuple[str, int, float]]:
    """Per key in event-time order: the mean of the last n prices at each event (only full windows unless partial)."""
    out = set()
    for key in {k for k, _, _ in rows}:
        mine = sorted((ts, p) for k, ts, p in rows if k == key)
        for i, (ts, _) in enumerate(mine):
            window = [p for _, p in mine[max(0, i - n + 1) : i + 1]]
            if partial or len(window) == n:
                out.add((key, ts, round(sum(window) / len(window), 9)))
    return out


@pytest.mark.parametrize("partial", [None, True, False])
def test_count_windows_with_and_without_partial_results_match_a_per_event_reference(partial: bool | None) -> None:
    rng = random.Random(3)
    rows = [(k, 1000 * i + rng.randrange(900), round(rng.uniform(10, 20), 2)) for i in range(40) for k in "ab"]
    rng.shuffle(rows)
    got = recompute(_events(rows), _spec(partial))
    found = {(k, w, round(v, 9)) for k, w, v in got.select("key", "window", "value").iter_rows()}
    assert found == _reference(rows, 3, partial is not False)
    assert got.height == (80 if partial is not False else 76)


def test_a_key_with_fewer_than_n_events_has_no_full_window() -> None:
    got = recompute(_events([("a", 1, 1.0), ("a", 2, 2.0)]), _spec(False))
    assert got.height == 0
    assert got.schema == recompute(_events([("a", 1, 1.0)]), _spec(True)).schema


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ({"window": "session", "gap_ms": 10, "partial": False}, "partial applies to count windows only"),
        ({"window": "count", "n": 3, "partial": "no"}, "true or false"),
        ({"window": "tumbling", "size_ms": 10, "partial": True}, "partial applies to count windows only"),
    ],
)
def test_partial_outside_count_windows_is_refused(metric: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        PipelineSpec.from_dict({"metrics": [{"name": "m", "aggregation": "max", "field": "price", **metric}]})


def test_the_live_worker_refuses_count_windows_without_partial_results() -> None:
    from recovery.live.state import LiveState

    with pytest.raises(SpecError, match="partial = false are recomputed only"):
        LiveState(_spec(False))
