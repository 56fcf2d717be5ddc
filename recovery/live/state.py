"""The live worker's processing, without Kafka: its window state between batches (the spec's window maths,
shared with the recompute), the parsing of a batch of records, and :func:`emulate_live`, the worker replayed
in memory with the same fault hooks (the simulator's model of what was published).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from recovery.errors import ConfigError, SpecError
from recovery.frames import RECORDS, events_schema
from recovery.live.hooks import BugHook, CrashHook
from recovery.metrics.aggregations import value_expr
from recovery.metrics.counts import count_window_exprs, position_in_group, window_id
from recovery.metrics.windows import (
    LIVE_RESULTS,
    SHORT_WINDOW,
    empty_windows,
    grid_of,
    merge_windows,
    pane_sums,
    tail_schema,
    watermark_seen_before,
    windows_from_panes,
)
from recovery.records.events import parse_event
from recovery.records.reasons import reason_category
from recovery.spec import PipelineSpec

log = logging.getLogger("recovery.live.worker")

# A malformed record as the worker saw it: where, and the category of its reason.
MALFORMED = pl.Schema({"partition": pl.Int32, "offset": pl.Int64, "category": pl.String})


class LiveState:
    """What the live worker keeps between polled batches, and the processing of one batch.

    ``process`` takes valid events in arrival order (rows of a partition in offset order) and returns the
    results to publish now (LIVE_RESULTS): a count-window result per event, and every tumbling or hopping
    window the batch closed. The state (count-window tails, partials of open windows, max event time per
    partition) lives only in memory: a restarted worker starts cold, as a real one would. Session windows,
    user functions and count windows without partial results are not run live (recomputed only): a spec
    with one is refused.
    """

    def __init__(self, spec: PipelineSpec) -> None:
        refused = [
            m.name for m in spec.metrics if m.agg == "function" or m.window_kind == "session" or not m.emits_partial
        ]
        if refused:
            raise SpecError(
                f"the live worker cannot run metric(s) {', '.join(refused)}: session windows, user functions "
                "and count windows with partial = false are recomputed only",
                path=spec.source,
                hint="run them in your own pipeline; recovery recomputes them from the raw events",
            )
        self.spec = spec
        self.sma_metrics = tuple(m for m in spec.metrics if m.window_kind == "count")
        self.window_metrics = tuple(m for m in spec.metrics if m.is_windowed)
        self.tail_n = max((m.n or 1 for m in self.sma_metrics), default=1) - 1
        self.tail = tail_schema(spec)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a cold start)."""
        self.tails = pl.DataFrame(schema=self.tail)
        self.open = {m.name: empty_windows(m, with_offsets=True) for m in self.window_metrics}
        self.max_ts: dict[int, int] = {}
        self.late = {m.name: 0 for m in self.window_metrics}
        self.late_events = 0

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this worker no longer owns (after a rebalance)."""
        gone = list(partitions)
        if not gone:
            return
        self.tails = self.tails.filter(~pl.col("partition").is_in(gone))
        self.open = {name: f.filter(~pl.col("partition").is_in(gone)) for name, f in self.open.items()}
        for p in gone:
            self.max_ts.pop(p, None)

    @property
    def open_windows(self) -> int:
        """Windows started but not closed yet (never published if the stream ends here)."""
        return sum(f.height for f in self.open.values())

    def process(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Results to publish after ``batch`` (EVENTS columns, arrival order, optional SHORT_WINDOW column)."""
        if batch.height == 0:
            return pl.DataFrame(schema=LIVE_RESULTS)
        out = []
        if self.sma_metrics:
            out.append(self._sma(batch))
        if self.window_metrics:
            out.append(self._windows(batch))
        return pl.concat(out)

    def _sma(self, batch: pl.DataFrame) -> pl.DataFrame:
        short = pl.col(SHORT_WINDOW) if SHORT_WINDOW in batch.columns else pl.lit(False)
        new = batch.select(*self.tail, short.alias(SHORT_WINDOW), pl.lit(True).alias("_new"))
        keys = new.get_column("key").unique()
        touched = self.tails.filter(pl.col("key").is_in(keys.implode()))
        kept = self.tails.filter(~pl.col("key").is_in(keys.implode()))
        old = touched.with_columns(pl.lit(False).alias(SHORT_WINDOW), pl.lit(False).alias("_new"))
        combined = pl.concat([old, new]).sort("key", maintain_order=True)
        combined = combined.with_columns(position_in_group(pl.col("key")).alias("_pos"))
        parts = []
        for m in self.sma_metrics:
            value, count = count_window_exprs(m, pl.col("_pos"), pl.col(SHORT_WINDOW))
            idx = pl.int_range(pl.len(), dtype=pl.Int64)
            parts.append(
                combined.select(
                    pl.col("key"),
                    pl.lit(m.name, dtype=pl.String).alias("metric"),
                    window_id().alias("window"),
                    pl.col("ts").alias("time_ms"),
                    value.alias("value"),
                    count.cast(pl.Int64).alias("count"),
                    pl.col("partition"),
                    pl.col("offset").gather(idx - count + 1).alias("first_offset"),
                    pl.col("offset").alias("last_offset"),
                    pl.col("_new"),
                )
                .filter(pl.col("_new"))
                .drop("_new")
            )
        if self.tail_n > 0:
            tails = combined.select(*self.tail).group_by("key", maintain_order=True).tail(self.tail_n)
            self.tails = pl.concat([kept, tails])
        return pl.concat(parts)

    def _windows(self, batch: pl.DataFrame) -> pl.DataFrame:
        frame = batch.with_columns(watermark_seen_before(batch, self.max_ts).alias("_seen"))
        for row in frame.group_by("partition").agg(pl.col("ts").max()).iter_rows():
            partition, ts_max = row
            self.max_ts[partition] = max(self.max_ts.get(partition, ts_max), ts_max)
        late_any = pl.repeat(False, frame.height, eager=True)
        parts = []
        for m in self.window_metrics:
            grid = grid_of(m)
            with_floor = frame.with_columns(grid.first_open(pl.col("_seen") - m.grace_ms).alias("_floor"))
            late = with_floor.select(grid.is_late(pl.col("ts"), pl.col("_floor"))).to_series()
            self.late[m.name] += int(late.sum())
            late_any = late_any | late
            panes = pane_sums(with_floor.filter(~late), grid, [m], floor="_floor", with_offsets=True)
            fresh = windows_from_panes(panes, m, grid, with_offsets=True)
            merged = merge_windows([self.open[m.name], fresh], m, with_offsets=True)
            closes = pl.col("end") <= pl.col("partition").replace_strict(
                list(self.max_ts), [t - m.grace_ms for t in self.max_ts.values()], default=None, return_dtype=pl.Int64
            )
            flagged = merged.with_columns(closes.fill_null(False).alias("_closed"))
            self.open[m.name] = flagged.filter(~pl.col("_closed")).drop("_closed")
            closed = flagged.filter(pl.col("_closed")).sort("key", "window")
            parts.append(
                closed.select(
                    pl.col("key"),
                    pl.lit(m.name, dtype=pl.String).alias("metric"),
                    pl.col("window"),
                    pl.col("window").alias("time_ms"),
                    value_expr(m).alias("value"),
                    pl.col("count"),
                    pl.col("partition"),
                    pl.col("first_offset"),
                    pl.col("last_offset"),
                )
            )
        self.late_events += int(late_any.sum())
        return pl.concat(parts)


