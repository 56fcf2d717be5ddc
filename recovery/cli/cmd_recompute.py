"""``recovery recompute``: truth for a range (replay, validate, dedup, recompute) as RESULTS Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recovery.cli._common import add_range, add_replay_tuning, add_sources, parse_range, sink_atomically
from recovery.pipeline.steps import truth_for_range
from recovery.spec import load_spec

EPILOG = """\
examples:
  recovery recompute --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out truth.parquet
  recovery recompute --spec pipeline.toml --from 1767261600000 --to 1767265200000 --source-raw archive/raw \\
      --out truth.parquet --emulate-grace
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "recompute",
        help="recompute every metric of the spec for a range (truth) to Parquet",
        description="Replay the raw events of a range with the lookback the metrics need, quarantine malformed "
        "events, drop duplicates, order by event time and recompute every metric of the spec.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, metavar="TOML", help="pipeline spec file")
    add_range(p)
    p.add_argument("--out", required=True, metavar="FILE", help="RESULTS Parquet file to write")
    p.add_argument("--emulate-grace", action="store_true", help="drop late events like the live worker does")
    add_sources(p, outputs=False)
    add_replay_tuning(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    rng = parse_range(args)
    out = Path(args.out)
    truth = truth_for_range(
        spec,
        rng.from_ms,
        rng.to_ms,
        source=args.source_raw,
        workers=args.workers,
        slack_ms=args.slack_ms,
        emulate_grace=args.emulate_grace,
        quiet=args.quiet,
        client=args.client,
        time_basis=args.time_basis,
        by_partition=True,  # bounded memory whatever the range's length (in memory if keys are not partitioned)
        work_near=out,
        quality=False,  # the command writes truth and counts events: gaps and quality figures are not asked for
    )
    results = truth.lazy_results()
    sink_atomically(results, out)  # streamed from the spooled parts, partition by partition
    counts = truth.events.counts()
    print(f"raw: {truth.replay.summary()}; {counts['events']:,} events, {truth.quarantine.height:,} quarantined")
    per_metric = results.group_by("metric").len().sort("metric").collect().iter_rows()
    print("results: " + ", ".join(f"{m} {n:,}" for m, n in per_metric) + f" -> {out}")
    return 0
