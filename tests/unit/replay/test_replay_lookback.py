"""The count-window lookback of a replay reads back to a fixed point, on archive files (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from recovery.frames import RECORDS
from recovery.replay.bounded import replay
from recovery.source import FileSource
from recovery.spec import FieldsSpec, MetricSpec, PipelineSpec, TopicsSpec

F = 10_000_000  # the range start
# lookback: 2 events per key (sma_3), one minute of Kafka time (mean_1m)
SPEC = PipelineSpec(
    TopicsSpec(raw="raw", output="out"),
    FieldsSpec(),
    (MetricSpec("sma_3", "sma", n=3), MetricSpec("mean_1m", "mean", window_ms=60_000, grace_ms=0)),
)


def write(tmp_path: Path, rows: list[tuple[str, int, int, int]]) -> FileSource:
    """rows: (key, seq, event time, Kafka time), written in this order to partition 0."""
    values = [
        json.dumps({"event_id": f"{k}-{s}", "symbol": k, "seq": s, "ts": ts, "price": 1.0, "volume": 1.0}).encode()
        for k, s, ts, _ in rows
    ]
    frame = pl.DataFrame(
        {
            "partition": [0] * len(rows),
            "offset": list(range(len(rows))),
            "timestamp_ms": [stamp for *_, stamp in rows],
            "key": [k.encode() for k, *_ in rows],
            "value": values,
        },
        schema=RECORDS,
    )
    frame.write_parquet(tmp_path / "raw.parquet")
    return FileSource(tmp_path / "raw.parquet")


def filler(start_ms: int, end_ms: int, step_ms: int = 1_000) -> list[tuple[str, int, int, int]]:
    return [("FILL", i + 1, t, t) for i, t in enumerate(range(start_ms, end_ms, step_ms))]


def test_a_late_older_event_does_not_stand_in_for_a_newer_one_before_the_read_start(tmp_path: Path) -> None:
    # K-5 in the range needs K-3 and K-4. K-2 arrived late (written just before F) and K-4 is read, so two
    # earlier events of K are read; but K-3, written on time long before the planned start, is the one needed
    rows = [("K", 1, F - 900_000, F - 900_000), ("K", 3, F - 700_000, F - 700_000)]
    rows += filler(F - 300_000, F)
    rows += [("K", 2, F - 800_000, F - 800_000), ("K", 4, F - 30_000, F - 30_000), ("K", 5, F + 1_000, F + 1_000)]
    result = replay(write(tmp_path, rows), from_ms=F, to_ms=F + 60_000, spec=SPEC, slack_ms=0, quiet=True)
    plan, read = result.snapshot.partitions[0], result.reads[0]
    assert plan.start > 2
    seqs = (
        result.frame()
        .filter(pl.col("key") == b"K")
        .get_column("value")
        .map_elements(lambda v: json.loads(v)["seq"], return_dtype=pl.Int64)
    )
    assert sorted(seqs.to_list()) == [2, 3, 4, 5]
    assert read.start == 1  # the first record stamped at or after K-2's event time
    assert read.floor_ms == F - 800_000


def test_a_key_whose_first_event_is_in_the_range_needs_no_lookback(tmp_path: Path) -> None:
    rows = filler(F - 3_000_000, F + 5_000) + [("NEW", 1, F + 1_000, F + 6_000)]
    result = replay(write(tmp_path, rows), from_ms=F, to_ms=F + 60_000, spec=SPEC, slack_ms=0, quiet=True)
    plan, read = result.snapshot.partitions[0], result.reads[0]
    assert read.start == plan.start  # FILL has its 2 earlier events; NEW starts at seq 1: nothing more to read
    assert plan.start > 0
    assert not read.from_origin


def test_a_sparse_key_reads_back_to_the_partition_start(tmp_path: Path) -> None:
    rows = [("S", 5, F - 3_000_000, F - 3_000_000)] + filler(F - 2_000_000, F) + [("S", 6, F + 1, F + 1)]
    result = replay(write(tmp_path, rows), from_ms=F, to_ms=F + 60_000, spec=SPEC, slack_ms=0, quiet=True)
    read = result.reads[0]
    assert (read.start, read.from_origin) == (0, True)
    assert result.frame().filter(pl.col("key") == b"S").height == 2
