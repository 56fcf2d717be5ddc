"""``recovery compare``: classify the original outputs of a range against truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import polars as pl

from recovery.cli._common import (
    add_range,
    add_replay_tuning,
    add_sources,
    add_tolerances,
    parse_range,
    sink_atomically,
)
from recovery.errors import DataError
from recovery.frames import RESULTS, conform
from recovery.pipeline.compare import summarize
from recovery.pipeline.recover import recover
from recovery.pipeline.steps import compare_range
from recovery.spec import PipelineSpec, load_spec

EPILOG = """\
examples:
  recovery compare --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --out comparison.parquet
  recovery compare --spec pipeline.toml --from 2026-01-01T10:00 --to 2026-01-01T11:00 --truth truth.parquet \\
      --source-outputs archive/outputs --abs-tol 1e-6 --out comparison.parquet
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="compare the original outputs of a range with truth (missing, wrong, duplicate, extra, ok)",
        description="Replay the output topic for the range, recompute truth (or read it with --truth) and "
        "classify every (key, metric, window). Prints counts per class and writes the COMPARISON frame.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", required=True, metavar="TOML", help="pipeline spec file")
    add_range(p)
    p.add_argument("--truth", metavar="FILE", help="RESULTS Parquet from `recovery recompute` (default: recompute)")
    p.add_argument("--out", metavar="FILE", help="COMPARISON Parquet file to write")
    add_sources(p)
    add_tolerances(p)
    add_replay_tuning(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    rng = parse_range(args)
    if not args.truth:
        return _recover_and_compare(args, spec, rng.from_ms, rng.to_ms)
    try:
        truth = conform(pl.read_parquet(args.truth), RESULTS)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"cannot read truth {args.truth!r}: {exc}", path=args.truth) from None
    comparison, originals, bad, outputs = compare_range(
        spec,
        rng.from_ms,
        rng.to_ms,
        truth=truth,
        raw_source=args.source_raw,
        outputs_source=args.source_outputs,
        workers=args.workers,
        slack_ms=args.slack_ms,
        abs_tol=args.abs_tol,
        rel_tol=args.rel_tol,
        quiet=args.quiet,
        client=args.client,
        time_basis=args.time_basis,
    )
    print(f"outputs: {outputs.summary()}; {originals.height:,} results, {bad.height:,} unreadable")
    for line in summarize(comparison).lines():
        print(line)
    _write(comparison.lazy(), args.out)
    return 0


def _recover_and_compare(args: argparse.Namespace, spec: PipelineSpec, from_ms: int, to_ms: int) -> int:
    """Truth recomputed and compared as ``recovery recover`` does (partition by partition, bounded memory,
    in memory when keys are not partitioned), without writing a fix set."""
    report = recover(
        spec,
        from_ms,
        to_ms,
        raw_source=args.source_raw,
        outputs_source=args.source_outputs,
        workers=args.workers,
        slack_ms=args.slack_ms,
        abs_tol=args.abs_tol,
        rel_tol=args.rel_tol,
        quiet=args.quiet,
        client=args.client,
        time_basis=args.time_basis,
    )
    unreadable = report.outputs_quarantine.height
    print(f"outputs: {report.outputs_replay.summary()}; {report.originals_count:,} results, {unreadable:,} unreadable")
    for line in report.summary.lines():
        print(line)
    comparison = report.found.review_comparison
    _write(comparison if isinstance(comparison, pl.LazyFrame) else comparison.lazy(), args.out)
    return 0


def _write(comparison: pl.LazyFrame, out_path: str | None) -> None:
    """COMPARISON to ``out_path`` (atomically, streamed from spooled parts when there are any)."""
    if out_path:
        out = Path(out_path)
        sink_atomically(comparison, out)
        print(f"comparison -> {out}")
