"""Seeded ticks and the faults injected into them: the pure part of the incident simulator (no Kafka).

Ticks follow a geometric Brownian motion per symbol, with volumes (a few zero-volume quote updates). Each
fault gets its own event-time range (:func:`plan_faults`); stream faults pick a share of the ticks in their
range with a generator seeded by (seed, fault), so the same seed always hits the same events.
:func:`build_records` then lays the ticks out as the raw topic's records: partitions from Kafka's default
partitioner, arrival order per partition (event time plus delay), offsets continuing the topic's.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from kafka.partitioner.default import murmur2

from recovery.errors import ConfigError
from recovery.frames import EVENTS
from recovery.live.hooks import BugHook, CrashHook
from recovery.records.events import parse_event
from recovery.records.reasons import reason_category
from recovery.spec import PipelineSpec

BASE_START_MS = 1_767_603_600_000  # 2026-01-05T09:00:00Z
FAULT_TYPES: tuple[str, ...] = ("drop", "duplicate", "reorder", "late", "malformed", "crash", "bad-deploy")
STREAM_FAULTS: tuple[str, ...] = ("drop", "duplicate", "reorder", "late", "malformed")
DEFAULT_SHARES: dict[str, float] = {"drop": 0.2, "duplicate": 0.1, "reorder": 0.2, "late": 0.1, "malformed": 0.1}
MALFORMED_KINDS: tuple[str, ...] = (
    "bad-json",
    "missing-field",
    "wrong-type",
    "negative-price",
    "nan-price",
    "not-object",
    "empty",
)
TICKERS: tuple[str, ...] = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "V", "XOM",
    "UNH", "MA", "HD", "PG", "COST", "AVGO", "KO", "PEP", "ORCL", "BAC",
)  # fmt: skip
DAILY_VOLATILITY = 0.02  # of the GBM, per day of event time
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class SimulationParams:
    """What to simulate; validated when built."""

    symbols: int = 5
    events: int = 20_000
    seed: int = 7
    rate_per_s: float = 10.0  # events per second of event time, all symbols together
    start_ms: int = BASE_START_MS
    faults: tuple[str, ...] = FAULT_TYPES
    shares: Mapping[str, float] = field(default_factory=dict)  # overrides of DEFAULT_SHARES

    def __post_init__(self) -> None:
        if self.symbols < 1 or self.events < 1:
            raise ConfigError(f"need at least one symbol and one event, got {self.symbols} and {self.events}")
        if not self.rate_per_s > 0:
            raise ConfigError(f"rate must be > 0 events/s, got {self.rate_per_s}")
        unknown = sorted(set(self.faults) - set(FAULT_TYPES))
        if unknown:
            raise ConfigError(f"unknown fault(s) {', '.join(unknown)}", hint=f"known: {', '.join(FAULT_TYPES)}")
        for name, share in self.shares.items():
            if name not in DEFAULT_SHARES:
                raise ConfigError(f"no share for fault {name!r}", hint=f"shares apply to {', '.join(DEFAULT_SHARES)}")
            if not 0 < share <= 1:
                raise ConfigError(f"share of {name} must be in (0, 1], got {share}")

    def share(self, fault: str) -> float:
        return self.shares.get(fault, DEFAULT_SHARES.get(fault, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbols": self.symbols,
            "events": self.events,
            "seed": self.seed,
            "rate_per_s": self.rate_per_s,
            "start_ms": self.start_ms,
            "faults": list(self.faults),
            "shares": {f: self.share(f) for f in DEFAULT_SHARES if f in self.faults},
        }


@dataclass(frozen=True)
class Fault:
    """One injected fault: its type, variant (crash mode, bug kind), event-time range and share."""

    id: str
    type: str
    from_ms: int
    to_ms: int
    share: float = 0.0
    variant: str | None = None


def symbol_names(count: int) -> list[str]:
    """Ticker-like names: real tickers first, then S021, S022, ..."""
    return [TICKERS[i] if i < len(TICKERS) else f"S{i + 1:03d}" for i in range(count)]


def plan_faults(params: SimulationParams, first_ms: int, last_ms: int, spec: PipelineSpec) -> list[Fault]:
    """Fault instances on disjoint event-time ranges, each the second half of one of n + 1 equal slots.

    The slots leave out the stream's tail (one window span, grace and a minute), so every window a fault
    touches has closed before the stream ends and lies in the recommended recovery range.
    """
    instances: list[tuple[str, str, str | None]] = []
    for kind in FAULT_TYPES:
        if kind not in params.faults:
            continue
        if kind == "crash":
            instances += [("crash-commit-before", kind, "commit-before"), ("crash-commit-after", kind, "commit-after")]
        elif kind == "bad-deploy":
            instances += [("bad-deploy-short-window", kind, "short-window"), ("bad-deploy-cents", kind, "cents")]
        else:
            instances.append((kind, kind, None))
    tail = spec.lookback_ms + 60_000
    usable = last_ms - first_ms - tail if last_ms - first_ms > 2 * tail else last_ms - first_ms
    slot = usable / (len(instances) + 1)
    faults = []
    for i, (fid, kind, variant) in enumerate(instances):
        lo = first_ms + round(slot * (i + 1.5))
        hi = first_ms + round(slot * (i + 2))
        faults.append(Fault(fid, kind, lo, hi, params.share(kind), variant))
    return faults


def generate_ticks(params: SimulationParams) -> pl.DataFrame:
    """Fault-free ticks in event-time order: idx, event_id, key, seq, ts, price, volume."""
    rng = random.Random(params.seed)
    names = symbol_names(params.symbols)
    n = params.events
    mean_gap_ms = 1000.0 / params.rate_per_s
    keys = [rng.randrange(params.symbols) for _ in range(n)]
    t = float(params.start_ms)
    ts = []
    for _ in range(n):
        t += rng.expovariate(1.0 / mean_gap_ms)
        ts.append(int(t))
    shocks = [rng.gauss(0.0, 1.0) for _ in range(n)]
    volumes = [0.0 if rng.random() < 0.02 else float(round(rng.lognormvariate(4.0, 1.0))) for _ in range(n)]
    start_price = {k: round(rng.uniform(20.0, 500.0), 2) for k in range(params.symbols)}
    sigma = DAILY_VOLATILITY / math.sqrt(MS_PER_DAY)
    frame = pl.DataFrame(
        {"k": keys, "ts": ts, "z": shocks, "volume": volumes},
        schema={"k": pl.Int64, "ts": pl.Int64, "z": pl.Float64, "volume": pl.Float64},
    ).with_row_index("idx")
    dt = pl.col("ts").diff().over("k").fill_null(0).cast(pl.Float64)
    log_return = -0.5 * sigma * sigma * dt + sigma * dt.sqrt() * pl.col("z")
    start = pl.col("k").replace_strict(start_price, return_dtype=pl.Float64)
    return frame.with_columns(
        (start * log_return.cum_sum().over("k").exp()).round(2).alias("price"),
        pl.col("k").replace_strict(dict(enumerate(names)), return_dtype=pl.String).alias("key"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("k").alias("seq"),
    ).select(
        pl.col("idx").cast(pl.Int64),
        pl.format("{}-{}", "key", "seq").alias("event_id"),
        "key",
        "seq",
        "ts",
        "price",
        "volume",
    )


@dataclass
class StreamFaults:
    """What the stream faults did to which ticks (by tick index)."""

    dropped: set[int] = field(default_factory=set)
    duplicated: dict[int, int] = field(default_factory=dict)  # idx -> arrival delay of the copy
    delayed: dict[int, int] = field(default_factory=dict)  # idx -> arrival delay (reorder, late)
    malformed: dict[int, str] = field(default_factory=dict)  # idx -> kind

    def merged(self, other: StreamFaults) -> StreamFaults:
        return StreamFaults(
            self.dropped | other.dropped,
            self.duplicated | other.duplicated,
            self.delayed | other.delayed,
            self.malformed | other.malformed,
        )


def choose_stream_faults(ticks: pl.DataFrame, fault: Fault, spec: PipelineSpec, seed: int) -> StreamFaults:
    """The ticks a stream fault hits (a share of its range, chosen by a generator seeded by seed and fault).

    Delays stay below the gap between two ranges (as long as a range), so a delayed tick arrives before the
    next fault's range starts.
    """
    rng = random.Random(f"{seed}:{fault.id}")
    grace = max((m.grace_ms for m in spec.metrics if m.is_windowed), default=0)
    in_range = ticks.with_columns((pl.col("ts").shift(-1).over("key") - pl.col("ts")).alias("gap")).filter(
        pl.col("ts").is_between(fault.from_ms, fault.to_ms, closed="left")
    )
    if fault.type == "reorder":  # only ticks whose key has another tick soon enough to overtake them in grace
        in_range = in_range.filter(pl.col("gap") < grace * 4 // 5)
    candidates = in_range.get_column("idx").to_list()
    chosen = sorted(rng.sample(candidates, k=min(len(candidates), max(1, round(fault.share * len(candidates))))))
    out = StreamFaults()
    if fault.type == "drop":
        out.dropped = set(chosen)
    elif fault.type == "duplicate":
        out.duplicated = {i: rng.randrange(0, max(1, grace // 2) + 1) for i in chosen}
    elif fault.type == "reorder":  # overtaken by the key's next tick, still within grace: only the sma suffers
        gaps = dict(in_range.select("idx", "gap").rows())
        after: set[int] = set()
        following = dict(ticks.select("idx", pl.col("idx").shift(-1).over("key").alias("next")).rows())
        for i in chosen:
            if i in after:  # the tick right before it (same key) is delayed: keep their order meaningful
                continue
            out.delayed[i] = gaps[i] + rng.randrange(1, max(2, grace * 4 // 5 - gaps[i]))
            after.add(following[i])
    elif fault.type == "late":  # beyond the grace period: windows closed before the tick arrives
        length = fault.to_ms - fault.from_ms
        out.delayed = {i: grace + rng.randrange(max(1_000, length // 4), max(1_001, length * 3 // 4)) for i in chosen}
    elif fault.type == "malformed":
        out.malformed = {i: MALFORMED_KINDS[n % len(MALFORMED_KINDS)] for n, i in enumerate(chosen)}
    return out


def _malformed_value(kind: str, event: dict[str, Any], spec: PipelineSpec) -> bytes | None:
    f = spec.fields
    doc = {f.id: event["event_id"], f.key: event["key"], f.seq: event["seq"], f.time: event["ts"]}
    doc |= {f.price: event["price"], f.volume: event["volume"]}
    if kind == "bad-json":
        text = json.dumps(doc)
        return text[: len(text) // 2].encode()
    if kind == "missing-field":
        del doc[f.price]
    elif kind == "wrong-type":
        doc[f.price] = str(event["price"])
    elif kind == "negative-price":
        doc[f.price] = -abs(event["price"]) - 0.01
    elif kind == "nan-price":
        doc[f.price] = float("nan")
    elif kind == "not-object":
        return json.dumps(list(doc.values())).encode()
    elif kind == "empty":
        return None
    return json.dumps(doc).encode()


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def build_records(
    ticks: pl.DataFrame,
    faults: StreamFaults,
    spec: PipelineSpec,
    partitions: int,
    start_offsets: Mapping[int, int],
) -> pl.DataFrame:
    """The raw topic's records for ``ticks`` with ``faults``: RECORDS columns plus idx, copy and kind.

    Records of a partition are in arrival order (event time plus delay); offsets continue ``start_offsets``.
    """
    f = spec.fields
    valid_json = (
        ticks.select(
            pl.col("event_id").alias(f.id),
            pl.col("key").alias(f.key),
            pl.col("seq").alias(f.seq),
            pl.col("ts").alias(f.time),
            pl.col("price").alias(f.price),
            pl.col("volume").alias(f.volume),
        )
        .write_ndjson()
        .encode()
        .split(b"\n")[: ticks.height]
    )
    delays = pl.DataFrame(
        {"idx": list(faults.delayed), "delay": list(faults.delayed.values())},
        schema={"idx": pl.Int64, "delay": pl.Int64},
    )
    base = (
        ticks.with_columns(pl.Series("value", valid_json, dtype=pl.Binary), pl.lit(0, pl.Int32).alias("copy"))
        .filter(~pl.col("idx").is_in(list(faults.dropped)))
        .join(delays, on="idx", how="left")
        .with_columns(pl.col("delay").fill_null(0))
    )
    copies = base.filter(pl.col("idx").is_in(list(faults.duplicated))).with_columns(
        pl.col("idx").replace_strict(faults.duplicated, return_dtype=pl.Int64).alias("delay"),
        pl.lit(1, pl.Int32).alias("copy"),
    )
    rows = pl.concat([base, copies])
    if faults.malformed:
        bad = ticks.filter(pl.col("idx").is_in(list(faults.malformed))).rows(named=True)
        values = {e["idx"]: _malformed_value(faults.malformed[e["idx"]], e, spec) for e in bad}
        kinds = pl.DataFrame(
            {
                "idx": list(values),
                "kind": [faults.malformed[i] for i in values],
                "bad_value": list(values.values()),
            },
            schema={"idx": pl.Int64, "kind": pl.String, "bad_value": pl.Binary},
        )
        rows = rows.join(kinds, on="idx", how="left").with_columns(
            pl.when(pl.col("kind").is_null()).then(pl.col("value")).otherwise(pl.col("bad_value")).alias("value")
        )
    else:
        rows = rows.with_columns(pl.lit(None, pl.String).alias("kind"))
    keys = rows.get_column("key").unique().to_list()
    part_of = {k: partition_of(k, partitions) for k in keys}
    rows = rows.with_columns(
        pl.col("key").replace_strict(part_of, return_dtype=pl.Int32).alias("partition"),
        (pl.col("ts") + pl.col("delay")).alias("timestamp_ms"),
    ).sort("partition", "timestamp_ms", "idx", "copy")
    start = pl.col("partition").replace_strict(dict(start_offsets), default=0, return_dtype=pl.Int64)
    return rows.with_columns(
        (start + pl.int_range(pl.len(), dtype=pl.Int64).over("partition")).alias("offset"),
        pl.col("key").cast(pl.Binary).alias("key_bytes"),
    ).select(
        "partition",
        "offset",
        "timestamp_ms",
        pl.col("key_bytes").alias("key"),
        "value",
        "idx",
        "copy",
        "kind",
        pl.col("key").alias("symbol"),
        "delay",
    )


def resolve_crash(records: pl.DataFrame, fault: Fault, seed: int) -> CrashHook | None:
    """The crash hook for ``fault`` on these records: first record of a chosen partition in the range."""
    in_range = records.filter(pl.col("timestamp_ms").is_between(fault.from_ms, fault.to_ms, closed="left"))
    sizes = in_range.group_by("partition").len().filter(pl.col("len") >= 2).sort("partition")
    if sizes.height == 0:
        return None
    partition = random.Random(f"{seed}:{fault.id}").choice(sizes.get_column("partition").to_list())
    rows = in_range.filter(pl.col("partition") == partition).get_column("offset")
    assert fault.variant is not None
    return CrashHook(int(partition), int(rows.min()), int(rows.len()), fault.variant)  # type: ignore[arg-type]


def bug_hook(fault: Fault) -> BugHook:
    assert fault.variant is not None
    return BugHook(fault.variant, fault.from_ms, fault.to_ms)  # type: ignore[arg-type]


def malformed_reason(value: bytes | None, spec: PipelineSpec) -> str:
    """The reason the worker and the validator give for a malformed record."""
    parsed = parse_event(value, spec.fields)
    assert isinstance(parsed, str), "a malformed record parsed as valid"
    return parsed


def describe_events(records: pl.DataFrame, ticks: pl.DataFrame, idx: Sequence[int]) -> list[dict[str, Any]]:
    """The given ticks with where they landed (partition, offsets, arrival)."""
    chosen = ticks.filter(pl.col("idx").is_in(list(idx))).sort("idx")
    where = (
        records.filter(pl.col("idx").is_in(list(idx)))
        .sort("copy")
        .group_by("idx")
        .agg(
            pl.col("partition").first(),
            pl.col("offset").alias("offsets"),
            pl.col("timestamp_ms").last().alias("arrival_ms"),
            pl.col("delay").last().alias("delay_ms"),
        )
    )
    rows = chosen.join(where, on="idx", how="left").sort("idx")
    return [
        {
            "event_id": r["event_id"],
            "key": r["key"],
            "seq": r["seq"],
            "ts": r["ts"],
            **({} if r["partition"] is None else {"partition": r["partition"], "offsets": r["offsets"]}),
            **({"arrival_ms": r["arrival_ms"], "delay_ms": r["delay_ms"]} if r["delay_ms"] else {}),
        }
        for r in rows.iter_rows(named=True)
    ]


def parsed_records(records: pl.DataFrame, ticks: pl.DataFrame, spec: PipelineSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the live worker's parse makes of ``records`` (EVENTS in record order, MALFORMED), from what was built.

    Equal to :func:`recovery.live.worker.parse_records` on the same records, without parsing the valid ones again.
    """
    good = records.filter(pl.col("kind").is_null()).select("partition", "offset", "timestamp_ms", "idx")
    events = good.join(ticks, on="idx", how="left", maintain_order="left").select(EVENTS.names())
    bad = records.filter(pl.col("kind").is_not_null())
    categories = [reason_category(malformed_reason(v, spec)) for v in bad.get_column("value").to_list()]
    malformed = bad.select("partition", "offset").with_columns(pl.Series("category", categories, dtype=pl.String))
    return events, malformed


def first_by_offset(events: pl.DataFrame) -> pl.DataFrame:
    """EVENTS deduplicated by event id, keeping the first by (partition, offset)."""
    return events.sort("partition", "offset").unique("event_id", keep="first", maintain_order=True)
