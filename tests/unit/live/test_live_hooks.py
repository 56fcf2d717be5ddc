"""The live worker's Kafka-free parts: parsing, the fault hooks and the emulation of bounded runs."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from recovery.errors import ConfigError
from recovery.frames import RECORDS
from recovery.live.state import Processor, emulate_live, parse_records
from recovery.live.worker import BugHook, CrashHook
from recovery.spec import PipelineSpec

SPEC = PipelineSpec.from_dict(
    {
        "metrics": [
            {"name": "s", "kind": "sma", "n": 2},
            {"name": "m", "kind": "mean", "window_ms": 10, "grace_ms": 0},
        ]
    }
)


def tick(key: str, seq: int, ts: int, price: float) -> bytes:
    return json.dumps(
        {"event_id": f"{key}-{seq}", "symbol": key, "seq": seq, "ts": ts, "price": price, "volume": 1.0}
    ).encode()


def records(rows: list[tuple[int, bytes | None]], partition: int = 0) -> pl.DataFrame:
    """RECORDS of one partition from (ts, value) pairs, offsets from 0."""
    data: dict[str, list[Any]] = {
        "partition": [partition] * len(rows),
        "offset": list(range(len(rows))),
        "timestamp_ms": [ts for ts, _ in rows],
        "key": [b"A"] * len(rows),
        "value": [v for _, v in rows],
    }
    return pl.DataFrame(data, schema=RECORDS)


STREAM = records([(i * 4, tick("A", i + 1, i * 4, float(i + 1))) for i in range(10)])  # ts 0, 4, ..., 36


def sma_windows(out: pl.DataFrame) -> list[int]:
    return out.filter(pl.col("metric") == "s").get_column("window").to_list()


def test_fault_free_emulation_publishes_every_sma_and_closed_window() -> None:
    out, stats = emulate_live(STREAM, SPEC)
    assert sma_windows(out) == list(range(1, 11))
    assert out.filter(pl.col("metric") == "m").select("window", "value").rows() == [(0, 2.0), (10, 4.5), (20, 7.0)]
    assert (stats.records, stats.events, stats.outputs, stats.open_windows) == (10, 10, 13, 1)


def test_commit_before_loses_the_span_and_restarts_cold() -> None:
    out, stats = emulate_live(STREAM, SPEC, crashes=[CrashHook(0, 3, 2, "commit-before")])
    assert sma_windows(out) == [1, 2, 3, 6, 7, 8, 9, 10]  # events at offsets 3 and 4 never processed
    s6 = out.filter((pl.col("metric") == "s") & (pl.col("window") == 6)).row(0, named=True)
    assert (s6["value"], s6["count"]) == (6.0, 1), "the restarted worker has no deque"
    # [0, 10) was open at the crash and [10, 20) only had lost events: neither is ever published
    assert out.filter(pl.col("metric") == "m").select("window", "value", "count").rows() == [(20, 7.0, 3)]
    assert stats.records == 8


def test_commit_after_publishes_the_span_twice() -> None:
    out, stats = emulate_live(STREAM, SPEC, crashes=[CrashHook(0, 3, 2, "commit-after")])
    assert sma_windows(out) == [1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 10]
    second_4 = out.filter((pl.col("metric") == "s") & (pl.col("window") == 4)).row(1, named=True)
    assert (second_4["value"], second_4["count"]) == (4.0, 1)
    assert stats.records == 12


def test_crash_beyond_the_end_never_fires_and_overlapping_crashes_are_refused() -> None:
    out, _ = emulate_live(STREAM, SPEC, crashes=[CrashHook(0, 50, 2, "commit-before")])
    assert sma_windows(out) == list(range(1, 11))
    with pytest.raises(ConfigError, match="inside the span"):
        emulate_live(STREAM, SPEC, crashes=[CrashHook(0, 3, 4, "commit-before"), CrashHook(0, 5, 1, "commit-after")])


def test_malformed_records_are_counted_by_category_and_skipped() -> None:
    bad = [(5, b"{oops"), (6, None), (7, b"[1]"), (8, tick("A", 9, 8, -1.0)), (9, b'{"symbol": "A"}')]
    stream = records([(0, tick("A", 1, 0, 1.0)), *bad, (12, tick("A", 2, 12, 3.0))])
    out, stats = emulate_live(stream, SPEC)
    assert sma_windows(out) == [1, 2]
    assert dict(stats.malformed) == {
        "bad JSON": 1,
        "empty value": 1,
        "not an object": 1,
        "bad value": 1,
        "missing field": 1,
    }
    events, malformed = parse_records(stream, SPEC)
    assert events.get_column("offset").to_list() == [0, 6]
    assert malformed.get_column("offset").to_list() == [1, 2, 3, 4, 5]


def test_bad_deploy_bugs_apply_to_their_event_time_range_only() -> None:
    cents, _ = emulate_live(STREAM, SPEC, bugs=[BugHook("cents", 8, 16)])
    values = dict(cents.filter(pl.col("metric") == "s").select("window", "value").rows())
    assert values[3] == (2.0 + 300.0) / 2 and values[2] == 1.5 and values[6] == 5.5
    short, _ = emulate_live(STREAM, SPEC, bugs=[BugHook("short-window", 8, 16)])
    rows = short.filter(pl.col("metric") == "s").select("window", "value", "count").rows()
    assert rows[2:5] == [(3, 3.0, 1), (4, 4.0, 1), (5, 4.5, 2)]


def test_processor_keeps_state_between_calls() -> None:
    proc = Processor(SPEC)
    first = proc.process(0, [(0, 0, tick("A", 1, 0, 2.0))])
    second = proc.process(0, [(1, 4, tick("A", 2, 4, 4.0))])
    assert first.filter(pl.col("metric") == "s")["value"].to_list() == [2.0]
    assert second.filter(pl.col("metric") == "s")["value"].to_list() == [3.0]
    proc.cold_restart()
    third = proc.process(0, [(2, 8, tick("A", 3, 8, 6.0))])
    assert third.filter(pl.col("metric") == "s")["value"].to_list() == [6.0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1:2", "PARTITION:OFFSET:SPAN:MODE"),
        ("1:2:3:sideways", "unknown crash mode"),
        ("1:2:0:commit-before", "span >= 1"),
    ],
)
def test_bad_crash_hooks(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CrashHook.parse(text)


def test_hooks_round_trip_through_their_argument() -> None:
    crash = CrashHook.parse("2:1500:40:commit-after")
    assert (crash.partition, crash.offset, crash.span, crash.mode) == (2, 1500, 40, "commit-after")
    assert CrashHook.parse(str(crash)) == crash
    bug = BugHook.parse("cents:100:200")
    assert BugHook.parse(str(bug)) == bug
    with pytest.raises(ConfigError, match="unknown bug"):
        BugHook.parse("typo:1:2")
    with pytest.raises(ConfigError, match="is empty"):
        BugHook.parse("cents:5:5")
