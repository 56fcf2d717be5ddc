"""The benchmark's table, its targets and ``docs/benchmarks.md``: machine description, conditions, how to reproduce."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.baselines import kcat_version
from bench.measure import ROOT

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _java() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
        return out.splitlines()[0].strip() if out else "unknown"
    except OSError:
        return "not installed"


def _kafka() -> str:
    jars = sorted((ROOT / "kafka" / "lib").glob("kafka_2.13-*.jar"))
    found = re.search(r"kafka_2\.13-(.+)\.jar", jars[0].name) if jars else None
    return f"Apache Kafka {found.group(1)} (single KRaft node on 127.0.0.1)" if found else "unknown"


def _librdkafka() -> str:
    try:
        import confluent_kafka

        return f"{confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})"
    except ImportError:
        return "not installed"


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "memory_gb": round(_memory_gb(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "polars": _version("polars"),
        "kafka-python": _version("kafka-python"),
        "crc32c": _version("crc32c"),
        "confluent-kafka": _librdkafka(),
        "kcat": kcat_version() or "not installed",
        "java": _java(),
        "kafka": _kafka(),
        "commit": _git(),
    }


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


# ------------------------------------------------------------------------------------------------ tables


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The results as a Markdown table (also what the console shows)."""
    head = "| scenario | stage | client | workers | items | seconds | items/s | CPU s | peak RSS MB | runs | notes |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        status = r["status"]
        notes = r.get("notes", "")
        if status != "ok":
            notes = f"**{status}**: {notes}".rstrip(": ")
        lines.append(
            f"| {r['scenario']} | {r['name']} | {r.get('client', '')} | {r.get('workers', '')} | "
            f"{_num(r['items'])} | {_seconds(r['seconds'])} | {_num(r['per_s'])} | {_seconds(r.get('cpu_s'))} | "
            f"{_num(r['peak_rss_mb'])} | "
            f"{len(r['runs'])} | {notes} |"
        )
    return lines


