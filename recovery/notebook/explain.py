"""Why a result is wrong: the input events behind the truth, and what the original counted instead.

For a sample of each discrepancy class, the events a recomputed result is made of
(:func:`recovery.pipeline.calibrate.events_behind`) are listed. When the published record says what it
was computed from (the toolkit's own output record carries ``count``, ``partition``, ``first_offset`` and
``last_offset``; any JSON layout with such top-level fields does too), each event is marked: counted by
the original, missed by it, or counted twice (a duplicate copy inside the original's offsets), and records
the original counted that the truth does not hold are listed as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from recovery.frames import STATUSES
from recovery.kafka.small import read_topic
from recovery.notebook.explore import Case, Text
from recovery.notebook.tables import cell_text
from recovery.notebook.timefmt import ISO_COLUMN_FORMAT
from recovery.pipeline.calibrate import events_behind
from recovery.pipeline.dedup import dedup
from recovery.pipeline.recover import RecoveryReport
from recovery.records.validate import validate
from recovery.replay.bounded import replay
from recovery.source import KafkaSource
from recovery.spec import PipelineSpec
from recovery.timerange import format_ms

PER_CLASS = 2
MAX_EVENTS_SHOWN = 12
COUNTED, MISSED, TWICE, NOT_IN_TRUTH, BEHIND = "counted", "missed", "counted twice", "not in truth", "behind truth"
PUBLISHED_FIELDS = ("count", "partition", "first_offset", "last_offset")


@dataclass(frozen=True)
class Published:
    """What an original output record says about its inputs (each None when the layout does not carry it)."""

    partition: int
    offset: int
    count: int | None
    input_partition: int | None
    first_offset: int | None
    last_offset: int | None

    @property
    def has_offsets(self) -> bool:
        return None not in (self.input_partition, self.first_offset, self.last_offset)


@dataclass(frozen=True)
class Explanation:
    """One discrepancy and the events behind it."""

    key: str
    metric: str
    window: int
    time_ms: int
    status: str
    original: float | None
    corrected: float | None
    events: pl.DataFrame  # the events behind the truth, with an ``original`` column when it can be told
    published: list[Published]

    @property
    def truth_events(self) -> pl.DataFrame:
        """The events the recomputed result is made of."""
        return self.events.filter(pl.col("original").is_in([COUNTED, MISSED, BEHIND]))

    @property
    def missed(self) -> pl.DataFrame:
        """Events behind the truth the original did not count."""
        return self.events.filter(pl.col("original") == MISSED)

    @property
    def counted_twice(self) -> pl.DataFrame:
        """Duplicate copies the original counted as events of their own."""
        return self.events.filter(pl.col("original") == TWICE)


@dataclass(frozen=True)
class RangeEvents:
    """The range's valid records as they arrived (duplicates included) and the unique events, with lookback."""

    arrived: pl.DataFrame
    events: pl.DataFrame


def range_events(case: Case) -> RangeEvents:
    """Replay the case's raw range with the lookback its metrics need; validate and deduplicate it."""
    spec = case.spec
    raw = replay(
        KafkaSource(spec.topics.raw, case.settings),
        from_ms=case.from_ms,
        to_ms=case.to_ms,
        spec=spec,  # the lookback its metrics need
        quiet=True,
    )
    arrived, quarantine = validate(raw.frame(), spec)
    return RangeEvents(arrived, dedup(arrived, quarantine=quarantine, fields=spec.layout).events)


def sample(comparison: pl.DataFrame, per_class: int = PER_CLASS) -> pl.DataFrame:
    """The first ``per_class`` results of each non-ok class, in time order."""
    bad = comparison.filter(pl.col("status") != "ok").sort("time_ms", "key", "metric", "window")
    return pl.concat([bad.filter(pl.col("status") == s).head(per_class) for s in STATUSES if s != "ok"])


def published_records(case: Case, originals: pl.DataFrame) -> dict[tuple[int, int], Published]:
    """What each given original output record (partition, offset) says about its inputs."""
    wanted = originals.select("partition", "offset").unique().sort("partition", "offset")
    found: dict[tuple[int, int], Published] = {}
    if wanted.height == 0:
        return found
    source = KafkaSource(case.spec.topics.output, case.settings)
    for (partition,), rows in wanted.group_by(["partition"], maintain_order=True):
        offsets = set(rows.get_column("offset").to_list())
        records = read_topic(source, offsets={int(partition): (min(offsets), max(offsets) + 1)})
        for row in records.filter(pl.col("offset").is_in(list(offsets))).iter_rows(named=True):
            fields = _record_fields(row["value"])
            found[(row["partition"], row["offset"])] = Published(
                row["partition"],
                row["offset"],
                fields.get("count"),
                fields.get("partition"),
                fields.get("first_offset"),
                fields.get("last_offset"),
            )
    return found


def _record_fields(value: bytes | None) -> dict[str, int]:
    """The integer count and offset fields at the top of a JSON record value (none for other layouts)."""
    try:
        data = json.loads(value) if value else None
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k in PUBLISHED_FIELDS if isinstance(v := data.get(k), int) and not isinstance(v, bool)}


