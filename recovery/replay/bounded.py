"""Bounded replay of a topic (or its archive) for a time range or explicit offsets, parallel by partition.

A replay snapshots the end offsets when it starts and never reads past them, so it is reproducible while
producers keep writing. For a time range ``[from_ms, to_ms)`` each partition is read from the first record
whose Kafka timestamp is ``>= from_ms - lookback_ms`` (time windows need one window plus grace before the
range) to the first record whose timestamp is ``>= to_ms + slack_ms`` (late events carry a Kafka timestamp
after their event time). Count-based windows (``sma``) need the last N-1 events of every key before the
range: the replay steps back per partition in chunks until every key with events in the range has enough
earlier events, or its history starts (seq 1), or the partition does.

Partitions are read by ``workers`` threads (processes for kafka-python), each returning polars frames or writing
Parquet parts (``out_dir``: bounded memory). Frames are built in bulk, never a Python object per record field.
The same planning and stepping run on archive files (:class:`~recovery.source.FileSource`), so a replay of
an export selects exactly the records the Kafka replay did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recovery.errors import ConfigError, DataError
from recovery.formats import EventsSpec
from recovery.frames import RECORDS, empty
from recovery.kafka.client import DEFAULT_CLIENT, check_client
from recovery.records.validate import validate
from recovery.replay.plan import DEFAULT_SLACK_MS, KAFKA_TIME, PartitionPlan, Snapshot, label, plan
from recovery.replay.pool import cached_reader, check_workers, decodes_in_python, run_tasks, stop_point
from recovery.replay.progress import PartitionProgress, ProgressSink, progress_enabled
from recovery.replay.readers import MemorySink, ParquetSink, Reader, Sink
from recovery.source import SIDECAR, FileSource, Source
from recovery.spec import FieldsSpec, PipelineSpec
from recovery.timerange import format_ms

DEFAULT_BATCH_RECORDS = 50_000  # records per frame / Parquet part: a reading worker holds about one batch
MIN_LOOKBACK_CHUNK = 1_000  # records per step back for sma lookback (at least)


@dataclass(frozen=True)
class PartitionRead:
    """What a replay read of one partition (offsets after the sma lookback) and where it went."""

    partition: int
    start: int
    end: int
    records: int
    first_offset: int | None
    last_offset: int | None
    seconds: float
    parts: tuple[str, ...] = ()
    floor_ms: int | None = None  # every record before ``start`` is stamped before this (None: unknown)
    from_origin: bool = False  # the read started at offset 0: the partition's whole history was read

    @property
    def coverage(self) -> tuple[int | None, bool]:
        """(floor_ms, from_origin): what the read vouches for, for seq gaps (``pipeline.dedup.Coverage``)."""
        return self.floor_ms, self.from_origin


@dataclass
class ReplayResult:
    """Records read (a RECORDS frame, or Parquet parts in ``out_dir``), the snapshot and the timing."""

    snapshot: Snapshot
    reads: dict[int, PartitionRead]
    records: pl.DataFrame | None
    out_dir: Path | None
    elapsed_s: float
    members: dict[str, Any] = field(default_factory=dict)
    kept: bool = True  # False: the records were processed as they were read and not kept

    @property
    def count(self) -> int:
        return sum(r.records for r in self.reads.values())

    @property
    def events_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def frame(self) -> pl.DataFrame:
        """The RECORDS frame (read from the parts when the replay streamed to Parquet)."""
        if not self.kept:
            raise DataError(
                "the records of this replay were processed partition by partition and not kept",
                hint="replay the range again (recovery replay, or replay() with out_dir= for big ranges)",
            )
        if self.records is not None:
            return self.records
        parts = [p for r in self.reads.values() for p in r.parts]
        return FileSource(parts).scan().collect() if parts else empty(RECORDS)

    def offsets(self) -> dict[str, list[int]]:
        """Per partition ``[first offset, last offset + 1, records]`` of what was read (for manifests)."""
        return {
            str(p): [r.first_offset, r.last_offset + 1, r.records]
            for p, r in sorted(self.reads.items())
            if r.first_offset is not None and r.last_offset is not None
        }

    def summary(self) -> str:
        return f"{self.count:,} records from {len(self.reads)} partition(s) in {self.elapsed_s:.1f} s " + (
            f"({self.events_per_s:,.0f} records/s)"
        )


@dataclass(frozen=True)
class PartitionJob:
    """Parameters every partition task shares."""

    source: Source
    from_ms: int | None
    lookback_events: int
    fields: FieldsSpec | EventsSpec | None
    out_dir: str | None
    batch_records: int
    label: str
    client: str = DEFAULT_CLIENT
    to_ms: int | None = None


# ------------------------------------------------------------------------------------------- lookback


class LookbackNeed:
    """The count-window lookback of one partition: which earlier events the keys of the range still need.

    A key with events in the range needs the ``needed`` events that precede the range start in (event time,
    seq) order. Among the records read, take the latest ``needed`` such events of each key; ``floor`` is
    the earliest event time among them. Every copy of every event at or after ``floor`` has a Kafka
    timestamp ``>= floor`` (a record is never stamped before its event happened), so once the read starts at
    or before the first offset stamped ``>= floor`` nothing the keys need is left unread, whatever order the
    events arrived in (a late or re-sent older event cannot stand in for a newer one that was not read).
    A key with fewer than ``needed`` earlier events read needs more of the log, unless its first event
    (seq 1) was read: then it has no earlier events.
    """

    def __init__(self, from_ms: int, to_ms: int | None, events_needed: int, fields: FieldsSpec | EventsSpec) -> None:
        self.from_ms = from_ms
        self.to_ms = to_ms
        self.needed = events_needed
        self.fields = fields
        self.keys: set[str] = set()
        # per key, the latest ``needed`` distinct events before the range start (and the key's seq 1, if read)
        self.before = pl.DataFrame(schema={"key": pl.String, "event_id": pl.String, "ts": pl.Int64, "seq": pl.Int64})
        self.starts: set[str] = set()

    def add(self, frame: pl.DataFrame, *, events: pl.DataFrame | None = None) -> None:
        """Note the keys and earlier events of ``frame`` (``events``: its valid events, if already known)."""
        if events is None:
            events, _ = validate(frame, self.fields)
        ts = pl.col("ts")
        in_range = ts >= self.from_ms if self.to_ms is None else ts.is_between(self.from_ms, self.to_ms, closed="left")
        self.keys.update(events.filter(in_range).get_column("key").unique().to_list())
        earlier = events.filter(ts < self.from_ms).select("key", "event_id", "ts", "seq")
        # a key whose seq 1 was read (before the range or in it) has no earlier events than those read
        self.starts.update(events.filter(pl.col("seq") <= 1).get_column("key").unique().to_list())
        latest = (
            pl.concat([self.before, earlier])
            .unique(["key", "event_id"], keep="first")
            .sort("key", "ts", "seq", descending=[False, True, True])
        )
        self.before = latest.filter(pl.int_range(pl.len()).over("key") < self.needed)

    def merge(self, other: LookbackNeed) -> None:
        """Add what a read of another offset range of the same partition noted (a chunk read elsewhere)."""
        self.keys.update(other.keys)
        self.starts.update(other.starts)
        latest = (
            pl.concat([self.before, other.before])
            .unique(["key", "event_id"], keep="first")
            .sort("key", "ts", "seq", descending=[False, True, True])
        )
        self.before = latest.filter(pl.int_range(pl.len()).over("key") < self.needed)

    def shortfall(self) -> tuple[bool, int | None]:
        """(a key of the range has too few earlier events read, the event time the read must reach back to)."""
        if not self.keys:
            return False, None
        wanted = self.before.filter(pl.col("key").is_in(pl.Series(sorted(self.keys), dtype=pl.String).implode()))
        found = dict(wanted.group_by("key").len().iter_rows())
        short = any(found.get(k, 0) < self.needed and k not in self.starts for k in self.keys)
        floor = wanted.get_column("ts").min()
        return short, None if floor is None else int(floor)  # type: ignore[arg-type]

    def chunk(self, steps: int) -> int:
        """Records to step back when keys are short of earlier events (doubling, so sparse keys take few steps)."""
        return max(MIN_LOOKBACK_CHUNK, 2 * self.needed * len(self.keys)) << min(steps, 20)


@dataclass
class ReadSpan:
    """What the reads of one partition (or chunk) covered so far: records, first and last offset."""

    records: int = 0
    first: int | None = None
    last: int | None = None

    def feed(
        self,
        frames: Iterable[pl.DataFrame],
        sink: Sink,
        need: LookbackNeed | None,
        after_each: Callable[[int], None] | None = None,
    ) -> None:
        """Each non-empty frame to ``sink`` (and its events to ``need``), counted; ``after_each(records)``.

        A reader's generator is closed here whatever happens (its reader is then still open to clean up)."""
        iterator = iter(frames)
        try:
            for frame in iterator:
                stop_point()
                if frame.height == 0:
                    continue
                events = sink.add(frame)
                lo, hi = frame.item(0, "offset"), frame.item(frame.height - 1, "offset")
                self.first = lo if self.first is None else min(self.first, lo)
                self.last = hi if self.last is None else max(self.last, hi)
                if need is not None:
                    need.add(frame, events=events)
                self.records += frame.height
                if after_each is not None:
                    after_each(self.records)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


