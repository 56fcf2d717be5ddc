"""Benchmark of Avro decoding (Confluent wire format) against JSON on small order events; prints one table.

    .venv/bin/python -m bench.bench_avro [--records 1000000] [--runs 3]

Each record is an order event with 6 fields (two strings, an int, a double, a timestamp-millis long, an
optional string). Rows: the codec's ``decode_many``; fastavro's ``schemaless_reader`` alone on the same
values (a new stream per record, the parsed schema cached); the same reader over one stream holding all
payloads back to back (the lower bound of per-record fastavro calls); ``json.loads`` of the same records as
JSON, for scale. Records per CPU second, median of ``--runs``; no broker needed.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

from recovery.records.avro import AvroCodec

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"]},
    ],
}


def records(n: int) -> list[dict[str, Any]]:
    """``n`` order events, deterministic."""
    return [
        {
            "order_id": f"o-{i}",
            "customer": f"c{i % 997}",
            "qty": i % 50 + 1,
            "price": 10.0 + (i % 1000) / 100,
            "ts": 1_767_603_600_000 + i * 7,
            "note": None if i % 3 else "gift",
        }
        for i in range(n)
    ]


def median_rate(n: int, runs: int, fn: Callable[[], object]) -> float:
    """Records per CPU second of this process (steadier than wall time on a shared machine), median of ``runs``."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return n / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.records
    data = records(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "order.avsc"
        path.write_text(json.dumps(SCHEMA))
        codec = AvroCodec.from_files({1: path})
        values = codec.encode_many(data, 1)
    assert codec.decode_many(values[:1000]) == data[:1000]
    parsed = fastavro.parse_schema(SCHEMA)
    reader = fastavro.schemaless_reader

    def per_record_stream() -> list[Any]:
        out = []
        for value in values:
            stream = io.BytesIO(value)
            stream.seek(5)
            out.append(reader(stream, parsed, None))
        return out

    blob = b"".join(v[5:] for v in values)

    def one_stream() -> list[Any]:
        stream = io.BytesIO(blob)
        return [reader(stream, parsed, None) for _ in range(n)]

    json_values = [json.dumps(r).encode() for r in data]
    rows = [
        ("AvroCodec.decode_many", median_rate(n, args.runs, lambda: codec.decode_many(values))),
        ("fastavro.schemaless_reader, stream per record", median_rate(n, args.runs, per_record_stream)),
        ("fastavro.schemaless_reader, one stream", median_rate(n, args.runs, one_stream)),
        ("json.loads (same records as JSON)", median_rate(n, args.runs, lambda: [json.loads(v) for v in json_values])),
    ]
    print(f"{n:,} order events (6 fields), fastavro {fastavro.__version__}, median of {args.runs}")
    print(f"{'decoder':<50} {'records/CPU s':>14}")
    for name, rate in rows:
        print(f"{name:<50} {rate:>14,.0f}")


if __name__ == "__main__":
    main()
