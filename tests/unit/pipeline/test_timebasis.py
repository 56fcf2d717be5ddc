"""Kafka time against event time: the count of events stamped beyond the slack, and the empty-comparison check."""

from __future__ import annotations

import polars as pl
import pytest

from recovery.errors import DataError
from recovery.pipeline.timebasis import StampSkew, check_compared


def events(pairs: list[tuple[int, int]]) -> pl.DataFrame:
    """EVENTS-like rows of (Kafka timestamp, event time)."""
    return pl.DataFrame(pairs, schema={"timestamp_ms": pl.Int64, "ts": pl.Int64}, orient="row")


def test_events_stamped_beyond_the_slack_either_way_are_counted_with_the_largest_gap() -> None:
    skew = StampSkew(slack_ms=1_000)
    skew.add(events([(10_000, 10_000), (11_000, 10_000), (15_000, 10_000)]))  # 0, 1000 (not beyond), 5000
    skew.add(events([(2_000, 10_000)]))  # stamped 8 s before its event time
    skew.add(events([]))
    assert (skew.events, skew.skewed, skew.max_ms) == (4, 2, 8_000)
    assert skew.disagrees
    line = skew.line()
    assert "2 of 4 events" in line and "--time-basis event" in line and "--slack-ms of at least 8,000" in line


def test_a_few_late_events_are_no_disagreement_and_merging_adds_up() -> None:
    a, b = StampSkew(1_000), StampSkew(1_000)
    a.add(events([(0, 0)] * 99))
    b.add(events([(5_000, 0)]))
    a.merge(b)
    assert (a.events, a.skewed, a.max_ms) == (100, 1, 5_000)
    assert not a.disagrees


def test_events_read_but_nothing_compared_is_an_error_when_the_times_disagree_and_a_note_otherwise() -> None:
    assert check_compared(0, 0, None, "kafka", "topic t") == []  # nothing read: another check's business
    assert check_compared(10, 3, None, "kafka", "topic t") == []
    (note,) = check_compared(10, 0, StampSkew(1_000), "kafka", "topic t")
    assert "10 events read from topic t" in note and "nothing was compared" in note
    skew = StampSkew(1_000)
    skew.add(events([(3_600_000, 0)] * 10))
    with pytest.raises(DataError, match="10 events read from topic t but no result compared: Kafka timestamps") as e:
        check_compared(10, 0, skew, "kafka", "topic t")
    assert e.value.hint is not None and "--time-basis event" in e.value.hint
    assert "--time-basis" not in check_compared(10, 0, skew, "event", "topic t")[0]
