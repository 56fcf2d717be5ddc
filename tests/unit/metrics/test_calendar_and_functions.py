"""Window offsets, calendar days in a time zone, user functions, the spec's checks and the live worker's
share of the new metric kinds."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from recovery.errors import DataError, SpecError
from recovery.frames import EVENTS
from recovery.live.state import LiveState
from recovery.metrics.recompute import recompute, trim
from recovery.spec import DAY_MS, PipelineSpec

PARIS = ZoneInfo("Europe/Paris")


def ms(*args: int, tz: ZoneInfo = PARIS) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def events_at(times: list[int], key: str = "A", prices: list[float] | None = None) -> pl.DataFrame:
    prices = prices or [float(i + 1) for i in range(len(times))]
    rows = [(0, i, t, f"{key}{i}", key, i + 1, t, p, 1.0) for i, (t, p) in enumerate(zip(times, prices, strict=True))]
    return pl.DataFrame(rows, schema=EVENTS, orient="row")


def spec(**metric: Any) -> PipelineSpec:
    return PipelineSpec.from_dict({"metrics": [{"name": "x", **metric}]})


def test_weeks_start_on_monday_with_an_offset() -> None:
    utc = ZoneInfo("UTC")
    times = [
        ms(2026, 1, 4, 23, tz=utc),
        ms(2026, 1, 5, 0, tz=utc),
        ms(2026, 1, 11, 23, tz=utc),
        ms(2026, 1, 12, tz=utc),
    ]
    week = 7 * DAY_MS
    monday = recompute(
        events_at(times), spec(aggregation="count", window="tumbling", size_ms=week, offset_ms=4 * DAY_MS)
    )
    starts = [datetime.fromtimestamp(w / 1000, utc) for w in monday.get_column("window")]
    assert [d.strftime("%a %d") for d in starts] == ["Mon 29", "Mon 05", "Mon 12"]
    assert monday.get_column("value").to_list() == [1.0, 2.0, 1.0]
    epoch = recompute(events_at(times), spec(aggregation="count", window="tumbling", size_ms=week))
    assert {datetime.fromtimestamp(w / 1000, utc).strftime("%a") for w in epoch.get_column("window")} == {"Thu"}


def test_calendar_days_in_a_time_zone_follow_dst() -> None:
    # 2026-03-29: Paris springs forward (23 h); 2026-10-25: falls back (25 h)
    times = [ms(2026, 3, 28, 23, 59), ms(2026, 3, 29, 0, 0), ms(2026, 3, 29, 23, 59), ms(2026, 3, 30, 0, 0)]
    times += [ms(2026, 10, 25, 0, 0), ms(2026, 10, 25, 23, 59)]
    m = {"aggregation": "count", "window": "tumbling", "size_ms": DAY_MS, "time_zone": "Europe/Paris"}
    out = recompute(events_at(times), spec(**m))
    days = [
        (datetime.fromtimestamp(w / 1000, PARIS).strftime("%m-%d %H:%M"), v)
        for w, v in out.select("window", "value").rows()
    ]
    assert days == [("03-28 00:00", 1.0), ("03-29 00:00", 2.0), ("03-30 00:00", 1.0), ("10-25 00:00", 2.0)]
    one = spec(**m).metrics[0]
    ends = trim(out, one, None, ms(2026, 3, 30, 0, 0))  # the 23 h day ends at local midnight
    assert ends.height == 2
    lengths = {w: (ms(2026, 3, 30) - ms(2026, 3, 29), ms(2026, 10, 26) - ms(2026, 10, 25)) for w in [0]}
    assert lengths[0] == (23 * 3_600_000, 25 * 3_600_000)


def test_user_function_per_key_and_per_window() -> None:
    events = pl.concat([events_at([0, 5, 12], "A", [3.0, 1.0, 4.0]), events_at([1], "B", [2.0])])
    out = recompute(events, spec(function="tests.unit.metrics.udf:range_per_key"))
    assert out.select("key", "window", "time_ms", "value").rows() == [
        ("A", 1, 0, 0.0),
        ("A", 2, 5, 2.0),
        ("A", 3, 12, 3.0),
        ("B", 1, 1, 0.0),
    ]
    windowed = recompute(events, spec(function="tests.unit.metrics.udf:spread", window="tumbling", size_ms=10))
    assert windowed.select("key", "window", "value").rows() == [("A", 0, 0.0), ("A", 10, 0.0), ("B", 0, 0.0)]


def test_a_failing_user_function_names_the_key_and_window() -> None:
    events = pl.concat([events_at([0], "A"), events_at([25], "B")])
    with pytest.raises(DataError, match=r"metric 'x'.*ValueError: no prices for B \(key 'B', window 20\)"):
        recompute(events, spec(function="tests.unit.metrics.udf:fails_on_b", window="tumbling", size_ms=10))
    with pytest.raises(DataError, match=r"returned float for key 'A'"):
        recompute(events, spec(function="tests.unit.metrics.udf:not_a_frame"))
    with pytest.raises(SpecError, match="cannot import 'no_such_module'"):
        recompute(events, spec(function="no_such_module:f"))


@pytest.mark.parametrize(
    ("metric", "match"),
    [
        ({"aggregation": "median", "field": "price", "window": "count", "n": 2}, "unknown aggregation 'median'"),
        ({"aggregation": "weighted_mean", "field": "price", "window": "count", "n": 2}, "weighted_mean needs weight"),
        ({"aggregation": "mean", "field": "price", "weight": "volume", "window": "count", "n": 2}, "weight applies"),
        (
            {"aggregation": "mean", "field": "price", "window": "hopping", "size_ms": 10, "hop_ms": 20},
            r"hop_ms \(20\) > size_ms",
        ),
        ({"aggregation": "mean", "field": "price", "window": "session"}, "needs gap_ms >= 1"),
        ({"aggregation": "mean", "field": "price", "window": "session", "gap_ms": 5, "size_ms": 9}, "size_ms do"),
        ({"aggregation": "mean", "field": "price", "window": "tumbling"}, "needs size_ms"),
        ({"aggregation": "mean", "field": "price", "window": "tumbling", "size_ms": 10, "hop_ms": 5}, "no hop_ms"),
        ({"aggregation": "mean", "field": "price", "window": "sliding", "size_ms": 10}, "unknown window 'sliding'"),
        ({"aggregation": "mean", "field": "price"}, "needs a window"),
        ({"aggregation": "mean", "window": "count", "n": 3}, "mean needs field"),
        ({"aggregation": "mean", "field": "amount", "window": "count", "n": 3}, "field must be one of price, volume"),
        ({"aggregation": "count", "window": "count", "n": 3, "grace_ms": 5}, "grace_ms do"),
        (
            {"aggregation": "sum", "field": "price", "window": "tumbling", "size_ms": 10, "offset_ms": 10},
            r"offset_ms must be in \[0, 10\)",
        ),
        (
            {
                "aggregation": "sum",
                "field": "price",
                "window": "tumbling",
                "size_ms": 3_600_000,
                "time_zone": "Europe/Paris",
            },
            "whole days",
        ),
        (
            {
                "aggregation": "sum",
                "field": "price",
                "window": "tumbling",
                "size_ms": DAY_MS,
                "time_zone": "Mars/Olympus",
            },
            "unknown time_zone",
        ),
        (
            {"aggregation": "sum", "field": "price", "window": "tumbling", "window_ms": 10},
            "window_ms belongs to the legacy",
        ),
        ({"kind": "mean", "window_ms": 10, "aggregation": "sum"}, "legacy form"),
        ({"function": "nocolon", "window": "tumbling", "size_ms": 10}, "'module:name'"),
        ({"function": "m:f", "aggregation": "sum", "field": "price", "window": "count", "n": 2}, "not both"),
        ({"function": "m:f", "window": "count", "n": 2}, "not over count windows"),
    ],
)
def test_invalid_metrics_are_clear_errors(metric: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        spec(**metric)


def test_live_worker_refuses_sessions_and_functions_by_name() -> None:
    with pytest.raises(SpecError, match="cannot run metric.* x: session"):
        LiveState(spec(aggregation="count", window="session", gap_ms=5))
    with pytest.raises(SpecError, match="cannot run metric.* x"):
        LiveState(spec(function="tests.unit.metrics.udf:spread", window="tumbling", size_ms=10))


LIVE_METRICS = [
    {"name": "c", "aggregation": "stddev", "field": "price", "window": "count", "n": 3},
    {"name": "f", "aggregation": "first", "field": "price", "window": "count", "n": 2},
    {
        "name": "t",
        "aggregation": "max",
        "field": "price",
        "window": "tumbling",
        "size_ms": 20,
        "offset_ms": 7,
        "grace_ms": 1000,
    },
    {
        "name": "h",
        "aggregation": "stddev",
        "field": "price",
        "window": "hopping",
        "size_ms": 30,
        "hop_ms": 10,
        "grace_ms": 1000,
    },
    {
        "name": "l",
        "aggregation": "last",
        "field": "price",
        "window": "hopping",
        "size_ms": 30,
        "hop_ms": 10,
        "grace_ms": 1000,
    },
    {
        "name": "w",
        "aggregation": "weighted_mean",
        "field": "price",
        "weight": "volume",
        "window": "tumbling",
        "size_ms": 15,
        "grace_ms": 1000,
    },
    {
        "name": "d",
        "aggregation": "sum",
        "field": "price",
        "window": "tumbling",
        "size_ms": DAY_MS,
        "time_zone": "Europe/Paris",
        "grace_ms": 10 * DAY_MS,
    },
]


def test_live_worker_in_event_time_order_publishes_the_recompute() -> None:
    """Batches in event-time order with a generous grace drop nothing: live == recompute, windows closed by a
    last far-away event."""
    times = [3 * i + (i % 4) for i in range(80)]
    events = pl.concat([events_at(times, k, [float((i * 7) % 11) for i in range(80)]) for k in "AB"])
    events = events.sort("ts", "key", "seq").with_columns(pl.int_range(pl.len()).alias("offset").cast(pl.Int64))
    flush = events_at([40 * DAY_MS], "Z")
    pipeline = PipelineSpec.from_dict({"metrics": LIVE_METRICS})
    state = LiveState(pipeline)
    live = pl.concat([state.process(events.slice(i, 13)) for i in range(0, events.height, 13)] + [state.process(flush)])
    truth = recompute(events, pipeline)
    cols = ["metric", "key", "window", "value"]
    got = live.filter(pl.col("key") != "Z").select(cols).sort(cols[:3])
    want = truth.select(cols).sort(cols[:3])
    assert got.select(cols[:3]).equals(want.select(cols[:3]))
    diff = got.join(want, on=cols[:3]).filter(
        ((pl.col("value") - pl.col("value_right")).abs() > 1e-9)
        | (pl.col("value").is_null() != pl.col("value_right").is_null())
    )
    assert diff.height == 0, diff