@dataclass
class LiveStats:
    """Counters of one worker run (printed as the run's summary)."""

    worker: str = ""
    records: int = 0
    events: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    late: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    outputs: int = 0
    commits: int = 0
    open_windows: int = 0
    partitions: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["malformed"] = dict(sorted(self.malformed.items()))
        d["malformed_total"] = self.malformed_total
        d["events_per_s"] = round(self.events_per_s, 1)
        d["seconds"] = round(self.seconds, 3)
        return d


class Processor:
    """The Kafka-free part of the worker: raw records in, results to publish out (shared with the emulation)."""

    def __init__(self, spec: PipelineSpec, bugs: Sequence[BugHook] = ()) -> None:
        self.spec = spec
        self.bugs = tuple(bugs)
        self.state = LiveState(spec)
        self.stats = LiveStats()

    def events_of(self, partition: int, records: Iterable[tuple[int, int, bytes | None]]) -> pl.DataFrame:
        """EVENTS of the valid records among (offset, timestamp_ms, value); malformed ones are counted."""
        schema = events_schema(self.spec.value_fields)
        columns: dict[str, list[Any]] = {name: [] for name in schema}
        layout = self.spec.layout
        for offset, timestamp_ms, value in records:
            self.stats.records += 1
            event = parse_event(value, layout, timestamp_ms)
            if isinstance(event, str):
                self.stats.malformed[reason_category(event)] += 1
                log.debug("skip malformed %s[%d]@%d: %s", self.spec.topics.raw, partition, offset, event)
                continue
            columns["partition"].append(partition)
            columns["offset"].append(offset)
            columns["timestamp_ms"].append(timestamp_ms)
            for name in ("event_id", "key", "seq", "ts", *self.spec.value_fields):
                columns[name].append(event[name])
        return pl.DataFrame(columns, schema=schema)

    def process(self, partition: int, records: Sequence[tuple[int, int, bytes | None]]) -> pl.DataFrame:
        """LIVE_RESULTS to publish after ``records`` of ``partition`` (offset order)."""
        return self.process_events(self.events_of(partition, records))

    def process_events(self, events: pl.DataFrame) -> pl.DataFrame:
        """LIVE_RESULTS to publish after valid ``events`` (EVENTS, arrival order)."""
        self.stats.events += events.height
        for bug in self.bugs:
            events = bug.apply(events)
        results = self.state.process(events)
        self.stats.late = dict(self.state.late)
        self.stats.late_events = self.state.late_events
        self.stats.open_windows = self.state.open_windows
        return results

    def cold_restart(self) -> None:
        """What a killed and restarted worker has: no state (counters carry on)."""
        late, late_events = dict(self.state.late), self.state.late_events
        self.state.reset()
        self.state.late, self.state.late_events = late, late_events


