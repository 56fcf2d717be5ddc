"""Benchmark of the simulator, the live worker and the recompute; prints one table.

    .venv/bin/python -m bench.bench_simulate [--events 1000000] [--symbols 50] [--live-seconds 60]

1. simulate: generate --events ticks with every fault and produce them to a fresh raw topic (``--no-live``).
2. live: one worker (``recovery live --until-end``, the example spec: one sma and two time-window metrics)
   over that topic, stopped with SIGTERM after ``--live-seconds`` (0: run to the end); records/s and the
   worker's CPU seconds per record.
3. recompute: truth for all three metrics over the generated events, in memory (median of 3 runs).

Uses KAFKA_BOOTSTRAP_SERVERS, else the local broker of ``make kafka-up``, else starts a throwaway broker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from recovery.config import PROJECT_ROOT, KafkaSettings
from recovery.kafka.broker import LocalBroker
from recovery.metrics.recompute import recompute
from recovery.sim.simulate import simulate
from recovery.sim.ticks import (
    SimulationParams,
    StreamFaults,
    build_records,
    first_by_offset,
    generate_ticks,
    parsed_records,
)
from recovery.spec import load_spec

SPEC_TEMPLATE = (PROJECT_ROOT / "pipeline.toml").read_text()


def _spec_for(directory: Path, prefix: str) -> Path:
    text = SPEC_TEMPLATE
    for old, new in (
        ('"ticks.sma.corrections"', f'"{prefix}.corr"'),
        ('"recovery.audit"', f'"{prefix}.audit"'),
        ('"ticks.sma"', f'"{prefix}.out"'),
        ('"ticks"', f'"{prefix}.raw"'),
    ):
        text = text.replace(old, new)
    path = directory / "pipeline.toml"
    path.write_text(text)
    return path


def _live(spec_path: Path, seconds: float, env: dict[str, str]) -> dict[str, float]:
    group = f"bench-live-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "recovery", "live", "--spec", str(spec_path), "--group", group]
    command += ["--until-end", "--json", "--log-level", "WARNING"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if seconds > 0:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"live worker failed: {err[-2000:]}")
    stats = json.loads(out.strip().splitlines()[-1])
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "records": stats["records"],
        "outputs": stats["outputs"],
        "seconds": stats["seconds"],
        "per_s": stats["records"] / stats["seconds"],
        "cpu_us_per_record": 1e6 * cpu_s / max(1, stats["records"]),
    }


def _recompute(params: SimulationParams, spec_path: Path) -> dict[str, float]:
    spec = load_spec(spec_path)
    ticks = generate_ticks(params)
    events, _ = parsed_records(build_records(ticks, StreamFaults(), spec, 6, {}), ticks, spec)
    events = first_by_offset(events)
    ordered = events.sort("key", "ts", "seq")
    timings = {}
    for label, frame in (("arrival order", events), ("sorted", ordered)):
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            recompute(frame, spec)
            runs.append(time.perf_counter() - started)
        timings[label] = statistics.median(runs)
    return {"events": events.height, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--live-seconds", type=float, default=60.0, help="stop the worker after this (0: to the end)")
    parser.add_argument("--producers", type=int, default=2)
    args = parser.parse_args()

    broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not LocalBroker.default().bootstrap():
        broker = LocalBroker(Path(tempfile.mkdtemp(prefix="bench-kafka-")))
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.start(timeout_s=90)
    try:
        settings = KafkaSettings.from_env()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers)
        params = SimulationParams(symbols=args.symbols, events=args.events, seed=1)
        with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
            spec_path = _spec_for(Path(tmp), f"bench-{uuid.uuid4().hex[:8]}")
            started = time.perf_counter()
            incident = simulate(settings, load_spec(spec_path), params, live=False, producers=args.producers)
            total = time.perf_counter() - started
            timings = incident["run"]["timings_s"]
            records = incident["counts"]["records"]
            live = _live(spec_path, args.live_seconds, env)
            rec = _recompute(params, spec_path)
    finally:
        if broker is not None:
            broker.stop()

    rows = [
        ("simulate: generate ticks + faults", records, timings["generate_s"], None),
        (f"simulate: produce ({args.producers} processes)", records, timings["produce_s"], None),
        ("simulate: total (--no-live)", records, total, "target: 1M in < 120 s"),
        (
            "live worker (1 sma + 2 windows)",
            live["records"],
            live["seconds"],
            f"{live['cpu_us_per_record']:.0f} us CPU/record",
        ),
        ("recompute, events in arrival order", rec["events"], rec["arrival order"], "3 metrics, median of 3"),
        ("recompute, events sorted by key/ts", rec["events"], rec["sorted"], "3 metrics, median of 3"),
    ]
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':40} {'events':>10} {'seconds':>9} {'events/s':>12}  note")
    for label, count, seconds, note in rows:
        print(f"{label:40} {count:>10,} {seconds:>9.2f} {count / seconds:>12,.0f}  {note or ''}")


if __name__ == "__main__":
    main()
