"""Kafka time against event time: ranges are found by Kafka timestamp, events are judged by their own time.

When the two disagree (a backfilled topic stamped with the write time, producer-set timestamps), a range around
the event times reads nothing and a range around the Kafka times reads events that fall outside it.
:class:`StampSkew` counts the events whose Kafka timestamp is further than the slack from their event time,
so the recovery can say so in one line and what to do; :func:`check_compared` refuses a recovery that read
events but compared nothing, instead of writing an empty fix set.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recovery.errors import DataError
from recovery.replay.plan import EVENT_TIME, KAFKA_TIME

SKEW_SHARE = 0.05  # more than this share of the events stamped beyond the slack: the time bases disagree


@dataclass
class StampSkew:
    """Events read, and those whose Kafka timestamp is more than ``slack_ms`` away from their event time."""

    slack_ms: int
    events: int = 0
    skewed: int = 0
    max_ms: int = 0  # the largest |Kafka timestamp - event time| among the skewed events

    def add(self, events: pl.DataFrame) -> None:
        """Count an EVENTS frame (``timestamp_ms``: Kafka time, ``ts``: event time)."""
        if events.height == 0:
            return
        gap = (pl.col("timestamp_ms") - pl.col("ts")).abs()
        skewed, largest = events.select((gap > self.slack_ms).sum().alias("n"), gap.max().alias("max")).row(0)
        self.events += events.height
        self.skewed += int(skewed)
        if skewed:
            self.max_ms = max(self.max_ms, int(largest))

    def merge(self, other: StampSkew) -> None:
        self.events += other.events
        self.skewed += other.skewed
        self.max_ms = max(self.max_ms, other.max_ms)

    @property
    def disagrees(self) -> bool:
        return self.events > 0 and self.skewed > SKEW_SHARE * self.events

    def finding(self) -> str:
        """What disagrees: how many events are stamped how far from their event time."""
        share = 100 * self.skewed / self.events if self.events else 0.0
        return (
            f"Kafka timestamps are not event times here: {self.skewed:,} of {self.events:,} events read "
            f"({share:.0f} %) are stamped more than --slack-ms {self.slack_ms:,} ms away from their event time "
            f"(up to {_duration(self.max_ms)})"
        )

    def advice(self) -> str:
        """What to do about it."""
        return (
            f"ranges are found by Kafka time: use --time-basis {EVENT_TIME} (scans whole partitions by offset, "
            f"judges events by event time) or a --slack-ms of at least {self.max_ms:,}"
        )

    def line(self) -> str:
        """The one line that says the time bases disagree and what to do."""
        return f"{self.finding()}; {self.advice()}"


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_compared(events: int, compared: int, skew: StampSkew | None, time_basis: str, where: str) -> list[str]:
    """:class:`DataError` when ``events`` valid events were read, no result was compared and Kafka time and event
    time disagree (the range was found by the wrong time); the note to print when nothing was compared otherwise.

    Events read with no result in the range is otherwise a legitimate outcome (only lookback or late events),
    but never a silent one: the note says so.
    """
    if events == 0 or compared > 0:
        return []
    if skew is not None and skew.disagrees and time_basis == KAFKA_TIME:
        raise DataError(
            f"{events:,} events read from {where} but no result compared: {skew.finding()}", hint=skew.advice()
        )
    return [
        f"note: {events:,} events read from {where}, none with a result in the range by event time: nothing "
        "was compared and the fix set is empty; check the range against the events' own times"
        + (f" (or --time-basis {EVENT_TIME})" if time_basis == KAFKA_TIME else "")
    ]