# ----------------------------------------------------------------------------------------------------------
# The emulation (no Kafka): what a bounded run with these hooks publishes


def parse_records(records: pl.DataFrame, spec: PipelineSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the worker's per-record parse makes of RECORDS: (EVENTS, MALFORMED) in record order."""
    schema = events_schema(spec.value_fields)
    good: dict[str, list[Any]] = {name: [] for name in schema}
    bad: dict[str, list[Any]] = {name: [] for name in MALFORMED}
    for partition, offset, timestamp_ms, _key, value in records.select(RECORDS.names()).iter_rows():
        parsed = parse_event(value, spec.layout, timestamp_ms)
        if isinstance(parsed, str):
            for name, item in zip(MALFORMED.names(), (partition, offset, reason_category(parsed)), strict=True):
                bad[name].append(item)
            continue
        good["partition"].append(partition)
        good["offset"].append(offset)
        good["timestamp_ms"].append(timestamp_ms)
        for name in ("event_id", "key", "seq", "ts", *spec.value_fields):
            good[name].append(parsed[name])
    return pl.DataFrame(good, schema=schema), pl.DataFrame(bad, schema=MALFORMED)


def emulate_live(
    records: pl.DataFrame,
    spec: PipelineSpec,
    *,
    crashes: Sequence[CrashHook] = (),
    bugs: Sequence[BugHook] = (),
    parsed: tuple[pl.DataFrame, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, LiveStats]:
    """(LIVE_RESULTS, stats) of bounded worker runs over ``records`` (RECORDS of the raw topic), crashes included.

    Mirrors the worker: partitions drained in order, each in offset order; a crash restarts it cold from
    its last commit. Crashes apply in (partition, offset) order, one per worker run. ``parsed`` may pass
    what :func:`parse_records` returns for ``records`` when the caller knows it already.
    """
    events, malformed = parsed if parsed is not None else parse_records(records, spec)
    proc = Processor(spec, bugs)
    stats = proc.stats
    outs: list[pl.DataFrame] = []

    def run(partition: int, lo: int, hi: int | None) -> None:
        def within(frame: pl.DataFrame) -> pl.DataFrame:
            cond = (pl.col("partition") == partition) & (pl.col("offset") >= lo)
            return frame.filter(cond if hi is None else cond & (pl.col("offset") < hi))

        stats.records += within(records).height
        stats.malformed.update(within(malformed).get_column("category").to_list())
        outs.append(proc.process_events(within(events).sort("offset")))

    pending = sorted(crashes, key=lambda c: (c.partition, c.offset))
    partitions = records.get_column("partition").unique().sort().to_list()
    for partition in partitions:
        last_offset = records.filter(pl.col("partition") == partition).get_column("offset").max()
        start = 0  # the committed position
        for crash in [c for c in pending if c.partition == partition]:
            if crash.offset < start:
                raise ConfigError(f"crash hook {crash} falls inside the span of an earlier crash")
            if last_offset is None or crash.offset > last_offset:  # type: ignore[operator]
                continue  # never reached: the run ends before it
            run(partition, start, crash.offset)
            if crash.mode == "commit-after":
                run(partition, crash.offset, crash.offset + crash.span)
                start = crash.offset
            else:
                start = crash.offset + crash.span
            proc.cold_restart()
        run(partition, start, None)
    stats.outputs = sum(o.height for o in outs)
    stats.partitions = partitions
    return (pl.concat(outs) if outs else pl.DataFrame(schema=LIVE_RESULTS)), stats


# ----------------------------------------------------------------------------------------------------------