def targets_table(targets: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for t in targets:
        met = {True: "yes", False: "**no**", None: "pending"}[t["met"]]
        lines.append(f"| {t['what']} | {t['measured']} | {t['goal']} | {met} |")
    return lines


def profile_table(profile: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| function | calls | own time s | share | cumulative s |", "|---|---:|---:|---:|---:|"]
    for row in profile:
        lines.append(
            f"| `{row['function']}` | {row['calls']:,} | {row['tottime_s']:.3f} | {row['share']:.0%} | "
            f"{row['cumtime_s']:.3f} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    """The generated part of docs/benchmarks.md."""
    m = results["machine"]
    started, finished = results["started"], results["finished"]
    out = [
        BEGIN,
        f"Generated by `make bench` ({results['command']}) on {started[:10]}, {started[11:16]}-{finished[11:16]} UTC.",
        "",
        "## Machine and conditions",
        "",
        f"- CPU: {m['cpu']}, {m['nproc']} cores (nproc); memory {m['memory_gb']} GB; {m['os']}",
        f"- Python {m['python']}; polars {m['polars']}; kafka-python {m['kafka-python']} (crc32c {m['crc32c']}); "
        f"confluent-kafka {m['confluent-kafka']}; {m['kcat']}",
        f"- {m['kafka']}, {m['java']}; broker heap {results.get('broker_heap', '-')}, "
        f"{results.get('broker', 'started by the benchmark')}",
        f"- commit {m['commit']}",
        f"- load average (1/5/15 min) at start {results['load_start']}, at the end {results['load_end']}. "
        f"{results.get('conditions', '')}",
        f"- medians of {results['runs']} runs per row; each run is a fresh process (see *Method*).",
        *([f"- rows not measured again are kept from {results['merged_from']}"] if results.get("merged_from") else []),
        "",
        "## Results",
        "",
        *table(results["rows"]),
        "",
        "## Targets",
        "",
        *targets_table(results["targets"]),
        "",
    ]
    checks = results.get("checks", [])
    if checks:
        out += ["## Checks", ""]
        out += [f"- {c}" for c in checks]
        out.append("")
    for title, profile in results.get("profiles", {}).items():
        out += [f"## Profile: {title}", "", *profile_table(profile), ""]
    out.append(END)
    return "\n".join(out)


INTRO = """\
# Benchmarks

How fast the toolkit replays, recomputes, compares and publishes on this project's reference machine, against
the client-side limits (`kcat`, Kafka's `kafka-consumer-perf-test`) and the seed's per-event deque loop.

## How to reproduce

```bash
make setup bench-setup     # venv, Kafka jars, kcat (Debian package)
make bench                 # 1M and 10M events, 3 runs per row (about two hours on 2 cores)
make bench BENCH_ARGS="--scenarios 200k --runs 1"    # a quick run (about two minutes)
.venv/bin/python -m bench.run --help                 # every option (stages, workers, clients, scenarios)
```

`make bench` starts its own broker in `/tmp/bench-kafka` (heap 2 GB) and stops it at the end; with
`KAFKA_BOOTSTRAP_SERVERS` set it uses that cluster and starts nothing (topics `bench.<scenario>.*`, reused
when they already hold the scenario). This file is rewritten between the `bench:begin` / `bench:end` markers;
the text outside them is kept.

## Method

- **Scenarios**: N unique ticks of 50 symbols (`SYM00`..`SYM49`) on 6 partitions (Kafka's default
  partitioner on the symbol), one every 2 ms of event time on average. Raw faults: ~2 % of events delayed by
  1-20 s (out of order, some beyond the 5 s grace), ~1 % duplicates, ~0.05 % lost (seq gaps), ~0.1 %
  malformed records. The output topic holds what the live worker publishes, computed with the recompute
  under the live worker's grace policy (`recompute(..., emulate_grace=True)`) instead of running the live
  worker over millions of events, plus injected faults: ~1.5 % results missing and one lost block (a crash),
  ~1 % wrong, ~1 % published twice (a fifth of them conflicting), ~0.2 % extra. Topics are loaded with the
  fastest producer available (confluent-kafka); loading is not measured.
- **Stages** run each in a fresh Python process with the package's public functions; *seconds* is the
  stage's own timing (input loading and interpreter start-up excluded; for `replay` and `recover` it is the
  whole call, connections and worker start-up included). Inputs of the in-memory stages (records, events,
  truth, originals, comparison) are written once per scenario as Parquet by a `prepare` step. `recompute`
  is the median of three calls in one process (the steady state of a recovery, which calls it once per key
  group in a long-lived worker); the first call of the process is given in the notes.
- **recover** runs the default engine (`auto`: partition by partition, `recovery.pipeline.partitioned`) with 2
  worker processes; at 1M the in-memory engine (what `recover` did before) is measured too, for comparison.
- **items/s**: records per second for replays and decoding, events per second for validate + dedup,
  recompute and the deque loop, results (originals + truth) for compare, comparison rows for the fix set,
  corrections for publish (the whole `publish()`: transaction, read_committed verification, audit record),
  raw + output records for `recover`.
- **CPU s**: user + system CPU seconds of the timed step and the worker processes it waited for (for
  external tools: of their whole process); the broker's CPU is not included. On a shared machine wall time
  grows with the load of other processes, CPU time much less, so both are shown.
- **Peak RSS**: the largest sum of the resident set sizes of the stage's process and all its descendants
  (worker processes, the JVM of the perf test), sampled every 50 ms from `/proc`, or the stage process's own
  peak (`VmHWM`) when larger. Input frames loaded by the stage count.
- **Baselines**: `kcat -C -e` reads every partition of the topic to /dev/null (with `fetch.wait.max.ms=10` and
  `enable.sparse.connections=false`, the settings the toolkit's librdkafka readers use, so neither waits 500 ms
  at the end of a partition nor about 50 ms for its first connection, and with `queued.min.messages=1000000`, so
  kcat never stops fetching a partition for a second when its writing falls behind, as it did in about one run in
  three with the default: kcat at its best);
  `kafka-consumer-perf-test` reports its own rate (*fetch.nMsg.sec*, without the group join) in the notes,
  the table shows its wall time including the JVM start; the deque loop is the seed's approach (a
  `deque(maxlen=n)` per key, a dict of accumulators per (key, window start)) over the same events as the
  recompute, given as Python tuples before the clock starts, and checked to give the same results.
"""


def write_doc(path: Path, results: dict[str, Any]) -> None:
    """Write ``path``: keep the text outside the markers (or start from the intro), replace what is inside."""
    generated = render(results)
    if path.is_file():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _old, tail = rest.split(END, 1)
            path.write_text(head + generated + tail)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(INTRO + "\n" + generated + "\n")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
