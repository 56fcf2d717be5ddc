"""A pipeline that is not ticks, recovered from archive files: nested JSON orders with seconds timestamps, a
composite key, no seq, outputs in the team's own layout (one record carrying two metrics, windows named by
their end in ISO-8601), corrections written back in that layout.

The expected discrepancies come from the faults this test injects into outputs it computes with a plain loop.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from recovery.frames import CORRECTIONS, RECORDS
from recovery.pipeline.recover import recover
from recovery.records.layout_outputs import OutputLayout
from recovery.source import FileSource
from recovery.spec import PipelineSpec

MINUTE = 60_000
START = 1_767_603_600_000  # 2026-01-05T09:00:00Z
SPEC = PipelineSpec.from_dict(
    {
        "topics": {"raw": "orders", "output": "orders.stats", "corrections": "orders.fix", "audit": "orders.audit"},
        "events": {
            "key": ["shop.merchant", "shop.region"],
            "time": "placed_at",
            "time_unit": "s",
            "id": "order_id",
            "values": {"amount": "total.amount", "items": "total.items"},
        },
        "outputs": {
            "key": ["merchant", "region"],
            "window_end": "window.end",
            "window_unit": "iso",
            "metrics": {"avg_amount": "avg_amount", "avg_items": "avg_items"},
        },
        "metrics": [
            {"name": "avg_amount", "kind": "mean", "field": "amount", "window_ms": MINUTE},
            {"name": "avg_items", "kind": "mean", "field": "items", "window_ms": MINUTE},
        ],
    }
)
SHOPS = [("acme", "eu"), ("acme", "us"), ("bolt", "eu")]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _orders(rng: random.Random) -> list[dict]:  # type: ignore[type-arg]
    orders = []
    for i in range(400):
        merchant, region = rng.choice(SHOPS)
        at_ms = START + rng.randrange(10 * MINUTE)
        orders.append(
            {
                "order_id": f"o-{i}",
                "placed_at": at_ms / 1000,
                "shop": {"merchant": merchant, "region": region},
                "total": {"amount": round(rng.uniform(1, 500), 2), "items": rng.randint(1, 9)},
            }
        )
    return orders


def _truth(orders: list[dict]) -> dict[tuple[str, int], tuple[float, float]]:  # type: ignore[type-arg]
    """(merchant|region, window start) -> (mean amount, mean items): a plain loop over the events."""
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for o in orders:
        at = round(o["placed_at"] * 1000)
        key = (f"{o['shop']['merchant']}|{o['shop']['region']}", at - at % MINUTE)
        sums[key][0] += o["total"]["amount"]
        sums[key][1] += o["total"]["items"]
        sums[key][2] += 1
    return {k: (a / n, i / n) for k, (a, i, n) in sums.items()}


def _archive(rows: list[tuple[int, int, int, bytes | None, bytes | None]], path: Path) -> Path:
    pl.DataFrame(rows, schema=RECORDS, orient="row").write_parquet(path)
    return path


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["in-memory", "by-partition"])
def test_a_team_pipeline_in_its_own_layout_is_recovered_exactly(tmp_path: Path, engine: str) -> None:
    rng = random.Random(13)
    orders = _orders(rng)
    truth = _truth(orders)
    windows = sorted(truth)
    missing, wrong = windows[3], windows[7]
    raw = [
        (0, i, round(o["placed_at"] * 1000), o["shop"]["merchant"].encode(), json.dumps(o).encode())
        for i, o in enumerate(sorted(orders, key=lambda o: o["placed_at"]))
    ]
    outputs = []
    for key, start in windows:
        if (key, start) == missing:
            continue
        amount, items = truth[(key, start)]
        if (key, start) == wrong:
            amount += 10.0
        merchant, region = key.split("|")
        doc = {"merchant": merchant, "region": region, "window": {"end": _iso(start + MINUTE)}}
        doc.update(avg_amount=amount, avg_items=items)
        outputs.append((0, len(outputs), start + MINUTE, key.encode(), json.dumps(doc).encode()))
    report = recover(
        SPEC,
        START,
        START + 10 * MINUTE,
        raw_source=FileSource(_archive(raw, tmp_path / "raw.parquet")),
        outputs_source=FileSource(_archive(outputs, tmp_path / "out.parquet")),
        engine=engine,
        now=START + 24 * 60 * MINUTE,
    )
    counts = report.summary.counts
    assert counts["missing"] == 2  # both metrics of the dropped record
    assert counts["wrong"] == 1  # the amount only: its items are right
    assert counts["ok"] == 2 * len(windows) - 3
    fixes = report.fixset.corrections.sort("metric", "key", "window")
    assert fixes.select("key", "metric", "window", "action").rows() == [
        (missing[0], "avg_amount", missing[1], "upsert"),
        (wrong[0], "avg_amount", wrong[1], "upsert"),
        (missing[0], "avg_items", missing[1], "upsert"),
    ]
    assert fixes.get_column("value").to_list() == pytest.approx(
        [truth[missing][0], truth[wrong][0], truth[missing][1]], rel=1e-12
    )
    assert report.fixset.content["quality"]["gaps"] == 0  # no seq: no gap detection, and the report says so
    assert any("no seq" in line for line in report.lines())


def test_corrections_in_the_outputs_layout_decode_back_to_the_same_results() -> None:
    layout = OutputLayout(SPEC)
    corrections = pl.DataFrame(
        {
            "key": ["acme|eu", "bolt|eu"],
            "metric": ["avg_amount", "avg_items"],
            "window": [START, START + MINUTE],
            "time_ms": [START, START + MINUTE],
            "action": ["upsert", "retract"],
            "value": [12.5, None],
            "reason": ["missing", "extra"],
        },
        schema=CORRECTIONS,
    )
    encoded = layout.encode(corrections)
    assert encoded[1] == (b"bolt|eu", None)  # a retraction is a tombstone by default
    assert json.loads(encoded[0][1] or b"") == {
        "merchant": "acme",
        "region": "eu",
        "window": {"end": "2026-01-05T09:01:00.000Z"},
        "avg_amount": 12.5,
    }
    records = pl.DataFrame([(0, 0, START, encoded[0][0], encoded[0][1])], schema=RECORDS, orient="row")
    decoded, bad = layout.decode(records)
    assert bad.height == 0
    assert decoded.select("key", "metric", "window", "value").rows() == [("acme|eu", "avg_amount", START, 12.5)]