def run_partition(
    reader: Reader,
    plan: PartitionPlan,
    job: PartitionJob,
    sink: Sink,
    progress: ProgressSink,
) -> PartitionRead:
    """Read ``plan``'s range, then read back until the count-window lookback is complete (a fixed point).

    Time windows need nothing before the plan's start: a window inside the range holds events at or after
    its start, stamped at or after it. Count windows need each key's earlier events, which may lie anywhere
    before the start when they arrived late; see :class:`LookbackNeed`.
    """
    started = time.monotonic()
    p = plan.partition
    need = (
        LookbackNeed(job.from_ms, job.to_ms, job.lookback_events, job.fields)
        if job.lookback_events > 0 and job.from_ms is not None and job.fields is not None
        else None
    )
    span, total = ReadSpan(), plan.records
    progress.update(p, 0, total)

    def consume(start: int, end: int) -> None:
        span.feed(reader.read(p, start, end, job.batch_records), sink, need, lambda n: progress.update(p, n, total))

    consume(plan.start, plan.end)
    start, floor, steps = plan.start, plan.floor_ms, 0
    while need is not None and start > plan.log_start:
        short, needed_from = need.shortfall()
        earlier = start
        if needed_from is not None and (floor is None or needed_from < floor):
            at = reader.first_at(p, needed_from)
            if at is not None and at < start:
                earlier = max(plan.log_start, at)
            floor = needed_from if floor is None else min(floor, needed_from)
        if short:
            earlier = min(earlier, max(plan.log_start, start - need.chunk(steps)))
            steps += 1
        if earlier >= start:
            break
        total += start - earlier
        consume(earlier, start)
        start = earlier
    progress.update(p, span.records, span.records)
    parts = tuple(sink.parts) if isinstance(sink, ParquetSink) else ()
    return PartitionRead(
        p,
        start,
        plan.end,
        span.records,
        span.first,
        span.last,
        round(time.monotonic() - started, 3),
        parts,
        floor_ms=floor,
        from_origin=start == plan.log_start == 0,
    )


