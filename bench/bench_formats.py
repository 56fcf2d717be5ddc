"""Benchmark of the recompute path (validate, dedup, recompute) by event format; prints one table.

    .venv/bin/python -m bench.bench_formats [--events 1000000] [--runs 3]

The same order events (a key, an id, a seq, an event time, a price and a volume; 100 keys) written three
ways: the toolkit's flat tick JSON (validated in bulk), a nested JSON layout with seconds timestamps (``[events]``
with field paths: validated record by record), and Avro in the Confluent wire format with a local ``.avsc``.
Each row: events per second of CPU time and of wall time for validate + dedup + recompute of a one-minute mean
and an sma of 5, median of ``--runs``. No broker: the records are built in memory, as a replay would return them.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro
import polars as pl

from recovery.frames import RECORDS
from recovery.metrics.recompute import recompute
from recovery.pipeline.dedup import dedup
from recovery.records.validate import validate
from recovery.spec import PipelineSpec

START = 1_767_603_600_000
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Tick",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "sym", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "at", "type": "long"},
        {"name": "px", "type": "double"},
        {"name": "qty", "type": "double"},
    ],
}
METRICS = [
    {"name": "sma_5", "kind": "sma", "n": 5},
    {"name": "mean_1m", "kind": "mean", "window_ms": 60_000},
]


def _events(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    seqs: dict[str, int] = {}
    out = []
    for i in range(n):
        sym = f"k{rng.randrange(100)}"
        seqs[sym] = seqs.get(sym, 0) + 1
        out.append(
            {"id": f"e{i}", "sym": sym, "n": seqs[sym], "at": START + i * 3, "px": rng.uniform(1, 100), "qty": 1.0}
        )
    return out


def _frame(values: list[bytes], events: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition": [0] * len(values),
            "offset": list(range(len(values))),
            "timestamp_ms": [e["at"] for e in events],
            "key": [None] * len(values),
            "value": values,
        },
        schema=RECORDS,
    )


def cases(n: int, directory: Path) -> dict[str, tuple[PipelineSpec, pl.DataFrame]]:
    """(spec, records) of the same events in each format."""
    events = _events(n)
    flat = PipelineSpec.from_dict(
        {
            "fields": {"id": "id", "key": "sym", "seq": "n", "time": "at", "price": "px", "volume": "qty"},
            "metrics": METRICS,
        }
    )
    flat_values = [
        json.dumps(
            {"id": e["id"], "sym": e["sym"], "n": e["n"], "at": e["at"], "px": e["px"], "qty": e["qty"]}
        ).encode()
        for e in events
    ]
    nested = PipelineSpec.from_dict(
        {
            "events": {
                "key": "meta.sym",
                "id": "meta.id",
                "seq": "meta.n",
                "time": "at",
                "time_unit": "s",
                "values": {"price": "trade.px", "volume": "trade.qty"},
            },
            "metrics": METRICS,
        }
    )
    nested_values = [
        json.dumps(
            {
                "meta": {"sym": e["sym"], "id": e["id"], "n": e["n"]},
                "at": e["at"] / 1000,
                "trade": {"px": e["px"], "qty": 1.0},
            }
        ).encode()
        for e in events
    ]
    avsc = directory / "tick.avsc"
    avsc.write_text(json.dumps(SCHEMA))
    avro = PipelineSpec.from_dict(
        {
            "events": {
                "format": "avro",
                "schemas": {"1": str(avsc)},
                "key": "sym",
                "id": "id",
                "seq": "n",
                "time": "at",
                "values": {"price": "px", "volume": "qty"},
            },
            "metrics": METRICS,
        }
    )
    parsed = fastavro.parse_schema(SCHEMA)
    avro_values = []
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, e)
        avro_values.append(b"\x00" + struct.pack(">I", 1) + buf.getvalue())
    return {
        "flat JSON (bulk)": (flat, _frame(flat_values, events)),
        "nested JSON, seconds": (nested, _frame(nested_values, events)),
        "Avro (wire format)": (avro, _frame(avro_values, events)),
    }


def run_once(spec: PipelineSpec, records: pl.DataFrame) -> tuple[float, float, int]:
    """(cpu s, wall s, results) of validate + dedup + recompute."""
    cpu, wall = time.process_time(), time.perf_counter()
    events, quarantine = validate(records, spec)
    assert quarantine.height == 0
    quality = dedup(events, quarantine=quarantine, fields=spec.layout)
    results = recompute(quality.events, spec, presorted=True)
    return time.process_time() - cpu, time.perf_counter() - wall, results.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = []
        reference = None
        for name, (spec, records) in cases(args.events, Path(tmp)).items():
            runs = [run_once(spec, records) for _ in range(args.runs)]
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            results = runs[0][2]
            reference = reference or results
            assert results == reference, f"{name}: {results} results, expected {reference}"
            table.append((name, cpu, wall))
    print(f"validate + dedup + recompute of {args.events:,} events (median of {args.runs})")
    print(f"{'format':<24} {'CPU s':>8} {'wall s':>8} {'events/CPU s':>14}")
    for name, cpu, wall in table:
        print(f"{name:<24} {cpu:>8.2f} {wall:>8.2f} {args.events / cpu:>14,.0f}")


if __name__ == "__main__":
    main()
