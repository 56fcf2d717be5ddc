"""Nasty raw records through the real broker: replay and recompute do not crash, the bad ones are quarantined
with partition, offset and reason, and the good ones give the same truth as a topic without the bad ones.

The property-based fuzz of the same pipeline without a broker is tests/unit/test_fuzz_records.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl
from polars.testing import assert_frame_equal

from recovery.config import KafkaSettings
from recovery.pipeline.steps import truth_for_range
from tests.integration.engine_helpers import BASE_MS, make_spec, produce, ticks

N = 600
STEP_MS = 100
NASTY: list[tuple[bytes | None, bytes | None]] = [
    (b"S0", b'{"event_id": "' + b"x" * 1_000_000 + b'"}'),  # a 1 MB value
    (None, json.dumps({"event_id": "nk", "symbol": "S0", "seq": "1"}).encode()),  # null key, wrong type
    (b"S1", b'{"event_id": "\xff\xfe", "symbol": "S1"}'),  # invalid UTF-8
    (b"\xff\xfe", b"[" * 3000 + b"]" * 3000),  # binary key, deeply nested
    (b"S2", b'{"event_id": "n1", "symbol": "S2", "seq": 1, "ts": 1, "price": NaN, "volume": 1}'),
    (b"S0", b""),  # empty value
    (b"S1", None),  # tombstone
    (b"S2", b"\x00\x01\x02 not json"),
]


def test_nasty_records_through_the_broker_are_quarantined_and_good_results_unchanged(
    kafka_settings: KafkaSettings, topic_factory: Callable[..., str]
) -> None:
    items = ticks(N, ["S0", "S1", "S2"], step_ms=STEP_MS)
    dirty, clean = make_spec(topic_factory), make_spec(topic_factory)
    nasty_ts = [BASE_MS + (i + 1) * 6_000 + 77 for i in range(len(NASTY))]  # ticks arrive 0-50 ms after x00
    produce(kafka_settings, clean.topics.raw, items)
    produce(kafka_settings, dirty.topics.raw, items, [(k, v, ts) for (k, v), ts in zip(NASTY, nasty_ts, strict=True)])
    to_ms = BASE_MS + N * STEP_MS
    got = truth_for_range(dirty, BASE_MS, to_ms, settings=kafka_settings)
    want = truth_for_range(clean, BASE_MS, to_ms, settings=kafka_settings)
    assert got.replay.count == N + len(NASTY) and want.quarantine.height == 0
    assert got.quarantine.height == len(NASTY)
    assert got.quarantine.get_column("reason").str.len_chars().min() > 0  # type: ignore[operator]
    records = got.replay.frame()
    bad_at = records.filter(pl.col("timestamp_ms").is_in(nasty_ts)).select("partition", "offset").sort(pl.all())
    assert_frame_equal(got.quarantine.select("partition", "offset").sort(pl.all()), bad_at)
    assert got.results.height > 0
    assert_frame_equal(got.results, want.results)