# ---------------------------------------------------------------------------------------------- workers


def _read_partition(
    task: tuple[PartitionJob, PartitionPlan], progress: ProgressSink
) -> tuple[PartitionRead, pl.DataFrame | None]:
    """Read one partition (a pool task): into memory, or to Parquet parts when the job has an out_dir."""
    job, plan_ = task
    sink: MemorySink | ParquetSink = ParquetSink(job.out_dir, job.label) if job.out_dir else MemorySink()
    read = run_partition(cached_reader(job.source, job.client), plan_, job, sink, progress)
    return read, sink.frame()


def _run_all(
    job: PartitionJob, plans: Sequence[PartitionPlan], workers: int, progress: PartitionProgress
) -> tuple[dict[int, PartitionRead], list[pl.DataFrame]]:
    ordered = sorted(plans, key=lambda pl_: -pl_.records)  # biggest first balances the workers
    done = run_tasks(
        _read_partition,
        [(job, plan_) for plan_ in ordered],
        workers=workers,
        progress=progress,
        in_process=isinstance(job.source, FileSource),
        processes=decodes_in_python(job.source, job.client),
    )
    return {read.partition: read for read, _ in done}, [frame for _, frame in done if frame is not None]


# ------------------------------------------------------------------------------------------- public API


def lookbacks(
    spec: PipelineSpec | None,
    offsets: Mapping[int, tuple[int | None, int | None]] | None = None,
    lookback_ms: int | None = None,
    lookback_events: int | None = None,
) -> tuple[int, int]:
    """(lookback_ms, lookback_events) of a replay: as given, else the spec's; explicit offsets read as given."""
    lb_ms = lookback_ms if lookback_ms is not None else (spec.lookback_ms if spec else 0)
    lb_events = lookback_events if lookback_events is not None else (spec.lookback_events if spec else 0)
    if lb_events and spec is None:
        raise ConfigError("lookback_events needs the spec (to read keys and event times)", hint="pass spec=...")
    return lb_ms, 0 if offsets is not None else lb_events


