"""Archive sources: Parquet and NDJSON files, directories and globs, one row per (partition, offset)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import DataError
from recovery.frames import RECORDS
from recovery.replay.bounded import replay
from recovery.source import FileSource


def records(partition: int, offsets: range) -> pl.DataFrame:
    n = len(offsets)
    return pl.DataFrame(
        {
            "partition": [partition] * n,
            "offset": list(offsets),
            "timestamp_ms": [1_000 + 10 * o for o in offsets],
            "key": [b"k"] * n,
            "value": [f'{{"n": {o}}}'.encode() for o in offsets],
        },
        schema=RECORDS,
    )


def test_parquet_and_ndjson_files_read_as_one_records_frame(tmp_path: Path) -> None:
    records(0, range(0, 5)).write_parquet(tmp_path / "a.parquet")
    records(0, range(3, 8)).write_parquet(tmp_path / "b.parquet")  # overlaps: one row per offset
    rows = records(1, range(2))
    (tmp_path / "c.ndjson").write_text(
        "".join(
            json.dumps({"partition": 1, "offset": o, "timestamp_ms": t, "key": "k", "value": v.decode()}) + "\n"
            for o, t, v in rows.select("offset", "timestamp_ms", "value").iter_rows()
        )
    )
    (tmp_path / "_replay.json").write_text("{}")  # a sidecar, not records
    expected = pl.concat([records(0, range(8)), rows])
    assert_frame_equal(FileSource(tmp_path).scan().collect(), expected)
    assert_frame_equal(FileSource([str(tmp_path / "*.parquet")]).scan().collect(), records(0, range(8)))


def test_archive_replay_plans_like_kafka(tmp_path: Path) -> None:
    records(0, range(100)).write_parquet(tmp_path / "p.parquet")
    result = replay(FileSource(tmp_path), from_ms=1_200, to_ms=1_500, slack_ms=0, quiet=True)
    assert result.frame().get_column("offset").to_list() == list(range(20, 50))
    plan = result.snapshot.partitions[0]
    assert (plan.log_start, plan.log_end, plan.start, plan.end) == (0, 100, 20, 50)


def test_missing_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="matches no Parquet/NDJSON file"):
        FileSource([str(tmp_path / "nothing*.parquet")]).files()
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="lacks column"):
        FileSource(tmp_path / "x.parquet").scan()
    with pytest.raises(DataError, match="no archive files given"):
        FileSource([])
