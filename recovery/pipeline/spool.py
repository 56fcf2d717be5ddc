"""Spooling between the steps of a partition's recovery: what each replayed batch turns into, written to disk
as it arrives and read back lazily, so a partition's frames are never all in memory at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from recovery.frames import QUARANTINE, concat_or_empty, empty
from recovery.pipeline.timebasis import StampSkew
from recovery.records.outputs import decode_outputs
from recovery.records.validate import validate
from recovery.replay.plan import EVENT_TIME, KAFKA_TIME
from recovery.spec import PipelineSpec

# rows per part when a partition's spool is split by key group (a part per group at a time is buffered)
SPLIT_ROWS = 20_000


Part = str | pl.DataFrame  # a spooled part: an Arrow IPC file, or a frame held in memory


def scan_parts(parts: Sequence[Part], schema: pl.Schema) -> pl.LazyFrame:
    """Spooled parts (Arrow IPC files, or frames held in memory) as one lazy frame in the order given; an empty
    frame of ``schema`` for none."""
    if not parts:
        return empty(schema).lazy()
    pieces: list[pl.LazyFrame] = []  # runs of files scanned together, frames as they are
    paths: list[str] = []
    for part in parts:
        if isinstance(part, str):
            paths.append(part)
            continue
        if paths:
            pieces.append(pl.scan_ipc(paths))
            paths = []
        pieces.append(part.lazy())
    if paths:
        pieces.append(pl.scan_ipc(paths))
    return pieces[0] if len(pieces) == 1 else pl.concat(pieces)


class Spool:
    """Arrow IPC parts of one kind of frame of one partition, written batch by batch, read back lazily.

    Uncompressed IPC: the parts are read back within the run, and writing them is several times cheaper than
    Parquet (no encoding, no compression) for the same read-back cost. ``in_memory``: the parts are kept as
    frames instead (for a partition small enough that writing and reading them back costs more than holding them).
    """

    def __init__(self, work_dir: str, name: str, partition: int, schema: pl.Schema, *, in_memory: bool = False) -> None:
        self.work_dir, self.name, self.partition = work_dir, name, partition
        self.prefix = str(Path(work_dir) / f"{name}-p{partition:05d}")
        self.schema = schema
        self.in_memory = in_memory
        self.paths: list[str] = []
        self.frames: list[pl.DataFrame] = []  # the parts of a spool in memory

    def write(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        if self.in_memory:
            self.frames.append(frame)
            return
        path = f"{self.prefix}-{len(self.paths):04d}.arrow"
        frame.write_ipc(path, compression="uncompressed")
        self.paths.append(path)

    def lazy(self) -> pl.LazyFrame:
        return scan_parts(self.held(), self.schema)

    def held(self) -> list[Part]:
        """The parts: the files written, or the frames held in memory."""
        return [*self.frames] if self.in_memory else [*self.paths]

    def parts(self) -> Iterator[pl.DataFrame]:
        """The parts in the order written."""
        yield from self.frames
        for path in self.paths:
            yield pl.read_ipc(path)

    def remove(self) -> None:
        for path in self.paths:
            Path(path).unlink(missing_ok=True)
        self.paths = []
        self.frames = []

    def split_by(self, groups: pl.DataFrame, rows_per_part: int = SPLIT_ROWS) -> dict[int, Spool]:
        """This spool's rows spooled again by key group, in one pass: ``groups`` is (key, _group); keys not in it
        go to group -1. Each group's rows keep their order; a group's buffer is written every ``rows_per_part``."""
        spools: dict[int, Spool] = {}
        pending: dict[int, list[pl.DataFrame]] = {}
        counts: dict[int, int] = {}

        def flush(group: int) -> None:
            if group not in spools:
                name = f"{self.name}-g{group}"
                spools[group] = Spool(self.work_dir, name, self.partition, self.schema, in_memory=self.in_memory)
            spools[group].write(pl.concat(pending.pop(group)))
            counts[group] = 0

        labelled = groups.select("key", pl.col("_group").cast(pl.Int64))
        for part in self.parts():
            frame = part.join(labelled, on="key", how="left", maintain_order="left")
            frame = frame.with_columns(pl.col("_group").fill_null(-1))
            for (group,), rows in frame.partition_by("_group", as_dict=True, include_key=False).items():
                pending.setdefault(int(group), []).append(rows)
                counts[int(group)] = counts.get(int(group), 0) + rows.height
                if counts[int(group)] >= rows_per_part:
                    flush(int(group))
        for group in list(pending):
            flush(group)
        return spools


class SpoolSink:
    """A replay sink that spools what each batch turns into and keeps the quarantined records in memory."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.quarantine: list[pl.DataFrame] = []

    def frame(self) -> pl.DataFrame | None:
        return None  # nothing is kept in memory: the spool holds it

    def discard(self) -> None:
        self.quarantine = []
        self.spool.remove()


class EventSink(SpoolSink):
    """Validates each replayed batch as it arrives and spools its events; keeps only the quarantine."""

    def __init__(
        self, spec: PipelineSpec, from_ms: int, to_ms: int, slack_ms: int, spool: Spool, time_basis: str = KAFKA_TIME
    ) -> None:
        super().__init__(spool)
        self.spec = spec
        self.time_basis = time_basis
        # records with a Kafka timestamp in [from, to + slack); for the event basis, events timed in [from, to)
        self.inside = (
            pl.col("ts").is_between(from_ms, to_ms, closed="left")
            if time_basis == EVENT_TIME
            else pl.col("timestamp_ms").is_between(from_ms, to_ms + slack_ms, closed="left")
        )
        self.in_range = 0
        self.skew = StampSkew(slack_ms)

    def add(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        events, bad = validate(frame, self.spec)
        self.spool.write(events)
        if bad.height:
            self.quarantine.append(bad)
        counted = events if self.time_basis == EVENT_TIME else frame
        self.in_range += int(counted.select(self.inside.sum()).item())
        self.skew.add(events)
        return events

    def bad(self) -> pl.DataFrame:
        """QUARANTINE in offset order (the sma lookback reads earlier chunks last)."""
        return _in_offset_order(self.quarantine, QUARANTINE)


def _in_offset_order(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    """Frames of one partition, each in offset order, concatenated in offset order (without a sort)."""
    ordered = sorted((f for f in frames if f.height), key=lambda f: f.item(0, "offset"))
    return pl.concat(ordered) if ordered else empty(schema)


class OutputSink(SpoolSink):
    """Decodes each replayed batch of the output topic as it arrives and spools the results."""

    def __init__(self, spool: Spool, spec: PipelineSpec | None = None) -> None:
        super().__init__(spool)
        self.spec = spec
        self.keys: set[str] = set()
        self.metrics: set[str] = set()

    def add(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        outputs, bad = decode_outputs(frame, self.spec)
        self.spool.write(outputs)
        self.keys.update(outputs.get_column("key").unique().drop_nulls().to_list())
        self.metrics.update(outputs.get_column("metric").unique().drop_nulls().to_list())
        if bad.height:
            self.quarantine.append(bad)
        return None

    def bad(self) -> pl.DataFrame:
        return concat_or_empty(self.quarantine, QUARANTINE).sort("partition", "offset")
