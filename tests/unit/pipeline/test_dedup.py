"""Dedup by event id, event-time order per key, and the data-quality figures."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.errors import DataError
from recovery.frames import EVENTS, QUARANTINE
from recovery.pipeline.dedup import (
    DUPLICATES,
    KEY_STATS,
    PARTITION_STATS,
    KeyGroupDedup,
    _first_copies,
    dedup,
    lateness,
)
from recovery.pipeline.gaps import GAPS, Coverage, seq_gaps
from recovery.pipeline.spool import Spool, scan_parts

# partition, offset, timestamp_ms, event_id, key, seq, ts, price, volume
ROWS = [
    (0, 0, 105, "A-1", "A", 1, 100, 1.0, 1.0),
    (0, 1, 112, "A-2", "A", 2, 110, 2.0, 1.0),
    (0, 2, 113, "A-1", "A", 1, 100, 1.0, 1.0),  # consistent duplicate of offset 0
    (0, 3, 200, "A-4", "A", 4, 140, 4.0, 1.0),  # seq 3 never arrived
    (0, 4, 201, "A-2", "A", 2, 110, 9.0, 1.0),  # conflicting duplicate of offset 1
    (0, 5, 202, "A-5", "A", 5, 120, 5.0, 1.0),  # out of order: event time before A-4's
    (1, 0, 50, "B-1", "B", 1, 40, 5.0, 2.0),
    (1, 1, 60, "B-2", "B", 2, 60, 6.0, 2.0),
    (1, 2, 61, "B-5", "B", 5, 61, 7.0, 2.0),  # seq 3 quarantined, seq 4 lost
]


def events(rows: list[tuple] = ROWS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EVENTS, orient="row")


def quarantine() -> pl.DataFrame:
    row = (1, 3, 70, "B", '{"event_id":"B-3","symbol":"B","seq":3,"ts":55,"price":"x"}', "wrong type: price")
    return pl.DataFrame([row], schema=QUARANTINE, orient="row")


def test_first_copy_by_offset_is_kept_and_events_are_in_event_time_order() -> None:
    result = dedup(events())
    expected = events(
        [ROWS[0], ROWS[1], ROWS[5], ROWS[3], ROWS[6], ROWS[7], ROWS[8]]  # A by (ts, seq), then B
    )
    assert_frame_equal(result.events, expected)


def test_duplicates_name_the_kept_copy_and_flag_conflicts() -> None:
    expected = pl.DataFrame(
        [("A-1", "A", 0, 2, 0, 0, False), ("A-2", "A", 0, 4, 0, 1, True)], schema=DUPLICATES, orient="row"
    )
    assert_frame_equal(dedup(events()).duplicates, expected)


def test_ties_in_event_time_are_broken_by_seq() -> None:
    rows = [(0, 0, 10, "K-2", "K", 2, 10, 2.0, 1.0), (0, 1, 11, "K-1", "K", 1, 10, 1.0, 1.0)]
    assert dedup(events(rows)).events.get_column("seq").to_list() == [1, 2]


def test_seq_gaps_exclude_quarantined_seqs() -> None:
    result = dedup(events(), quarantine=quarantine())
    expected = pl.DataFrame([("A", 3, 3, 1, 0, False), ("B", 4, 4, 1, 0, False)], schema=GAPS, orient="row")
    assert_frame_equal(result.gaps, expected)
    without = dedup(events())
    assert without.gaps.filter(pl.col("key") == "B").rows() == [("B", 3, 4, 2, 0, False)]


def test_quarantined_records_with_unreadable_seqs_are_noted_next_to_the_gap_they_may_fill() -> None:
    # B-2 at offset 1 and B-5 at offset 9: seqs 3 and 4 are missing; one unreadable B record lies between
    rows = [*ROWS[:8], (1, 9, 61, "B-5", "B", 5, 61, 7.0, 2.0)]
    unreadable = pl.DataFrame(
        [
            (1, 4, 58, "B", '{"event_id":"B-3","sym', "bad JSON: truncated"),
            (1, 12, 70, "B", "", "empty value: no bytes"),  # after B-5: not in this gap
        ],
        schema=QUARANTINE,
        orient="row",
    )
    result = dedup(events(rows), quarantine=unreadable)
    assert result.gaps.filter(pl.col("key") == "B").rows() == [("B", 3, 4, 2, 1, False)]
    assert result.counts()["missing_events"] == 3
    assert result.counts()["lost_events"] == 2


def test_quality_per_key_and_partition() -> None:
    result = dedup(events(), quarantine=quarantine())
    by_key = pl.DataFrame(
        [
            ("A", 4, 2, 1, 1, 1, 1, 0.25, 60.0, 82.0, 82),
            ("B", 3, 0, 0, 1, 1, 0, 0.0, 0.0, 10.0, 10),
        ],
        schema=KEY_STATS,
        orient="row",
    )
    assert_frame_equal(result.by_key, by_key)
    by_partition = by_key.rename({"key": "partition"}).with_columns(pl.Series("partition", [0, 1], dtype=pl.Int32))
    assert_frame_equal(result.by_partition, by_partition.select(PARTITION_STATS.names()).cast(PARTITION_STATS))
    assert result.counts() == {
        "events": 7,
        "duplicates": 2,
        "conflicting_duplicates": 1,
        "gaps": 2,
        "missing_events": 2,
        "lost_events": 2,
        "outside_range_gaps": 0,
        "out_of_order": 1,
    }


def test_lateness_is_kafka_time_minus_event_time() -> None:
    late = lateness(events(ROWS[:2]))
    assert late.get_column("lateness_ms").to_list() == [5, 2]


def test_empty_input_keeps_the_schemas() -> None:
    result = dedup(pl.DataFrame(schema=EVENTS), quarantine=pl.DataFrame(schema=QUARANTINE))
    assert_frame_equal(result.events, pl.DataFrame(schema=EVENTS))
    assert_frame_equal(result.duplicates, pl.DataFrame(schema=DUPLICATES))
    assert_frame_equal(result.gaps, pl.DataFrame(schema=GAPS))
    assert_frame_equal(result.by_key, pl.DataFrame(schema=KEY_STATS))
    assert_frame_equal(result.by_partition, pl.DataFrame(schema=PARTITION_STATS))
    assert_frame_equal(seq_gaps(pl.DataFrame(schema=EVENTS)), pl.DataFrame(schema=GAPS))
    assert result.counts()["events"] == 0


def test_a_frame_that_is_not_events_is_refused() -> None:
    with pytest.raises(DataError, match="expected a EVENTS frame, it lacks column.*event_id"):
        dedup(pl.DataFrame({"key": ["A"], "seq": [1]}))


def random_events(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events of 12 keys over 2 partitions with duplicates, gaps, disorder; quarantined records of some seqs."""
    import random

    rnd = random.Random(seed)
    rows, bad, offsets = [], [], [0, 0]
    for i in range(n):
        key = f"K{rnd.randrange(12):02d}"
        partition = int(key[1:]) % 2
        seq = i // 12 + 1
        offset = offsets[partition]
        offsets[partition] += 1
        ts = 1_000 * seq + rnd.randrange(-3_000, 3_000)
        if rnd.random() < 0.03:  # quarantined: its seq is malformed, not lost
            value = f'{{"event_id":"{key}-{seq}","symbol":"{key}","seq":{seq},"price":"x"}}'
            bad.append((partition, offset, ts, key, value, "wrong type: price"))
            continue
        if rnd.random() < 0.02:  # lost upstream
            continue
        row = (partition, offset, ts + 20, f"{key}-{i}", key, seq, ts, float(i % 97), 1.0)
        rows.append(row)
        if rnd.random() < 0.05:  # duplicate, sometimes conflicting
            offsets[partition] += 1
            price = row[7] + (1.0 if rnd.random() < 0.3 else 0.0)
            rows.append((partition, offset + 1, ts + 900, row[3], key, seq, ts, price, 1.0))
    frame = pl.DataFrame(rows, schema=EVENTS, orient="row").sort("partition", "offset")
    return frame, pl.DataFrame(bad, schema=QUARANTINE, orient="row")


