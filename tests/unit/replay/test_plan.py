"""Replay planning on archive files: what each partition reads, snapshotted before anything is read."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recovery.errors import ConfigError
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
