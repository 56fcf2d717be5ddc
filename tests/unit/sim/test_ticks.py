from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recovery.config import PROJECT_ROOT
from recovery.errors import ConfigError
from recovery.live.state import parse_records
from recovery.sim.ticks import (
    FAULT_TYPES,
    MALFORMED_KINDS,
    STREAM_FAULTS,
    SimulationParams,
    StreamFaults,
    build_records,
    choose_stream_faults,
    generate_ticks,
    parsed_records,
    partition_of,
    plan_faults,
    resolve_crash,
)
from recovery.spec import load_spec

SPEC = load_spec(PROJECT_ROOT / "pipeline.toml")
PARAMS = SimulationParams(symbols=3, events=3000, seed=11)


@pytest.fixture(scope="module")
def ticks() -> pl.DataFrame:
    return generate_ticks(PARAMS)


def all_faults(ticks: pl.DataFrame) -> StreamFaults:
    faults = plan_faults(PARAMS, ticks["ts"].min(), ticks["ts"].max(), SPEC)  # type: ignore[arg-type]
    merged = StreamFaults()
    for f in faults:
        if f.type in STREAM_FAULTS:
            merged = merged.merged(choose_stream_faults(ticks, f, SPEC, PARAMS.seed))
    return merged


def test_ticks_are_seeded_and_ordered(ticks: pl.DataFrame) -> None:
    assert_frame_equal(ticks, generate_ticks(PARAMS))
    assert not ticks.equals(generate_ticks(SimulationParams(symbols=3, events=3000, seed=12)))
    assert ticks.get_column("ts").is_sorted()
    assert ticks.height == 3000 and ticks.get_column("key").n_unique() == 3
    per_key = ticks.group_by("key").agg(pl.col("seq").diff().drop_nulls().eq(1).all().alias("consecutive"))
    assert per_key.get_column("consecutive").all()
    assert (ticks.get_column("price") > 0).all() and (ticks.get_column("volume") >= 0).all()
    assert ticks.get_column("event_id").n_unique() == ticks.height


def test_fault_ranges_are_disjoint_and_in_the_stream(ticks: pl.DataFrame) -> None:
    first, last = ticks["ts"].min(), ticks["ts"].max()
    faults = plan_faults(PARAMS, first, last, SPEC)  # type: ignore[arg-type]
    assert [f.id for f in faults] == [
        "drop",
        "duplicate",
        "reorder",
        "late",
        "malformed",
        "crash-commit-before",
        "crash-commit-after",
        "bad-deploy-short-window",
        "bad-deploy-cents",
    ]
    for a, b in zip(faults, faults[1:], strict=False):
        assert first < a.from_ms < a.to_ms < b.from_ms <= last  # type: ignore[operator]


def test_stream_faults_hit_their_share_of_their_range(ticks: pl.DataFrame) -> None:
    faults = plan_faults(PARAMS, ticks["ts"].min(), ticks["ts"].max(), SPEC)  # type: ignore[arg-type]
    late = next(f for f in faults if f.type == "late")
    chosen = choose_stream_faults(ticks, late, SPEC, PARAMS.seed)
    in_range = ticks.filter(pl.col("ts").is_between(late.from_ms, late.to_ms, closed="left"))
    assert len(chosen.delayed) == round(0.1 * in_range.height)
    assert set(chosen.delayed) <= set(in_range["idx"].to_list())
    length = late.to_ms - late.from_ms
    assert all(5_000 < d < 5_000 + length * 3 // 4 for d in chosen.delayed.values()), (
        "after grace, before the next range"
    )
    assert chosen == choose_stream_faults(ticks, late, SPEC, PARAMS.seed)
    malformed = choose_stream_faults(ticks, next(f for f in faults if f.type == "malformed"), SPEC, PARAMS.seed)
    assert set(malformed.malformed.values()) == set(MALFORMED_KINDS)


def test_reordered_ticks_are_overtaken_by_the_next_tick_of_their_key_within_grace(ticks: pl.DataFrame) -> None:
    faults = plan_faults(PARAMS, ticks["ts"].min(), ticks["ts"].max(), SPEC)  # type: ignore[arg-type]
    chosen = choose_stream_faults(ticks, next(f for f in faults if f.type == "reorder"), SPEC, PARAMS.seed)
    assert chosen.delayed
    nxt = ticks.select("idx", "ts", pl.col("ts").shift(-1).over("key").alias("next_ts"))
    for idx, ts, next_ts in nxt.filter(pl.col("idx").is_in(list(chosen.delayed))).rows():
        assert next_ts < ts + chosen.delayed[idx] < ts + 4_000


def test_records_follow_arrival_order_and_default_partitioner(ticks: pl.DataFrame) -> None:
    faults = all_faults(ticks)
    records = build_records(ticks, faults, SPEC, 4, {1: 100})
    assert records.height == ticks.height - len(faults.dropped) + len(faults.duplicated)
    for (partition,), part in records.group_by("partition"):
        start = 100 if partition == 1 else 0
        assert part["offset"].sort().to_list() == list(range(start, start + part.height))
        assert part.sort("offset")["timestamp_ms"].is_sorted()
    assert all(partition_of(k, 4) == p for k, p in records.select("symbol", "partition").unique().rows())
    delayed = records.filter(pl.col("delay") > 0)
    assert delayed.height == len(faults.delayed) + sum(1 for d in faults.duplicated.values() if d > 0)


def test_parsed_records_shortcut_equals_the_workers_parse(ticks: pl.DataFrame) -> None:
    records = build_records(ticks, all_faults(ticks), SPEC, 3, {})
    events, malformed = parsed_records(records, ticks, SPEC)
    parsed_events, parsed_malformed = parse_records(
        records.select("partition", "offset", "timestamp_ms", "key", "value"), SPEC
    )
    assert_frame_equal(events.sort("partition", "offset"), parsed_events.sort("partition", "offset"))
    assert_frame_equal(malformed.sort("partition", "offset"), parsed_malformed.sort("partition", "offset"))
    assert malformed.height == len(all_faults(ticks).malformed)


def test_crash_hook_covers_the_records_of_its_range(ticks: pl.DataFrame) -> None:
    records = build_records(ticks, StreamFaults(), SPEC, 3, {})
    faults = plan_faults(PARAMS, ticks["ts"].min(), ticks["ts"].max(), SPEC)  # type: ignore[arg-type]
    crash = next(f for f in faults if f.id == "crash-commit-before")
    hook = resolve_crash(records, crash, PARAMS.seed)
    assert hook is not None and hook.mode == "commit-before"
    span = records.filter(
        (pl.col("partition") == hook.partition)
        & pl.col("timestamp_ms").is_between(crash.from_ms, crash.to_ms, closed="left")
    )
    assert (hook.offset, hook.span) == (span["offset"].min(), span.height)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"symbols": 0}, "at least one symbol"),
        ({"rate_per_s": 0}, "rate must be > 0"),
        ({"faults": ("drop", "meteor")}, "unknown fault"),
        ({"shares": {"crash": 0.5}}, "no share for fault"),
        ({"shares": {"late": 1.5}}, "must be in"),
    ],
)
def test_bad_params_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SimulationParams(**kwargs)  # type: ignore[arg-type]


def test_all_fault_types_are_known() -> None:
    assert set(SimulationParams().faults) == set(FAULT_TYPES)