@pytest.mark.parametrize("max_rows", [50, 200, 10_000])
def test_dedup_in_key_groups_equals_dedup_of_everything(max_rows: int) -> None:
    frame, bad = random_events(2_000, seed=max_rows)
    whole = dedup(frame, quarantine=bad)
    grouped = KeyGroupDedup(frame, quarantine=bad, max_rows=max_rows)
    parts = list(grouped.groups())
    result = grouped.result()
    assert (len(parts) > 1) == (max_rows < frame.height)
    assert_frame_equal(pl.concat(parts).sort("key", "ts", "seq"), whole.events.sort("key", "ts", "seq"))
    for name in ("duplicates", "gaps", "by_key", "by_partition"):
        assert_frame_equal(getattr(result, name), getattr(whole, name))
    assert result.counts() == whole.counts() and whole.counts()["gaps"] > 0 and whole.counts()["duplicates"] > 0
    assert result.events.height == 0 and result.event_count == whole.events.height


@pytest.mark.parametrize("max_rows", [50, 200])
def test_key_groups_read_from_a_spool_split_by_group_equal_dedup_of_everything(tmp_path: Path, max_rows: int) -> None:
    frame, bad = random_events(2_000, seed=max_rows + 1)
    whole = dedup(frame, quarantine=bad)
    spool = Spool(str(tmp_path), "events", 0, frame.schema)
    for start in range(0, frame.height, 300):  # parts as a replay spools them, in arrival order
        spool.write(frame.slice(start, 300))
    seen: list[pl.DataFrame] = []

    def split(key_groups: pl.DataFrame) -> dict[int, pl.LazyFrame]:
        seen.append(key_groups)
        spools = spool.split_by(key_groups, rows_per_part=70)
        return {g: spools[g].lazy() for g in key_groups.get_column("_group").unique()}

    grouped = KeyGroupDedup(spool.lazy(), quarantine=bad, max_rows=max_rows, split=split)
    parts = list(grouped.groups())
    result = grouped.result()
    assert len(seen) == 1 and len(parts) > 1
    assert_frame_equal(pl.concat(parts).sort("key", "ts", "seq"), whole.events.sort("key", "ts", "seq"))
    for name in ("duplicates", "gaps", "by_key", "by_partition"):
        assert_frame_equal(getattr(result, name), getattr(whole, name))