def mark_events(
    behind: pl.DataFrame, arrived: pl.DataFrame, spec: PipelineSpec, row: dict[str, Any], published: Published | None
) -> pl.DataFrame:
    """The events behind the truth, each marked counted / missed / counted twice by the original record.

    The original counted the key's records of its input partition between its first and last offset (and,
    for a time window, with an event time in the window); a second copy of an event among them was counted
    twice, and a record among them that the truth does not hold is added as ``not in truth``.
    """
    if published is None or not published.has_offsets:
        return behind.with_columns(pl.lit(BEHIND).alias("original"))
    metric = spec.metric(row["metric"])
    counted = arrived.filter(
        (pl.col("key") == row["key"])
        & (pl.col("partition") == published.input_partition)
        & pl.col("offset").is_between(published.first_offset, published.last_offset)
    )
    if metric.is_windowed and metric.window_ms is not None:
        counted = counted.filter(
            pl.col("ts").is_between(row["window"], row["window"] + metric.window_ms, closed="left")
        )
    counted = counted.sort("offset").with_columns(pl.col("event_id").cum_count().over("event_id").alias("_copy"))
    firsts = counted.filter(pl.col("_copy") == 1)
    truth_ids = set(behind.get_column("event_id").to_list())
    marked = behind.with_columns(
        pl.when(pl.col("event_id").is_in(firsts.get_column("event_id").to_list()))
        .then(pl.lit(COUNTED))
        .otherwise(pl.lit(MISSED))
        .alias("original")
    )
    extra = pl.concat(
        [
            counted.filter(pl.col("_copy") > 1).with_columns(pl.lit(TWICE).alias("original")),
            firsts.filter(~pl.col("event_id").is_in(list(truth_ids))).with_columns(
                pl.lit(NOT_IN_TRUTH).alias("original")
            ),
        ]
    ).select(marked.columns)
    return pl.concat([marked, extra]).sort("partition", "offset")


def explain(
    case: Case, comparison: pl.DataFrame, originals: pl.DataFrame, per_class: int = PER_CLASS
) -> list[Explanation]:
    """A sample of each discrepancy class with the events behind it (see the module docstring)."""
    chosen = sample(comparison, per_class)
    if chosen.height == 0:
        return []
    spec = case.spec
    data = range_events(case)
    copies = originals.join(chosen.select("key", "metric", "window"), on=["key", "metric", "window"], how="semi")
    records = published_records(case, copies)
    out = []
    for row in chosen.iter_rows(named=True):
        mine = copies.filter(
            (pl.col("key") == row["key"]) & (pl.col("metric") == row["metric"]) & (pl.col("window") == row["window"])
        ).sort("partition", "offset")
        published = [records[k] for k in mine.select("partition", "offset").iter_rows() if k in records]
        behind = events_behind(data.events, spec.metric(row["metric"]), row["key"], row["window"])
        events = mark_events(behind, data.arrived, spec, row, published[-1] if published else None)
        out.append(
            Explanation(
                row["key"],
                row["metric"],
                row["window"],
                row["time_ms"],
                row["status"],
                row["original"],
                row["corrected"],
                events,
                published,
            )
        )
    return out


def why_wrong(case: Case, report: RecoveryReport, per_class: int = PER_CLASS) -> Text:
    """For a sample of each discrepancy class of a recovery: the events behind the truth, and the original's."""
    return explanations_text(explain(case, report.comparison, report.originals, per_class), case.spec)


def _window_text(spec: PipelineSpec, e: Explanation) -> str:
    if spec.metric(e.metric).is_windowed:
        return f"window {format_ms(e.window)}"
    return f"seq {e.window} ({format_ms(e.time_ms)})"


def _published_text(e: Explanation) -> str:
    if not e.published:
        return "nothing was published"
    last = e.published[-1]
    text = f"published {cell_text(e.original)}"
    if len(e.published) > 1:
        text += f" ({len(e.published)} copies, at offsets {', '.join(str(p.offset) for p in e.published)})"
    if last.count is not None:
        text += f" from {last.count:,} event(s)"
    if last.has_offsets:
        text += f" at offsets {last.first_offset}..{last.last_offset} of raw partition {last.input_partition}"
    return text


def _events_table(events: pl.DataFrame, spec: PipelineSpec) -> str:
    columns = ["original", "event_id", "partition", "offset", "ts", *([] if spec.layout.seq is None else ["seq"])]
    columns += [c for c in spec.value_fields if c in events.columns]
    shown = events.head(MAX_EVENTS_SHOWN).with_columns(
        pl.from_epoch("ts", time_unit="ms").dt.strftime(ISO_COLUMN_FORMAT).alias("ts")
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in shown.select([c for c in columns if c in shown.columns]).iter_rows(named=True):
        lines.append("| " + " | ".join(cell_text(row.get(c), c).replace("|", "\\|") for c in columns) + " |")
    if events.height > MAX_EVENTS_SHOWN:
        lines.append(f"\n... and {events.height - MAX_EVENTS_SHOWN:,} more")
    return "\n".join(lines)


def explanations_text(explanations: list[Explanation], spec: PipelineSpec) -> Text:
    """The explanations as Markdown: per result, what was published, the truth, and the events behind it."""
    if not explanations:
        return Text("No discrepancies: nothing to explain.")
    parts = []
    for e in explanations:
        head = f"#### {e.status}: `{e.metric}` of `{e.key}`, {_window_text(spec, e)}"
        truth = "no result" if e.corrected is None else cell_text(e.corrected)
        summary = f"{_published_text(e)}; the truth is {truth} from {e.truth_events.height:,} event(s)."
        tally = []
        for label, frame in ((MISSED, e.missed), (TWICE, e.counted_twice)):
            if frame.height:
                tally.append(f"**{frame.height:,} {label}** by the original")
        extra = e.events.filter(pl.col("original") == NOT_IN_TRUTH).height
        if extra:
            tally.append(f"**{extra:,} counted** that the truth does not hold")
        line = f"{summary} " + ("; ".join(tally) + "." if tally else "")
        body = _events_table(e.events, spec) if e.events.height else "_No input events behind this result._"
        parts.append(f"{head}\n\n{line.strip()}\n\n{body}")
    return Text("\n\n".join(parts))
