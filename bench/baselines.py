"""Baselines the toolkit is measured against, on the same topics and the same events.

- ``kcat`` (librdkafka's command-line client) consuming a topic to /dev/null: what a C client reads here.
- Kafka's own ``kafka-consumer-perf-test`` (Java, from the project's jars).
- The seed's recompute: a per-event Python loop with a ``deque`` per key for the moving average and a dict
  of accumulators per (key, window start) for the time windows.
"""

from __future__ import annotations

import re
import shutil
from collections import deque
from typing import Any

import polars as pl

from bench.measure import ROOT
from recovery.frames import RESULTS
from recovery.spec import PipelineSpec

# The same end-of-partition wait and the same connection setting as the toolkit's librdkafka readers, and a prefetch
# queue kcat never fills on these topics: with its default (100k messages per partition) kcat's writing fell behind
# its fetching in about one run in three, and librdkafka 2.0 (Debian's kcat) then waits about a second before it
# fetches that partition again (1.1-1.3 s instead of 0.35-0.5 s for the 1m topic); this baseline is kcat at its best
KCAT_TUNING = [
    "-X",
    "fetch.wait.max.ms=10",
    "-X",
    "enable.sparse.connections=false",
    "-X",
    "queued.min.messages=1000000",
]


def kcat_command(bootstrap: str, topic: str) -> list[str] | None:
    """kcat reading every partition of ``topic`` from the beginning to its end (-e), values to stdout."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        return None
    return [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", *KCAT_TUNING]


def kcat_version() -> str | None:
    import subprocess

    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        return None
    out = subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
    found = re.search(r"Version (\S+).*?librdkafka (\S+)", out, re.S)
    return f"kcat {found.group(1)} (librdkafka {found.group(2)})" if found else out.strip().splitlines()[0]


def perf_test_command(bootstrap: str, topic: str, messages: int) -> list[str]:
    """Kafka's ConsumerPerformance reading ``messages`` records of ``topic``."""
    return [
        str(ROOT / "kafka" / "bin" / "kafka-consumer-perf-test.sh"),
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(messages),
        "--timeout",
        "120000",
    ]


def parse_perf_test(stdout: str) -> dict[str, float]:
    """The figures of ConsumerPerformance's CSV line (nMsg.sec: whole run; fetch.nMsg.sec: without the join)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            data = dict(zip(header, values, strict=False))
            return {
                k: float(data[k])
                for k in ("data.consumed.in.nMsg", "nMsg.sec", "fetch.nMsg.sec", "fetch.time.ms", "rebalance.time.ms")
                if k in data
            }
    return {}


def event_rows(events: pl.DataFrame) -> list[tuple[Any, ...]]:
    """(key, seq, ts, price, volume) per event, in the frame's order (Python objects, as a consumer has them)."""
    return events.select("key", "seq", "ts", "price", "volume").rows()


def deque_recompute(rows: list[tuple[Any, ...]], spec: PipelineSpec) -> list[tuple[Any, ...]]:
    """The seed's recompute: per event, a deque per key (sma) and dict accumulators per (key, window start).

    Returns RESULTS rows (key, metric, window, time_ms, value): one per event per sma, one per time window.
    """
    column = {"price": 3, "volume": 4}
    smas = [(m.name, m.n or 1, column[m.field]) for m in spec.metrics if m.kind == "sma"]
    windowed = [m for m in spec.metrics if m.is_windowed]
    tails: dict[tuple[str, str], deque[float]] = {}
    sums: dict[str, dict[tuple[str, int], list[float]]] = {m.name: {} for m in windowed}
    out: list[tuple[Any, ...]] = []
    emit = out.append
    for row in rows:
        key, seq, ts = row[0], row[1], row[2]
        for name, n, col in smas:
            tail = tails.get((name, key))
            if tail is None:
                tail = tails[(name, key)] = deque(maxlen=n)
            tail.append(row[col])
            emit((key, name, seq, ts, sum(tail) / len(tail)))
        for m in windowed:
            assert m.hop_ms is not None and m.window_ms is not None
            acc, x = sums[m.name], row[column[m.field]]
            start = ts // m.hop_ms * m.hop_ms
            while start > ts - m.window_ms:
                w = acc.get((key, start))
                if w is None:
                    w = acc[(key, start)] = [0.0, 0.0, 0.0, 0.0]
                w[0] += 1
                w[1] += x
                w[2] += x * row[4]
                w[3] += row[4]
                start -= m.hop_ms
    for m in windowed:
        for (key, start), (count, total, weighted, volume) in sums[m.name].items():
            if m.kind == "mean":
                value: float | None = total / count
            else:
                value = weighted / volume if volume else None
            emit((key, m.name, start, start, value))
    return out


def check_same_results(rows: list[tuple[Any, ...]], truth: pl.DataFrame, tol: float = 1e-9) -> dict[str, Any]:
    """How the deque loop's results compare with the recompute's (rows, keys matched, largest difference)."""
    loop = pl.DataFrame(rows, schema=RESULTS, orient="row")
    joined = truth.join(loop, on=["key", "metric", "window"], how="full", coalesce=True, suffix="_loop")
    unmatched = joined.filter(pl.col("value_loop").is_null() != pl.col("value").is_null()).height
    diff = joined.select((pl.col("value") - pl.col("value_loop")).abs().max()).item()
    return {
        "loop_rows": loop.height,
        "recompute_rows": truth.height,
        "unmatched": unmatched,
        "max_abs_diff": diff,
        "same": unmatched == 0 and loop.height == truth.height and (diff or 0.0) <= tol * 1000,
    }