@pytest.mark.parametrize("max_rows", [None, 200])
def test_key_groups_without_quality_give_the_same_events_and_duplicates_and_measure_nothing_else(
    max_rows: int | None,
) -> None:
    frame, bad = random_events(2_000, seed=7)
    whole = dedup(frame, quarantine=bad)
    grouped = KeyGroupDedup(frame, quarantine=bad, max_rows=max_rows, quality=False)
    parts = list(grouped.groups())
    result = grouped.result()
    assert_frame_equal(pl.concat(parts).sort("key", "ts", "seq"), whole.events.sort("key", "ts", "seq"))
    for part in parts:  # each group in event-time order per key, as truth is computed
        assert_frame_equal(part, part.sort("key", "ts", "seq", maintain_order=True))
    assert_frame_equal(result.duplicates, whole.duplicates)
    assert not result.measured and result.gaps.height == result.by_key.height == result.by_partition.height == 0
    assert result.counts() == {
        "events": whole.events.height,
        "duplicates": whole.duplicates.height,
        "conflicting_duplicates": whole.counts()["conflicting_duplicates"],
    }


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_spool_gives_back_what_was_written_in_memory_or_on_disk(tmp_path: Path, in_memory: bool) -> None:
    schema = pl.Schema({"key": pl.String, "n": pl.Int64})
    spool = Spool(str(tmp_path), "events", 1, schema, in_memory=in_memory)
    assert_frame_equal(spool.lazy().collect(), pl.DataFrame(schema=schema))
    written = [pl.DataFrame({"key": ["a", "b", "a"], "n": [3 * i, 3 * i + 1, 3 * i + 2]}) for i in range(4)]
    for frame in written:
        spool.write(frame)
    spool.write(pl.DataFrame(schema=schema))  # nothing to keep
    assert_frame_equal(spool.lazy().collect(), pl.concat(written))
    assert [f.height for f in spool.parts()] == [3, 3, 3, 3]
    assert list(tmp_path.iterdir()) == [] if in_memory else len(list(tmp_path.iterdir())) == 4
    split = spool.split_by(pl.DataFrame({"key": ["a"], "_group": [0]}))
    assert all(part.in_memory == in_memory for part in split.values())
    assert split[0].lazy().collect().get_column("n").to_list() == [0, 2, 3, 5, 6, 8, 9, 11]
    assert split[-1].lazy().collect().get_column("n").to_list() == [1, 4, 7, 10]
    spool.remove()
    assert spool.lazy().collect().height == 0


def test_a_spool_split_by_group_keeps_every_row_in_order_and_puts_unknown_keys_in_group_minus_one(
    tmp_path: Path,
) -> None:
    spool = Spool(str(tmp_path), "outputs", 3, pl.Schema({"key": pl.String, "n": pl.Int64}))
    keys = ["a", "b", "c", "d"]
    for part in range(5):
        spool.write(pl.DataFrame({"key": [keys[i % 4] for i in range(40)], "n": range(part * 40, part * 40 + 40)}))
    groups = pl.DataFrame({"key": ["a", "b", "c"], "_group": [0, 0, 7]})
    split = spool.split_by(groups, rows_per_part=25)
    assert sorted(split) == [-1, 0, 7]
    expected = {0: ["a", "b"], 7: ["c"], -1: ["d"]}
    for group, group_keys in expected.items():
        rows = split[group].lazy().collect()
        want = spool.lazy().filter(pl.col("key").is_in(group_keys)).collect()
        assert_frame_equal(rows, want)  # the same rows in the same order
    # a part is written once a group holds 25 rows: group 0 gets 20 rows a part (40, 40, 20), the others 10
    assert [len(split[g].paths) for g in (0, 7, -1)] == [3, 2, 2]
    assert len(spool.paths) == 5  # the spool itself is left as it was