def replay(
    source: Source,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    offsets: Mapping[int, tuple[int | None, int | None]] | None = None,
    spec: PipelineSpec | None = None,
    lookback_ms: int | None = None,
    lookback_events: int | None = None,
    slack_ms: int = DEFAULT_SLACK_MS,
    partitions: Sequence[int] | None = None,
    workers: int = 1,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    batch_records: int = DEFAULT_BATCH_RECORDS,
    client: str = DEFAULT_CLIENT,
    time_basis: str = KAFKA_TIME,
) -> ReplayResult:
    """Read ``source`` for ``[from_ms, to_ms)`` (Kafka time, plus lookback and slack) or explicit ``offsets``.

    ``time_basis="event"`` reads whole partitions by offset instead (the range is then the events' own time).

    ``spec`` supplies the lookback (one window plus grace for time windows, N-1 events per key for sma)
    unless ``lookback_ms`` / ``lookback_events`` are given. Returns a RECORDS frame (``records``), or writes
    Parquet parts to ``out_dir`` when given (bounded memory), plus the snapshot for the manifest.
    Consumer-group mode (several processes sharing the partitions) is :func:`recovery.replay.group.replay_group`.
    ``client`` picks the Kafka client that reads (:mod:`recovery.kafka.client`: kafka-python, confluent
    or native).
    """
    check_client(client)
    check_workers(workers)
    if batch_records < 1:
        raise ConfigError(f"batch_records must be >= 1, got {batch_records}")
    lb_ms, lb_events = lookbacks(spec, offsets, lookback_ms, lookback_events)
    started = time.monotonic()
    snapshot = plan(
        source,
        from_ms=from_ms,
        to_ms=to_ms,
        offsets=offsets,
        lookback_ms=lb_ms,
        lookback_events=lb_events,
        slack_ms=slack_ms,
        partitions=partitions,
        time_basis=time_basis,
        client=client,
    )
    directory = prepare_out_dir(out_dir) if out_dir is not None else None
    job = PartitionJob(
        source,
        from_ms,
        lb_events,
        spec.layout if spec else None,
        str(directory) if directory else None,
        batch_records,
        label(source),
        client,
        to_ms,
    )
    with PartitionProgress(label(source), enabled=progress_enabled(quiet)) as progress:
        reads, frames = _run_all(job, snapshot.partitions, workers, progress)
    records = None
    if directory is None:
        # each frame is one partition in offset order: ordering the frames orders the records
        frames = sorted((f for f in frames if f.height), key=lambda f: f.item(0, "partition"))
        records = pl.concat(frames) if frames else empty(RECORDS)
    result = ReplayResult(snapshot, dict(sorted(reads.items())), records, directory, time.monotonic() - started)
    if directory is not None:
        write_sidecar(directory, result)
    return result


def prepare_out_dir(out_dir: str | Path, *, shared: bool = False) -> Path:
    """Create ``out_dir``; refuse one that already holds parts (unless ``shared`` by a consumer group)."""
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{str(directory)!r} is not a directory", path=str(directory))
    if not shared and directory.is_dir() and any(directory.glob("*.parquet")):
        raise DataError(
            f"{str(directory)!r} already holds Parquet parts",
            path=str(directory),
            hint="choose a new --out directory (parts of two replays must not mix)",
        )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_sidecar(directory: Path, result: ReplayResult, name: str = SIDECAR) -> None:
    """Describe the replay next to its parts: source, range, snapshot, what each partition read."""
    snap = result.snapshot
    data = {
        "snapshot": snap.to_dict(),
        "range": {
            "from": format_ms(snap.from_ms) if snap.from_ms is not None else None,
            "to": format_ms(snap.to_ms) if snap.to_ms is not None else None,
        },
        "reads": {str(p): asdict(r) | {"parts": [Path(x).name for x in r.parts]} for p, r in result.reads.items()},
        "records": result.count,
        "elapsed_s": round(result.elapsed_s, 3),
        **({"members": result.members} if result.members else {}),
    }
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / name)
