"""Replay planning on archive files: what each partition reads, snapshotted before anything is read."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recovery.errors import ConfigError, DataError
from recovery.frames import RECORDS
from recovery.replay.plan import Snapshot, plan
from recovery.source import FileSource


def archive(tmp_path: Path, stamps: dict[int, list[int]]) -> FileSource:
    """One record per Kafka timestamp, per partition, offsets from 0."""
    rows = [(p, o, t, b"k", b"{}") for p, ts in stamps.items() for o, t in enumerate(ts)]
    pl.DataFrame(rows, schema=RECORDS, orient="row").write_parquet(tmp_path / "a.parquet")
    return FileSource(tmp_path / "a.parquet")


def bounds(snapshot: Snapshot) -> dict[int, tuple[int, int, int, int]]:
    return {p.partition: (p.log_start, p.log_end, p.start, p.end) for p in snapshot.partitions}


def test_a_time_range_reads_from_the_lookback_to_the_slack(tmp_path: Path) -> None:
    source = archive(tmp_path, {0: [100, 200, 300, 400, 500, 600], 1: [150, 650]})
    snap = plan(source, from_ms=300, to_ms=400, lookback_ms=100, slack_ms=100)
    # partition 0: first stamp >= 200 is offset 1, first stamp >= 500 is offset 4
    assert bounds(snap) == {0: (0, 6, 1, 4), 1: (0, 2, 1, 1)}
    assert [p.floor_ms for p in snap.partitions] == [200, 200]


def test_a_range_after_the_last_record_reads_nothing(tmp_path: Path) -> None:
    snap = plan(archive(tmp_path, {0: [100, 200]}), from_ms=1_000, to_ms=2_000, slack_ms=0)
    assert bounds(snap) == {0: (0, 2, 2, 2)}


def test_explicit_offsets_are_read_as_given_and_clamped_to_the_log(tmp_path: Path) -> None:
    snap = plan(archive(tmp_path, {0: [1, 2, 3, 4], 1: [1, 2]}), offsets={0: (1, 3), 1: (None, 99)})
    assert bounds(snap) == {0: (0, 4, 1, 3), 1: (0, 2, 0, 2)}
    assert all(p.floor_ms is None for p in snap.partitions)  # nothing known about what lies before


def test_bad_offsets_and_unknown_partitions_are_refused(tmp_path: Path) -> None:
    source = archive(tmp_path, {0: [1, 2, 3]})
    with pytest.raises(ConfigError, match="partition"):
        plan(source, offsets={0: (2, 1)})
    with pytest.raises(ConfigError, match=r"partition\(s\) \[7\]"):
        plan(source, offsets={7: (0, 1)})
    with pytest.raises(ConfigError, match="either a time range or explicit offsets"):
        plan(source, from_ms=1, to_ms=2, offsets={0: (0, 1)})
    with pytest.raises(ConfigError, match=">= 0"):
        plan(source, from_ms=1, to_ms=2, lookback_ms=-1)


def test_the_event_time_basis_reads_whole_partitions_whatever_the_kafka_time(tmp_path: Path) -> None:
    source = archive(tmp_path, {0: [100, 200, 300, 400, 500, 600], 1: [150, 650]})
    snap = plan(source, from_ms=1_000, to_ms=2_000, lookback_ms=100, slack_ms=0, time_basis="event")
    assert bounds(snap) == {0: (0, 6, 0, 6), 1: (0, 2, 0, 2)}
    assert [p.floor_ms for p in snap.partitions] == [None, None]  # nothing before the start is vouched for
    assert (snap.from_ms, snap.to_ms, snap.time_basis) == (1_000, 2_000, "event")
    with pytest.raises(ConfigError, match="unknown time basis 'wall'"):
        plan(source, from_ms=1_000, to_ms=2_000, time_basis="wall")


def test_an_export_narrower_than_the_replay_is_refused(tmp_path: Path) -> None:
    source = archive(tmp_path, {0: [100, 200, 300, 400, 500, 600]})
    # what an export of [300, 400) with a slack of 100 read: offsets [1, 4) of a log of 6
    sidecar = {
        "snapshot": {
            "source": {"kind": "kafka", "topic": "out"},
            "from_ms": 300,
            "to_ms": 400,
            "lookback_ms": 100,
            "lookback_events": 0,
            "slack_ms": 100,
            "partitions": [{"partition": 0, "log_start": 0, "log_end": 6, "start": 1, "end": 4}],
        },
        "reads": {"0": {"start": 1, "end": 4}},
    }
    (tmp_path / "_replay.json").write_text(json.dumps(sidecar))
    assert bounds(plan(source, from_ms=300, to_ms=400, lookback_ms=100, slack_ms=100))[0][2:] == (1, 4)
    with pytest.raises(DataError, match="holds its records up to Kafka time"):
        plan(source, from_ms=300, to_ms=400, lookback_ms=100, slack_ms=250)
    with pytest.raises(DataError, match="holds its records from Kafka time"):
        plan(source, from_ms=300, to_ms=400, lookback_ms=200, slack_ms=100)
    with pytest.raises(DataError, match="without the 4 earlier events per key"):
        plan(source, from_ms=300, to_ms=400, lookback_ms=100, lookback_events=4, slack_ms=100)