def test_an_event_id_under_two_keys_keeps_dedup_in_one_group() -> None:
    rows = [(0, i, i, f"E{i}", f"K{i % 4}", i // 4 + 1, i, 1.0, 1.0) for i in range(40)]
    rows.append((0, 40, 40, "E0", "K3", 99, 40, 1.0, 1.0))  # E0 again, under another key: a conflicting copy
    frame = events(rows)
    grouped = KeyGroupDedup(frame, max_rows=10)
    assert len(list(grouped.groups())) == 1
    assert_frame_equal(grouped.result().duplicates, dedup(frame).duplicates)


def gap_rows(result: pl.DataFrame) -> list[tuple]:
    return result.select("key", "from_seq", "to_seq", "outside_range").rows()


def test_gap_whose_lower_seq_is_before_the_read_floor_is_outside_the_range() -> None:
    # K-2 (ts 10) was read only because it arrived late; seqs 3..5 may sit before the read start (floor 100)
    rows = [(0, 50, 150, "K-2", "K", 2, 10, 1.0, 1.0), (0, 51, 160, "K-6", "K", 6, 160, 1.0, 1.0)]
    gaps = seq_gaps(events(rows), coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(gaps) == [("K", 3, 5, True)]
    assert dedup(events(rows), coverage=Coverage({0: (100, False)}, 1_000)).counts()["lost_events"] == 0


def test_gap_between_seqs_after_the_floor_and_before_the_end_is_lost() -> None:
    rows = [(0, 50, 150, "K-2", "K", 2, 120, 1.0, 1.0), (0, 51, 160, "K-6", "K", 6, 160, 1.0, 1.0)]
    result = dedup(events(rows), coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(result.gaps) == [("K", 3, 5, False)]
    assert result.counts()["lost_events"] == 3


def test_gap_whose_upper_seq_is_after_the_range_end_is_outside_the_range() -> None:
    # seqs 3..5 happened before K-6 (ts 1_200) but may have arrived after the read's end
    rows = [(0, 50, 150, "K-2", "K", 2, 120, 1.0, 1.0), (0, 51, 1_300, "K-6", "K", 6, 1_200, 1.0, 1.0)]
    result = dedup(events(rows), coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(result.gaps) == [("K", 3, 5, True)]
    assert result.counts()["outside_range_gaps"] == 1
    assert result.counts()["gaps"] == 0


def test_missing_first_seqs_are_lost_only_when_the_read_started_at_offset_zero() -> None:
    rows = [(0, 0, 150, "K-3", "K", 3, 120, 1.0, 1.0), (0, 1, 160, "K-4", "K", 4, 160, 1.0, 1.0)]
    from_origin = seq_gaps(events(rows), coverage=Coverage({0: (None, True)}, until_ms=1_000))
    assert gap_rows(from_origin) == [("K", 1, 2, False)]
    assert seq_gaps(events(rows), coverage=Coverage({0: (100, False)}, until_ms=1_000)).height == 0
    assert seq_gaps(events(rows)).height == 0  # no coverage: interior gaps only, as always


def test_gap_next_to_a_quarantined_lower_seq_is_lost_only_from_the_origin() -> None:
    # the quarantined record shows seq 2 but not its event time: seqs 3..5 may be before the floor
    bad = pl.DataFrame(
        [(0, 50, 150, "K", '{"event_id":"K-2","symbol":"K","seq":2,"ts":"x"}', "wrong type: ts")],
        schema=QUARANTINE,
        orient="row",
    )
    rows = [(0, 51, 160, "K-6", "K", 6, 160, 1.0, 1.0)]
    floor = dedup(events(rows), quarantine=bad, coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(floor.gaps) == [("K", 3, 5, True)]
    origin = dedup(events(rows), quarantine=bad, coverage=Coverage({0: (None, True)}, until_ms=1_000))
    assert gap_rows(origin.gaps) == [("K", 1, 1, False), ("K", 3, 5, False)]


def test_a_malformed_upper_seq_that_shows_its_event_time_bounds_the_gap() -> None:
    # regression (soak seed 4928625): seq 6 arrived malformed (no price) long after the range end; its event
    # time (160) is still readable and before the end, so seqs 3..5 cannot lie after the read: lost
    bad = pl.DataFrame(
        [(0, 60, 5_000, "K", '{"event_id":"K-6","symbol":"K","seq":6,"ts":160,"volume":1}', "missing field: price")],
        schema=QUARANTINE,
        orient="row",
    )
    rows = [(0, 50, 150, "K-2", "K", 2, 120, 1.0, 1.0)]
    result = dedup(events(rows), quarantine=bad, coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(result.gaps) == [("K", 3, 5, False)]
    unreadable = bad.with_columns(pl.lit('{"event_id":"K-6","symbol":"K","seq":6,"volume":1}').alias("value"))
    result = dedup(events(rows), quarantine=unreadable, coverage=Coverage({0: (100, False)}, until_ms=1_000))
    assert gap_rows(result.gaps) == [("K", 3, 5, True)]  # only its Kafka timestamp (after the end) is known


def test_gaps_of_interleaved_keys_in_arrival_order_with_a_seq_shown_twice() -> None:
    # keys arrive interleaved and out of lexical order (Z before A), seqs out of order within a key, and B's
    # seq 3 is both a valid event and in a quarantined record: one seq, no gap at 3, the lost 4 still found
    rows = [
        (0, 0, 10, "Z-3", "Z", 3, 10, 1.0, 1.0),
        (0, 1, 11, "B-1", "B", 1, 11, 1.0, 1.0),
        (0, 2, 12, "Z-1", "Z", 1, 9, 1.0, 1.0),
        (0, 3, 13, "B-3", "B", 3, 13, 1.0, 1.0),
        (0, 4, 14, "A-2", "A", 2, 14, 1.0, 1.0),
        (0, 5, 15, "B-5", "B", 5, 15, 1.0, 1.0),
        (0, 6, 16, "A-5", "A", 5, 16, 1.0, 1.0),
    ]
    bad = (0, 7, 17, "B", '{"event_id":"B-3","symbol":"B","seq":3,"ts":13,"price":"x"}', "wrong type: price")
    quarantined = pl.DataFrame([bad], schema=QUARANTINE, orient="row")
    result = dedup(events(rows), quarantine=quarantined)
    expected = [("A", 3, 4, 2), ("B", 2, 2, 1), ("B", 4, 4, 1), ("Z", 2, 2, 1)]  # by hand, sorted by key and seq
    assert result.gaps.select("key", "from_seq", "to_seq", "missing").rows() == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_first_copies_mark_the_first_of_each_id_like_a_plain_set(seed: int) -> None:
    rnd = random.Random(seed)
    ids = [f"E{rnd.randrange(400)}" if rnd.random() < 0.9 else None for _ in range(1_000)]
    seen: set[str | None] = set()
    expected = []
    for value in ids:  # the reference: a plain set of the ids seen so far
        expected.append(value not in seen)
        seen.add(value)
    got = _first_copies(pl.Series(ids, dtype=pl.String))
    assert got is not None and got[1].to_list() == expected
    # every row whose id occurs more than once is among the suspects (the rest of the dedup looks there only)
    repeated = [ids.count(value) > 1 for value in ids]
    assert all(suspect for suspect, rep in zip(got[0].to_list(), repeated, strict=True) if rep)
    assert _first_copies(pl.Series([f"E{i}" for i in range(1_000)])) is None  # no id repeats


def test_parts_on_disk_and_in_memory_are_read_back_in_the_order_given(tmp_path: Path) -> None:
    schema = pl.Schema({"key": pl.String, "n": pl.Int64})
    frames = [pl.DataFrame({"key": ["a", "b"], "n": [2 * i, 2 * i + 1]}) for i in range(5)]
    on_disk = Spool(str(tmp_path), "truth", 0, schema)
    held = Spool(str(tmp_path), "truth", 1, schema, in_memory=True)
    for i, frame in enumerate(frames):
        (held if i in (2, 3) else on_disk).write(frame)
    parts = [*on_disk.held()[:2], *held.held(), *on_disk.held()[2:]]  # files, frames, files
    assert [type(part) for part in parts] == [str, str, pl.DataFrame, pl.DataFrame, str]
    assert_frame_equal(scan_parts(parts, schema).collect(), pl.concat(frames))
    assert_frame_equal(scan_parts([], schema).collect(), pl.DataFrame(schema=schema))
